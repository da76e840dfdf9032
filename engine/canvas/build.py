"""One self-contained HTML file per canvas app: Poe's app creator takes a single file.

The page's own script, its styles, and the vendored `marked` and DOMPurify go inline, so
the file loads nothing from the network; it talks to bots only through `window.Poe`. The
app's data reaches the script as JSON in a `<script type="application/json">` block
(Jinja's `tojson`, which escapes `<`, `>`, `&` and `'`), never spliced into code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ..js_patterns import browser_pattern
from ..spec.canvas import (
    ChoiceInput,
    FileInput,
    Input,
    LongTextInput,
    NumberInput,
    TextInput,
)
from .loader import CompiledCanvas

HERE = Path(__file__).resolve().parent
VENDOR = HERE.parent / "web" / "static" / "vendor"
VENDORED = ("marked.umd.js", "purify.min.js")
HANDLER = "canvasAnswer"
# A source map comment makes DevTools fetch the map: the one network reference a vendored
# file holds. Nothing else of the vendored code changes.
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)
_CLOSES_SCRIPT = re.compile(r"</script|<script", re.IGNORECASE)

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class InlineScript:
    """A script's text, checked to be safe inside `<script>...</script>`."""

    name: str
    text: str

    def markup(self) -> Markup:
        return Markup(self.text)  # noqa: S704  # checked in inline_script: no tag ends it


def inline_script(name: str, text: str) -> InlineScript:
    """The script ready to inline; ValueError if its text could end the script element."""
    text = _SOURCE_MAP.sub("", text).rstrip() + "\n"
    found = _CLOSES_SCRIPT.search(text)
    if found is not None:
        raise ValueError(f"{name} holds {found.group(0)!r}: it cannot be inlined as it is")
    return InlineScript(name, text)


def vendored_scripts() -> list[InlineScript]:
    """marked, then DOMPurify, as vendored in engine/web/static/vendor/."""
    return [inline_script(name, (VENDOR / name).read_text(encoding="utf-8")) for name in VENDORED]


def page_config(app: CompiledCanvas) -> dict[str, Any]:
    """Everything the page's script needs, as JSON: rules per field and the programs."""
    spec = app.spec
    return {
        "bot": app.bot,
        "handler": HANDLER,
        "message": app.message,
        "stream": spec.stream,
        "open_chat": spec.open_chat,
        "answer": {"format": spec.answer.format, "replies": app.replies},
        "inputs": [_input_config(item) for item in spec.inputs],
    }


def _input_config(item: Input) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": item.name,
        "kind": item.kind,
        "label": item.shown_label,
        "required": item.required,
        "invalid": item.invalid,
    }
    if isinstance(item, TextInput | LongTextInput):
        pattern = None
        if item.pattern is not None:
            source, flags = browser_pattern(item.pattern)
            pattern = {"source": source, "flags": flags}
        config |= {"min_length": item.min_length, "max_length": item.max_length}
        config["pattern"] = pattern
    elif isinstance(item, NumberInput):
        config |= {"min": item.min, "max": item.max, "integer": item.integer}
    elif isinstance(item, ChoiceInput):
        config["options"] = item.options
    elif isinstance(item, FileInput):
        max_bytes = None if item.max_size_mb is None else round(item.max_size_mb * 1_000_000)
        config |= {"types": item.types, "max_files": item.max_files, "max_bytes": max_bytes}
    return config


def build_html(app: CompiledCanvas) -> str:
    """The app's page, one file."""
    own = HERE / "assets"
    return _ENV.get_template("canvas.html").render(
        app=app.spec,
        config=page_config(app),
        css=Markup((own / "canvas-app.css").read_text(encoding="utf-8")),  # noqa: S704
        vendor=[script.markup() for script in vendored_scripts()],
        script=inline_script(
            "canvas-app.js", (own / "canvas-app.js").read_text(encoding="utf-8")
        ).markup(),
        number=_number,
    )


def _number(value: float | None) -> str:
    """A number as an HTML attribute wants it: `5`, not `5.0`."""
    return "" if value is None else f"{value:g}"


def write_pages(apps: list[CompiledCanvas], folder: Path) -> list[Path]:
    """Each app's page written as `<file name>.html` in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for app in apps:
        path = folder / f"{Path(app.file).stem}.html"
        path.write_text(build_html(app), encoding="utf-8")
        written.append(path)
    return written
