"""Turn a loc path into `routes[2].if` text and a 1-based position in the file."""

from __future__ import annotations

from typing import Any

from .yaml_marks import Loc, Mark, MarkedDocument


def real_loc(document: MarkedDocument, loc: Loc) -> Loc:
    """Drop the parts of a pydantic loc that are union tags rather than keys in the YAML."""
    kept: list[str | int] = []
    current: Any = document.data
    for part in loc:
        if not _has_key(current, part):
            continue  # a union tag, not written in the file
        current = current[part]
        kept.append(part)
    return tuple(kept)


def _has_key(value: Any, part: str | int) -> bool:
    if isinstance(value, dict):
        return part in value
    return isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)


def loc_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def position(document: MarkedDocument, loc: Loc, *, key: bool = False) -> Mark:
    """Where `loc` is written; the key's position when `key`, else its value's."""
    if key and loc in document.keys:
        return document.keys[loc]
    for end in range(len(loc), -1, -1):
        mark = document.values.get(loc[:end])
        if mark is not None:
            return mark
    return Mark(1, 1)


def offset_position(mark: Mark, lines: list[str], value: str, offset: int) -> tuple[int, int]:
    """Position of character `offset` of a scalar `value` written at `mark`."""
    if mark.style in ("|", ">"):
        line = mark.line + 1 + value.count("\n", 0, offset)
        text = lines[line - 1] if line - 1 < len(lines) else ""
        indent = len(text) - len(text.lstrip(" "))
        return line, indent + offset - (value.rfind("\n", 0, offset) + 1) + 1
    if "\n" in value:
        return mark.line, mark.column
    quoted = 1 if mark.style in ("'", '"') else 0
    return mark.line, mark.column + quoted + offset
