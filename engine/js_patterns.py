"""Patterns that run the same in the engine (RE2) and in a browser (JavaScript's RegExp).

A canvas app checks its fields in the page, with `new RegExp(source, "u")`, and the engine
checks the same pattern's defaults with RE2. The two dialects share a large subset, and
differ mostly where one reads as a literal what the other refuses (`a{`, `\\-`, a lone
`]` in JavaScript's `u` mode) or where only one knows a construct (`\\A`, `\\pL`, `(?s)`,
`[[:alpha:]]`). A pattern outside the subset is refused at load, with the offset of the
construct and what to write instead, rather than failing in the browser.

The subset: literal characters; `.`, `^`, `$`, `|`, groups `(...)` and `(?:...)`;
`* + ? {n} {n,} {n,m}` and their lazy forms; classes `[...]`, `[^...]` with ranges; the
escapes `\\d \\D \\w \\W \\s \\S \\b \\B \\n \\r \\t \\f \\v \\xHH`, and a backslash before
one of `^$\\.*+?()[]{}|/` (and `-` inside a class); a leading `(?i)`, which becomes
JavaScript's `i` flag. `\\s` matches a few more Unicode spaces in a browser than in RE2.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .patterns import PatternError, compile_pattern

_SYNTAX = set("^$\\.*+?()[]{}|/")
_CLASS_ESCAPES = set("dDwWsSnrtfv")
_ESCAPES = _CLASS_ESCAPES | set("bB")
_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}")
_HEX = re.compile(r"[0-9A-Fa-f]{2}")
_WHY = "browsers check this pattern with JavaScript's RegExp, which"
_INSTEAD = {
    "A": "write ^ for the start",
    "z": "write $ for the end",
    "Z": "write $ for the end",
    "p": "list the characters in a class, like [a-zA-Z]",
    "P": "list the characters in a negated class, like [^0-9]",
    "Q": "escape each special character with a backslash instead",
    "E": "escape each special character with a backslash instead",
    "x": "write \\xHH with exactly two hex digits",
}


class BrowserPattern(NamedTuple):
    """What the page gives `new RegExp(source, flags)`."""

    source: str
    flags: str


def browser_pattern(pattern: str) -> BrowserPattern:
    """The pattern for a browser, checked to compile in RE2 and to mean the same in
    JavaScript; PatternError (with an offset and a hint) when it is outside the subset."""
    compile_pattern(pattern)
    flags = "u"
    body, start = pattern, 0
    if pattern.startswith("(?i)"):
        flags, body, start = "iu", pattern[4:], 4
    _Scanner(pattern, start).check()
    return BrowserPattern(body, flags)


def full_match(pattern: str, text: str) -> bool:
    """Whether the whole of `text` matches, as a form field's value must (HTML's `pattern`)."""
    return compile_pattern(f"^(?:{pattern})$").found_in(text)


class _Scanner:
    """One pass over an RE2-valid pattern, refusing what JavaScript reads differently."""

    def __init__(self, pattern: str, start: int) -> None:
        self.pattern = pattern
        self.index = start

    def check(self) -> None:
        pattern = self.pattern
        while self.index < len(pattern):
            char = pattern[self.index]
            if char == "\\":
                self._escape(in_class=False)
            elif char == "[":
                self._class()
            elif char == "(":
                self._group()
            elif char == "{":
                found = _QUANTIFIER.match(pattern, self.index)
                if found is None:
                    self._refuse(
                        "a { that starts no repetition", "write \\{ for the character itself"
                    )
                self.index = found.end() if found else self.index
            elif char in "]}":
                self._refuse(f"a lone {char}", f"write \\{char} for the character itself")
            else:
                self.index += 1

    def _group(self) -> None:
        pattern, index = self.pattern, self.index
        if pattern.startswith("(?:", index) or not pattern.startswith("(?", index):
            self.index += 3 if pattern.startswith("(?:", index) else 1
            return
        if pattern.startswith(("(?P<", "(?<"), index):
            self._refuse("a named group", "write a plain group (...) or (?:...)")
        self._refuse(
            "a flag group", "only a leading (?i) is allowed; it makes the whole pattern ignore case"
        )

    def _escape(self, *, in_class: bool) -> None:
        pattern, index = self.pattern, self.index
        letter = pattern[index + 1]  # RE2 refuses a trailing backslash
        allowed = _CLASS_ESCAPES if in_class else _ESCAPES
        if letter in allowed or letter in _SYNTAX or (in_class and letter == "-"):
            self.index += 2
            return
        if letter == "x" and _HEX.fullmatch(pattern, index + 2, index + 4):
            self.index += 4
            return
        if letter.isdigit():
            self._refuse(f"\\{letter}", "write the character itself, or \\xHH")
        hint = _INSTEAD.get(letter)
        if hint is None and not letter.isalnum():
            hint = f"write {letter} without the backslash"
        self._refuse(f"\\{letter}", hint or "see the list of escapes in the README")

    def _class(self) -> None:
        pattern = self.pattern
        self.index += 1
        if pattern.startswith("^", self.index):
            self.index += 1
        if pattern.startswith("]", self.index):
            self._refuse("a ] first in a class", "write \\] for the character itself")
        while pattern[self.index] != "]":  # RE2 refuses an unterminated class
            if pattern.startswith("[:", self.index):
                self._refuse("a POSIX class like [:alpha:]", "write the range, like a-zA-Z")
            if pattern[self.index] == "\\":
                self._escape(in_class=True)
            else:
                self.index += 1
        self.index += 1

    def _refuse(self, construct: str, hint: str) -> None:
        raise PatternError(
            self.pattern,
            f"{construct} is not understood the same way by browsers",
            self.index,
            f"{_WHY} reads a smaller syntax than RE2; {hint}",
        )
