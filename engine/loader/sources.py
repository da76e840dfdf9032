"""Find the templates and conditions in raw bot data by walking the spec's JSON Schema.

Used when a file has structural errors: the spec models cannot be built, yet its
templates and conditions can still be checked, so `validate` reports every problem
in one pass instead of making the author fix the structure first.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from ..spec import Bot
from .yaml_marks import Loc

CHECKED_FORMATS = frozenset({"jmespath", "jinja-template"})


@cache
def _schema() -> dict[str, Any]:
    return Bot.model_json_schema(by_alias=True)


def sources(data: Any) -> list[tuple[str, str, Loc]]:
    """(format, text, loc) for every checked string in `data`, each loc once."""
    found: dict[Loc, tuple[str, str, Loc]] = {}
    for item in _walk(_schema(), data, ()):
        found.setdefault(item[2], item)
    return list(found.values())


def _walk(node: dict[str, Any], data: Any, loc: Loc) -> Iterator[tuple[str, str, Loc]]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        yield from _walk(_schema()["$defs"][name], data, loc)
    if node.get("format") in CHECKED_FORMATS and isinstance(data, str):
        yield node["format"], data, loc
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        yield from _walk(branch, data, loc)
    if isinstance(data, dict):
        for key, value in data.items():
            child = node.get("properties", {}).get(key) or _extra(node)
            if child is not None:
                yield from _walk(child, value, (*loc, key))
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for index, value in enumerate(data):
            yield from _walk(node["items"], value, (*loc, index))


def _extra(node: dict[str, Any]) -> dict[str, Any] | None:
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None
