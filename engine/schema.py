"""`schema.json`: generated from the spec models, committed, and checked for drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .spec import Bot

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.json"
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


def render() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write(path: Path = SCHEMA_PATH) -> None:
    path.write_text(render(), encoding="utf-8")


def is_current(path: Path = SCHEMA_PATH) -> bool:
    """Whether the committed file matches what the models generate now."""
    return path.exists() and path.read_text(encoding="utf-8") == render()
