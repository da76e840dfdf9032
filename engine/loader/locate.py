"""Turn a loc path into `routes[2].if` text and a 1-based position in the file."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .yaml_marks import Loc, Mark, MarkedDocument


def real_loc(
    document: MarkedDocument, loc: Loc, tags: Collection[int] = ()
) -> tuple[Loc, dict[Loc, str]]:
    """Split a pydantic loc into the keys written in the YAML and the union members chosen.

    The parts that are not keys in the data name a union's member (`list[str]`, a model's
    name, a tag such as `openai`); the first one at a place is returned by the place, as
    the member whose complaint it is. `tags` are the indexes the models know to be tags:
    those may be spelled like a key (a route's `reply`, a `condition` control), which the
    data alone cannot tell apart.
    """
    kept: list[str | int] = []
    members: dict[Loc, str] = {}
    current: Any = document.data
    for index, part in enumerate(loc):
        if index in tags or not _has_key(current, part):
            members.setdefault(tuple(kept), str(part))  # a union member, not in the file
            continue
        current = current[part]
        kept.append(part)
    return tuple(kept), members


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
    quote = mark.style if mark.style in ("'", '"') else None
    if mark.style in ("|", ">"):
        start = (mark.line + 1, 1)  # a block scalar's text starts on the next line
    else:
        start = (mark.line, mark.column + (1 if quote else 0))
    found = _align(lines, start, value, offset, quote)
    return found if found is not None else (mark.line, mark.column)


_ESCAPE_LENGTHS = {"x": 4, "u": 6, "U": 10}  # `\xHH`, `\uHHHH`, `\UHHHHHHHH`; others take 2


def _align(
    lines: list[str], start: tuple[int, int], value: str, offset: int, quote: str | None
) -> tuple[int, int] | None:
    """Walk the source from `start`, matching `value` character by character.

    Characters the source has and the value lacks (indentation, line breaks folded into
    spaces) are skipped, and an escape (`''`, `\\n`) counts as one character, so the match
    lands where `value[offset]` is written. None when the scalar ends first.
    """
    if not value:
        return None
    target = min(offset, len(value) - 1)
    index = 0
    row, column = start[0] - 1, start[1] - 1
    while row < len(lines):
        text = lines[row] + "\n"
        while column < len(text):
            width = _source_width(text, column, quote)
            if width == 0:
                return None  # the closing quote
            if width > 1 or text[column] == value[index]:
                if index == target:
                    return row + 1, column + 1 + offset - target
                index += 1
            column += width
        row, column = row + 1, 0
    return None


def _source_width(text: str, column: int, quote: str | None) -> int:
    """How many source characters make one value character; 0 at a closing quote."""
    char = text[column]
    if quote == '"' and char == "\\" and text[column + 1] != "\n":
        return _ESCAPE_LENGTHS.get(text[column + 1], 2)
    if quote is not None and char == quote:
        return 2 if quote == "'" and text[column + 1] == "'" else 0
    return 1
