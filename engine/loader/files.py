"""One bot file: its text read safely, loaded into a CompiledBot or located problems.

`load_paths` (every file at once) and `BotRegistry` (files loaded again as they change)
both load a file through `load_file`, so a file gives the same bot and problems either way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..compiled import CompiledBot
from ..errors import SpecError
from .checker import check_sources
from .compile import compile_bot
from .keys import access_key
from .locate import loc_text, position
from .traps import syntax_hint
from .unvalidated import unvalidated_problems
from .validation import validate
from .yaml_marks import MAX_BYTES, MarkedDocument, YamlSyntaxError, parse, too_large

BOT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedFile:
    """One load of one file; `digest` tells a rewrite with the same text from an edit."""

    bot: CompiledBot | None
    problems: list[SpecError]
    digest: bytes | None  # None: the file could not be read


def load_text(
    text: str,
    file: str = "<string>",
    env: Mapping[str, str] | None = None,
) -> tuple[CompiledBot | None, list[SpecError]]:
    """Load one bot from YAML text; the bot is None when any error (not warning) was found.

    `env` resolves `${VAR}` references (default: the process environment).
    """
    environ = os.environ if env is None else env
    document, problems = parse_marked(text, file)
    if document is None:
        return None, problems
    spec, invalid = validate(document, file)
    problems += invalid
    if spec is None:
        problems += check_sources(document, file)
        return None, problems + unvalidated_problems(document, file, environ)
    key, key_problems = access_key(spec.access_key, document, file, environ)
    name = spec.name or Path(file).stem
    bot, compile_problems = compile_bot(spec, document, file, name, key, environ)
    problems += key_problems + compile_problems
    if any(not p.is_warning for p in problems):
        return None, problems
    return bot, problems


def load_file(path: Path, environ: Mapping[str, str]) -> LoadedFile:
    """The file read and loaded; a file that cannot be read is one problem, not an exception."""
    try:
        text = read_limited(path)
    except YamlSyntaxError as exc:
        return LoadedFile(None, [yaml_error(exc, str(path))], None)
    except (OSError, UnicodeDecodeError) as exc:
        return LoadedFile(None, [SpecError(f"cannot read the file: {exc}", str(path))], None)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return LoadedFile(*load_text(text, str(path), environ), digest)


def bot_files(paths: Iterable[str | Path]) -> list[Path]:
    """The bot files named, directories expanded to their *.yaml and *.yml files."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in BOT_SUFFIXES)
        else:
            found.append(path)
    return found


def duplicate_name(bot: CompiledBot, first_file: str) -> SpecError:
    """The error on the file whose bot takes a name another file's bot already has."""
    line, column = 1, 1
    if bot.spec.name is not None:  # read again: rare, and cheaper than keeping every text
        try:
            mark = position(parse(Path(bot.file).read_text(encoding="utf-8")), ("name",))
            line, column = mark.line, mark.column
        except (OSError, UnicodeDecodeError, YamlSyntaxError):
            pass  # changed again since it loaded: the next reload places it
    return SpecError(
        f"bot name '{bot.name}' is already used by {first_file}",
        bot.file,
        line,
        column,
        "name",
        hint="each bot needs its own name; it is the URL path",
    )


def parse_marked(text: str, file: str) -> tuple[MarkedDocument | None, list[SpecError]]:
    """A bot or canvas file's YAML with its marks, and its duplicate keys as problems; or
    None and the located syntax error, with the YAML trap that explains it."""
    try:
        document = parse(text)
    except YamlSyntaxError as exc:
        trap = syntax_hint(text.splitlines(), exc.line, exc.column, exc.message)
        return None, [yaml_error(exc, file, trap)]
    return document, duplicate_keys(document, file)


def yaml_error(exc: YamlSyntaxError, file: str, trap: str | None = None) -> SpecError:
    """The parser's error, with its own hint or else the YAML trap that explains it."""
    hint = exc.hint or trap
    return SpecError(exc.message, file, exc.line, exc.column, loc_text(exc.loc), hint)


def duplicate_keys(document: MarkedDocument, file: str) -> list[SpecError]:
    return [
        SpecError(
            f"duplicate key '{loc[-1]}'",
            file,
            mark.line,
            mark.column,
            loc_text(loc),
            hint="a key may appear once; the later value would silently win",
        )
        for loc, mark in document.duplicates
    ]


def read_limited(path: Path) -> str:
    """The file's text, read no further than a bot file may go: a path may be `/dev/zero`."""
    with path.open(encoding="utf-8") as stream:
        text = stream.read(MAX_BYTES + 1)  # characters: parse() checks the bytes of the rest
        if len(text) > MAX_BYTES:
            raise too_large(os.fstat(stream.fileno()).st_size)
    return text
