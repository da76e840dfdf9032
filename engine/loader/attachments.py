"""`files:` of a reply compiled: each URL and content a checked template."""

from __future__ import annotations

from collections.abc import Sequence

from ..compiled import CompiledFile
from ..spec.files import FileSpec, UrlFile
from ..templates import PlainText
from .checker import SourceChecker
from .locate import loc_text
from .yaml_marks import Loc

URL_SCHEMES = ("http://", "https://")


def compile_files(
    checker: SourceChecker, files: Sequence[FileSpec], loc: Loc
) -> tuple[CompiledFile, ...]:
    """Every file compiled; problems (a bad template, a URL Poe cannot fetch, a name used
    twice, so `files['name']` would be ambiguous) go to `checker`."""
    compiled: list[CompiledFile] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(files):
        at: Loc = (*loc, index)
        if isinstance(spec, UrlFile):
            url = checker.template(spec.url, (*at, "url"))
            if isinstance(url, PlainText) and not spec.url.strip().startswith(URL_SCHEMES):
                checker.report(
                    (*at, "url"), "a file's url must start with http:// or https://", None
                )
            compiled.append(
                CompiledFile(loc_text(at), spec.name, spec.content_type, spec.inline, url=url)
            )
        else:
            content = checker.template(spec.template, (*at, "template"))
            compiled.append(
                CompiledFile(
                    loc_text(at), spec.name, spec.content_type, spec.inline, content=content
                )
            )
        if spec.name is not None:
            if spec.name in seen:
                hint = f"files[{seen[spec.name]}] has that name; give each file its own"
                checker.report((*at, "name"), f"a second file named {spec.name!r}", hint)
            seen.setdefault(spec.name, index)
    return tuple(compiled)
