"""Bots' regular expressions: RE2 syntax, matched in time linear in the text.

Python's `re` backtracks: `(a+)+$` against thirty `a`s and a `!` held a worker for 8-9 s
until gunicorn killed it. RE2 never backtracks, so no message can make a pattern slow
in that way. Every pattern a bot author writes (`input.reject`, `regex()` in conditions,
`expect.regex` in tests) is compiled here, so a bot file has one regex dialect.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"
_WHY = "bots' regular expressions use RE2 syntax, which runs in linear time"


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is reported once, by us, not also on stderr
    options.never_capture = True  # only "does it match" is asked: no group spans to find
    return options


_OPTIONS = _options()
# The C++ object itself: `re2.compile(...).search` re-encodes the text and builds a match
# object on every call (1.2-3.9 µs a search, against 0.55 µs here), for a yes or no.
_RE2 = re2._re2.RE2
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED


class PatternError(ValueError):
    """A pattern RE2 does not compile; `offset` is where in it, `hint` how to fix it."""

    def __init__(self, pattern: str, reason: str, offset: int, hint: str | None = None) -> None:
        super().__init__(f"invalid regular expression: {reason}")
        self.pattern = pattern
        self.reason = reason
        self.offset = offset
        self.hint = hint


class Pattern:
    """A compiled bot pattern; `found_in` searches anywhere in the text, like `re.search`."""

    __slots__ = ("_regexp", "source")

    def __init__(self, source: str, regexp: Any) -> None:
        self.source = source
        self._regexp = regexp

    def found_in(self, text: str) -> bool:
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate is matched as its bytes, not an error
            data = text.encode("utf-8", "surrogatepass")
        return bool(self._regexp.Match(_UNANCHORED, data, 0, len(data))[0][0] != -1)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # RE2's object does not pickle; bots loaded in forked processes come back pickled.
        return compile_pattern, (self.source,)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


_BACKSPACE = (
    "in YAML's double quotes \\b is a backspace; write the pattern in single quotes, "
    "'\\bword\\b', or double the backslash, \"\\\\bword\\\\b\""
)


@lru_cache(maxsize=1024)
def compile_pattern(source: str) -> Pattern:
    """Compile once (validation, loading and conditions share this cache); PatternError."""
    if "\b" in source:
        # No one means a backspace: YAML's double quotes read `\b` as one, so `"\bword\b"`
        # would silently never match.
        raise PatternError(source, "it holds a backspace character", source.index("\b"), _BACKSPACE)
    regexp = _RE2(source.encode("utf-8", "surrogatepass"), _OPTIONS)
    if not regexp.ok():
        raise _error(source, regexp.error().decode("utf-8", "replace"))
    return Pattern(source, regexp)


def compile_any(sources: Sequence[str]) -> tuple[Pattern, ...]:
    """Patterns that together find what any of `sources` finds, in as few searches as can be.

    A search costs 2-2.5 µs in a turn whatever the pattern (calling into RE2 dominates a
    short message; bench/README.md), so `input.reject` is one alternation. `\\Q` quotes
    to the end of its pattern, so a pattern holding one is searched alone; so are all of
    them if the alternation is too large for RE2.
    """
    joinable = [source for source in sources if "\\Q" not in source]
    alone = tuple(compile_pattern(source) for source in sources if "\\Q" in source)
    if len(joinable) > 1:
        try:
            return (compile_pattern("|".join(f"(?:{source})" for source in joinable)), *alone)
        except PatternError:
            pass
    return (*(compile_pattern(source) for source in joinable), *alone)


# --- RE2's error text ("<what>: <the fragment>") as a located message --------------------

# Constructs Python's `re` runs and RE2 refuses, by how they start: what they are called
# and what to write instead.
_ABSENT = "check what must be absent separately, like !regex(...) in a route's condition"
_UNSUPPORTED = (
    ("(?=", "lookahead (?=...)", "match the text that follows too, or check it separately"),
    ("(?!", "negative lookahead (?!...)", _ABSENT),
    ("(?<=", "lookbehind (?<=...)", "match the text before it too, or check it separately"),
    ("(?<!", "negative lookbehind (?<!...)", _ABSENT),
    ("(?>", "atomic group (?>...)", "write a plain group (?:...)"),
    ("(?(", "conditional group (?(...)", "write the alternatives with |"),
    ("(?P=", "backreference (?P=name)", "spell out the repeated text"),
    ("(?P>", "recursion (?P>name)", "nest the pattern a fixed number of times"),
    ("(?#", "comment (?#...)", "remove the comment"),
)
_ESCAPES = {
    "Z": ("\\Z", "write \\z for the end of the text"),
    "u": ("\\u", "write a code point as \\x{263a}"),
    "U": ("\\U", "write a code point as \\x{1f600}"),
    "N": ("\\N{...}", "write a code point as \\x{263a}"),
}
_REASONS = {
    "missing )": ("missing ), unterminated group", None),
    "unexpected )": ("unbalanced parenthesis", None),
    "missing ]": ("missing ], unterminated character class", None),
    "trailing \\": ("the pattern ends in a lone backslash", "write \\\\ for a backslash"),
    "no argument for repetition operator": ("nothing to repeat before {arg}", None),
    "bad repetition operator": (
        "repetition of a repetition {arg}",
        "put the inner one in a group, like (?:a+)*",
    ),
    "invalid repetition size": (
        "invalid repetition {arg}",
        "counts go up to 1000, smaller first, also when repetitions are nested",
    ),
    "invalid escape sequence": ("unknown escape {arg}", None),
    "invalid character class": ("invalid character class {arg}", None),
    "invalid character class range": ("invalid character class or range {arg}", None),
    "unknown unicode class": ("unknown Unicode class {arg}", "like \\pL, \\p{Greek} or \\PN"),
    "invalid perl operator": ("unknown group syntax {arg}", f"see {SYNTAX_URL}"),
    "invalid named capture group": ("invalid group name {arg}", None),
    "pattern too large - compile failed": (
        "the pattern is too large",
        "RE2 caps a compiled pattern at 8 MiB: lower the counts in {n,m}",
    ),
}

# The group openings RE2 accepts: an "invalid perl operator" is at none of them.
_GROUP = re.compile(r"\(\?(?::|P?<[^=!]|[imsU]*(?:-[imsU]+)?[:)])")


def _error(pattern: str, text: str) -> PatternError:
    what, _, arg = text.partition(": ")
    layout = _Layout(pattern)
    offset = layout.offset_of(what, arg)
    unsupported = _unsupported(pattern, what, arg, offset)
    if unsupported is not None:
        construct, advice = unsupported
        return PatternError(pattern, f"{construct} is not supported", offset, f"{_WHY}; {advice}")
    unicode_class = what == "invalid character class range" and arg[:2] in ("\\p", "\\P")
    key = "unknown unicode class" if unicode_class else what
    reason, hint = _REASONS.get(key, (f"{what}: {arg}" if arg else what, None))
    return PatternError(pattern, reason.replace("{arg}", arg), offset, hint)


def _unsupported(pattern: str, what: str, arg: str, offset: int) -> tuple[str, str] | None:
    """The name of a construct RE2 refuses but `re` runs, and what to write instead."""
    if what == "invalid perl operator":
        for start, construct, advice in _UNSUPPORTED:
            if pattern.startswith(start, offset):
                return construct, advice
        unknown = [flag for flag in arg[2:] if flag.isalpha() and flag not in "imsU"]
        if unknown and not arg.startswith("(?P"):
            return f"flag {unknown[0]}", "RE2's flags are i, m, s and U"
    if what == "invalid escape sequence" and len(arg) == 2:
        if arg[1] in "123456789":
            return f"backreference {arg}", "spell out the repeated text"
        if arg[1] in _ESCAPES:
            return _ESCAPES[arg[1]]
    if what == "bad repetition operator" and arg.endswith("+"):
        return f"possessive repetition {arg}", f"write {arg[:-1]}"
    return None


class _Layout:
    """Where a pattern's groups and classes open and close, and where each token starts.

    RE2 names the failing fragment, or the whole pattern for an unbalanced bracket; the
    caret goes under the fragment's first occurrence that is not inside an escape, or
    under the bracket left open (or the one that closes nothing).
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.starts: set[int] = set()
        self.open_groups: list[int] = []
        self.stray_close: int | None = None
        self.open_class: int | None = None
        for index, char in self._tokens():
            if char == "(":
                self.open_groups.append(index)
            elif char == ")" and self.open_groups:
                self.open_groups.pop()
            elif char == ")" and self.stray_close is None:
                self.stray_close = index

    def offset_of(self, what: str, arg: str) -> int:
        if what == "missing )" and self.open_groups:
            return self.open_groups[-1]
        if what == "unexpected )" and self.stray_close is not None:
            return self.stray_close
        if what == "missing ]" and self.open_class is not None:
            return self.open_class
        if what == "trailing \\":
            return max(len(self.pattern) - 1, 0)
        found = self.pattern.find(arg) if arg else -1
        while found != -1 and not self._failing(what, found):
            found = self.pattern.find(arg, found + 1)
        return max(found, 0)

    def _failing(self, what: str, index: int) -> bool:
        """Whether RE2's fragment can be the one at `index` (not escaped, not a valid group)."""
        if index not in self.starts:
            return False
        return what != "invalid perl operator" or not _GROUP.match(self.pattern, index)

    def _tokens(self) -> Iterator[tuple[int, str]]:
        """(index, character) of each group parenthesis; records token starts and classes."""
        pattern, index = self.pattern, 0
        while index < len(pattern):
            self.starts.add(index)
            char = pattern[index]
            if char == "\\":
                index = self._escape_end(index)
                continue
            if char == "[":
                index = self._class_end(index)
                continue
            if char in "()":
                yield index, char
            index += 1

    def _escape_end(self, index: int) -> int:
        if self.pattern.startswith("\\Q", index):  # literal text up to \E
            end = self.pattern.find("\\E", index + 2)
            return len(self.pattern) if end == -1 else end + 2
        return index + 2

    def _class_end(self, start: int) -> int:
        pattern, index = self.pattern, start + 1
        index += pattern.startswith("^", index)
        index += pattern.startswith("]", index)  # a `]` first in a class is a character
        while index < len(pattern):
            self.starts.add(index)
            if pattern[index] == "]":
                return index + 1
            if pattern.startswith("[:", index) and ":]" in pattern[index:]:
                index = pattern.index(":]", index) + 2
            else:
                index += 2 if pattern[index] == "\\" else 1
        self.open_class = start
        return index
