"""YAML's own traps, recognised where a problem is reported, with the text to write.

YAML reads a plain `Yes`, `no`, `on` or `off` as true or false and `3` as a number, splits
a `[...]` list or a `{...}` mapping at every comma, takes `: ` for the start of a key and
indentation for structure. Bot authors write prose, and each of these turns it into an
error that names the symptom. The marks and source lines say which trap it was; they are
read only for a file with a problem to explain.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, NamedTuple

from .yaml_marks import Loc, MarkedDocument

# A line's indentation, any `- ` of sequence items, and the key it starts with, if any.
_LINE = re.compile(r"(?P<indent> *)(?P<dashes>(?:- +)*)(?:(?P<key>[^\s#'\"{\[-][^#]*?):(?: |$))?")
_FLOW_END = ",]}"


class ScalarTrap(NamedTuple):
    """The fix for a plain value YAML did not read as text, and the text it covers."""

    hint: str
    line: int
    columns: range  # 1-based, of the text to quote: items split from it are part of it


def scalar_trap(document: MarkedDocument, loc: Loc, value: Any) -> ScalarTrap | None:
    """Why a plain value YAML read as true, false, a number or a date is not text, and the
    quoted text to write instead; None when it was not written plain."""
    mark = document.values.get(loc)
    # libyaml marks a plain value's style '' (PyYAML's own parser, None); quoted, `'` or `"`.
    if mark is None or mark.style not in ("", None) or isinstance(value, str | list | dict):
        return None
    line = _line(document.lines, mark.line)
    flow = _flow_brackets(document, loc[:-1])
    written = _plain(line, mark.column - 1, flow is not None)
    if not written:
        return None  # nothing written: an empty value says itself what is missing
    meant = _sentence(line, mark.column - 1, written) if flow else written
    reads = f"reads a plain {written} as {_reading(value)}"
    if meant == written:
        reads = f"YAML {reads}"
    else:
        reads = f"YAML splits a {flow} at each comma, and {reads}"
    hint = f"{reads}; write {_quoted(meant)} in quotes"
    return ScalarTrap(hint, mark.line, range(mark.column, mark.column + len(meant)))


def _reading(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (nothing)"
    if isinstance(value, datetime.date):
        return "a date"
    return "a number"


def _flow_brackets(document: MarkedDocument, loc: Loc) -> str | None:
    """`[...]` or `{...}` when the collection at `loc` is written in brackets."""
    mark = document.values.get(loc)
    if mark is None:
        return None
    char = _line(document.lines, mark.line)[mark.column - 1 : mark.column]
    return {"[": "[...] list", "{": "{...} mapping"}.get(char)


def _line(lines: list[str], number: int) -> str:
    """Line `number` (1-based); empty past the end, where YAML places an implicit value."""
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _plain(line: str, start: int, flow: bool) -> str:
    """The plain scalar written at `start`, to where YAML ends it on this line."""
    end = len(line)
    comment = line.find(" #", start)
    if comment != -1:
        end = comment
    if flow:
        stops = [i for i in (line.find(c, start, end) for c in _FLOW_END) if i != -1]
        end = min(stops, default=end)
    return line[start:end].strip()


def _sentence(line: str, start: int, written: str) -> str:
    """The text of a flow item with the items after it that continue it as a sentence:
    after a comma, a plain item starting in lower case or with a digit (`Yes, book early`),
    not a key of its own. An item starting in upper case (`[Yes, No]`) is taken as meant."""
    text, end = written, start + len(written)
    while True:
        rest = line[end:]
        match = re.match(r"\s*,(\s*)([a-z0-9][^,\]}#]*)", rest)
        if match is None or re.search(r":( |$)", match.group(2)):
            return text
        item = match.group(2).rstrip()
        text += "," + match.group(1) + item
        end += match.start(2) + len(item)


def _quoted(text: str) -> str:
    if '"' not in text and "\\" not in text:
        return f'"{text}"'
    return "'" + text.replace("'", "''") + "'"


def indentation_hint(document: MarkedDocument, loc: Loc, owner: Loc) -> str | None:
    """For a key written beside the key it belongs under: where to indent it. None when
    the owner's value is in brackets, where indenting would not help."""
    key, name = str(loc[-1]), str(owner[-1])
    value: Any = document.data
    for part in owner:
        value = value[part]
    if not value:
        line = document.keys[owner].line
        return f"indent `{key}` under `{name}` (line {line}); as written, `{name}` is empty"
    if _flow_brackets(document, owner) is not None:
        return None
    sibling = next(iter(value))
    line = document.keys[(*owner, sibling)].line
    return f"indent `{key}` like `{sibling}` on line {line}, to put it under `{name}`"


def syntax_hint(lines: list[str], line: int, column: int, message: str) -> str | None:
    """The trap behind one of libyaml's errors: `: ` in plain text, or a key or `- `
    indented to no level of the lines above."""
    if not 0 < line <= len(lines):
        return None
    text = lines[line - 1]
    if "mapping values are not allowed" in message:
        return _colon_hint(lines, line, column - 1)
    if "did not find expected" in message and column - 1 == _indent(text):
        return _level_hint(lines, line)
    return None


def _colon_hint(lines: list[str], line: int, colon: int) -> str | None:
    text = lines[line - 1]
    parts = _LINE.match(text)
    assert parts is not None  # every group is optional
    if parts.group("key") is not None and parts.end("key") < colon:
        value = text[parts.end() :]
        return f"a plain value cannot hold ': '; write {_quoted(_plain(value, 0, False))} in quotes"
    before = text[:colon].strip(" -")
    if " " in before:  # the continued text of a value from a line above
        return "a plain value cannot hold ': '; put the whole value in quotes"
    return _level_hint(lines, line)


def _level_hint(lines: list[str], line: int) -> str | None:
    """`indent X 2 spaces, like Y on line 3`: the nearest level the lines above open."""
    parts = _LINE.match(lines[line - 1])
    assert parts is not None
    item = bool(parts.group("dashes"))
    here = len(parts.group("indent"))
    levels = _levels(lines, line, item)
    if not levels:
        return None
    # The nearest level; on a tie the deeper, which continues the lines just above.
    column, above, written = min(levels, key=lambda lv: (abs(lv[0] - here), -lv[0]))
    what = "this `- `" if item else f"`{parts.group('key') or lines[line - 1].strip()}`"
    if column == 0:
        return f"start {what} at the beginning of its line, like {written} on line {above}"
    return f"indent {what} {_spaces(column)}, like {written} on line {above}"


def _levels(lines: list[str], line: int, item: bool) -> list[tuple[int, int, str]]:
    """(column, line, what) of each key (or `- `) still open at `line`, innermost first."""
    found: list[tuple[int, int, str]] = []
    limit = 1 << 30  # no level is closed yet
    for number in range(line - 1, 0, -1):
        text = lines[number - 1]
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        parts = _LINE.match(text)
        assert parts is not None
        indent = len(parts.group("indent"))
        for column, written in reversed(_opened(parts, item)):
            if column < limit:
                found.append((column, number, written))
        limit = min(limit, indent)  # a line closes every level deeper than its own
        if limit == 0:
            break
    return found


def _opened(parts: re.Match[str], item: bool) -> list[tuple[int, str]]:
    """The columns of a line's `- ` (for an item) or of its key (for a key), outermost first."""
    if item:
        start = len(parts.group("indent"))
        return [(start + m.start(), "the `- `") for m in re.finditer("-", parts.group("dashes"))]
    key = parts.group("key")
    return [] if key is None else [(parts.end("dashes"), f"`{key}`")]


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))
