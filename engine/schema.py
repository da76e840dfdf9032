"""`schema.json` and `canvas.schema.json`: generated from the spec models, committed, and
checked for drift.

Canvas app files get a schema file of their own rather than a `$defs` entry in
`schema.json` that their modeline points into (`schema.json#/$defs/CanvasApp`):
yaml-language-server's support for such fragments has broken and come back across
releases, and fails for local files in some (redhat-developer/yaml-language-server#585,
#949, vscode-yaml#675), while a plain file path always works. Bot files' schema stays
exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .spec import Bot
from .spec.canvas import CanvasApp

Build = Callable[[], dict[str, Any]]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.json"
CANVAS_SCHEMA_PATH = SCHEMA_PATH.with_name("canvas.schema.json")
STALE = "schema.json is out of date; run `python -m engine schema`"


def build_schema() -> dict[str, Any]:
    """The JSON Schema editors use for completion and hover docs on bot files."""
    schema = Bot.model_json_schema(by_alias=True)
    schema.pop("title", None)  # pydantic's is the class name, "Bot", and would override ours
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/poe-yaml-bots/engine/schema.json",
        "title": "Poe bot",
        **schema,
    }


def build_canvas_schema() -> dict[str, Any]:
    """The JSON Schema of canvas app files (`canvas/*.yaml`)."""
    schema = CanvasApp.model_json_schema(by_alias=True)
    schema.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/poe-yaml-bots/engine/canvas.schema.json",
        "title": "Poe canvas app",
        **schema,
    }


def render(build: Build = build_schema) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def write(path: Path = SCHEMA_PATH, build: Build = build_schema) -> None:
    path.write_text(render(build), encoding="utf-8")


def is_current(path: Path = SCHEMA_PATH, build: Build = build_schema) -> bool:
    """Whether the committed file matches what the models generate now."""
    return path.exists() and path.read_text(encoding="utf-8") == render(build)


FILES: tuple[tuple[Path, Build], ...] = (
    (SCHEMA_PATH, build_schema),
    (CANVAS_SCHEMA_PATH, build_canvas_schema),
)


def write_all() -> list[Path]:
    """Every schema file written; their paths."""
    for path, build in FILES:
        write(path, build)
    return [path for path, _ in FILES]


def stale() -> list[str]:
    """The message for each schema file that differs from the models."""
    return [
        f"{path.name} is out of date; run `python -m engine schema`"
        for path, build in FILES
        if not is_current(path, build)
    ]
