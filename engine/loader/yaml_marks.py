"""YAML to plain data, keeping the line and column of every key and value.

The data is built in one loop over libyaml's events, with an explicit stack, rather than
from `yaml.compose`'s node graph, because of what hostile files did to that graph. Compose
recurses in C: 25,000 nested `[` (50 KB) crashed the process. An alias is its anchor's own
node, so nine levels of nine aliases (a "billion laughs") meant 387 million values to build,
and `x: &r [*r]` a cycle. PyYAML's merge keys rewrite nodes in place, so a mapping reached
through a second alias reported its merged keys as duplicates. Here an alias replays its
anchor's events, every value is counted, nesting is bounded and only YAML's plain tags are
read: any text ends in data or in one located error, in bounded time and memory.

The events come from libyaml and from nothing else: PyYAML without it (`yaml.CSafeLoader`
missing) stops the engine at import with LIBYAML_MISSING. Falling back to PyYAML's
pure-Python parser, as the engine once did, read the same file two ways: that parser
rejects valid YAML libyaml and editors accept (`suggested_replies: [How long is shipping?,
I want a refund]` in bots/acme-help.yaml: it ends a plain scalar at `?` inside brackets),
and it reports errors with other marks and messages, so a bot loaded on one machine and
not on another, and its errors moved. Making the two agree would mean patching PyYAML's
scanner, a fork of its YAML 1.1 grammar; requiring libyaml costs nothing in practice:
PyYAML's wheels on PyPI for CPython on Linux (glibc and musl), macOS and Windows all carry
libyaml, so `pip install -r requirements.txt` gets it, and only a build from source
without libyaml's headers goes without.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    ScalarEvent,
    StreamEndEvent,
)

from ..errors import LibyamlMissing

Loc = tuple[str | int, ...]

# Limits far beyond any real bot (the examples are at most 5 KB, nest 9 levels and hold 358
# keys and values; bench's generated bots at most 2.7 KB), low enough that a hostile file
# fails in a fraction of a second. 100 levels also keep pydantic's validation and the schema
# walk in sources.py far from Python's recursion limit; 100,000 values build in about 0.3 s.
MAX_BYTES = 1 << 20
MAX_DEPTH = 100
MAX_VALUES = 100_000

LIBYAML_MISSING = (
    "PyYAML is installed without libyaml (yaml.CSafeLoader is missing), and the engine reads "
    "bot files with libyaml only: PyYAML's pure-Python parser rejects valid files that "
    "libyaml and editors accept (such as `[How long is shipping?, I want a refund]`), so the "
    "same bot would load on one machine and not on another. PyYAML's wheels on PyPI include "
    "libyaml: reinstall it with `pip install --force-reinstall --no-cache-dir "
    "--only-binary=PyYAML PyYAML==6.0.3`, or install libyaml's headers first (Debian: "
    "apt-get install libyaml-dev) when it must be built from source."
)

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:
    raise LibyamlMissing(LIBYAML_MISSING) from None

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _MERGE, _TIMESTAMP = (f"{_TAG}{name}" for name in ("str", "int", "merge", "timestamp"))
# Read as text: `<<` where it is not a key, and `=`, which PyYAML resolves without reading.
_TEXT_TAGS = frozenset({_STR, _MERGE, f"{_TAG}value", f"{_TAG}yaml"})
# The first characters PyYAML's resolver has patterns for; a plain value starting otherwise
# is text. (Exact while no resolver is registered for any first character, as none is.)
_RESOLVABLE = frozenset(char for char in yaml.resolver.Resolver.yaml_implicit_resolvers if char)
_KINDS = {  # the other tags a plain value may carry, and what each reads
    _INT: "an integer",
    f"{_TAG}float": "a number",
    f"{_TAG}bool": "true or false",
    f"{_TAG}null": "null",
    _TIMESTAMP: "a date or time",
}
_QUOTE_HINT = "quote the value to keep it as text"


class Mark(NamedTuple):
    """1-based position of a node, with the scalar style needed to place offsets inside it.

    A named tuple: a file has hundreds of marks, made three times faster than a dataclass's.
    """

    line: int
    column: int
    style: str | None = None


@dataclass
class MarkedDocument:
    """The parsed data plus where each part came from."""

    data: Any
    lines: list[str] = field(default_factory=list)
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)
    duplicates: list[tuple[Loc, Mark]] = field(default_factory=list)


class YamlSyntaxError(Exception):
    """YAML that cannot be read as a bot's data, with a 1-based position."""

    def __init__(
        self, message: str, line: int, column: int, hint: str | None = None, loc: Loc = ()
    ) -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.hint, self.loc = message, line, column, hint, loc


def too_large(size: int) -> YamlSyntaxError:
    """The error for a file over MAX_BYTES; `size` 0 when unknown (a device, a pipe)."""
    given = f"{size:,} bytes" if size > MAX_BYTES else f"more than {MAX_BYTES:,} bytes"
    return YamlSyntaxError(
        f"the file is {given}; a bot file may be at most {MAX_BYTES:,} bytes (1 MiB)",
        1,
        1,
        hint="split it into several bots",
    )


def parse(text: str) -> MarkedDocument:
    """Parse one YAML document; an empty file gives `None` data."""
    if len(text) > MAX_BYTES // 4:  # shorter texts fit whatever their characters
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            raise too_large(size)
    document = MarkedDocument(data=None, lines=text.splitlines())
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as exc:  # only a str built in Python can hold one
        raise _at(text, exc.start, "invalid text: a lone surrogate is not a character") from None
    try:
        document.data = _Builder(document, loader).build()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(f"invalid YAML: {problem}", line, column) from None
    except yaml.reader.ReaderError as exc:  # libyaml gives a byte offset, not a line
        index = len(text.encode("utf-8")[: exc.position].decode("utf-8", "ignore"))
        raise _at(text, index, f"invalid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", 1, 1) from None
    finally:
        loader.dispose()
    return document


def _at(text: str, index: int, message: str) -> YamlSyntaxError:
    line_start = text.rfind("\n", 0, index) + 1
    return YamlSyntaxError(message, text.count("\n", 0, index) + 1, index - line_start + 1)


class _Marks(NamedTuple):
    """Where marks are written: the document's, or a merge value's own until it is merged."""

    values: dict[Loc, Mark]
    keys: dict[Loc, Mark]
    duplicates: list[tuple[Loc, Mark]]


class _Seq:
    __slots__ = ("anchor", "data", "loc")

    def __init__(self, loc: Loc, anchor: str | None) -> None:
        self.loc, self.anchor = loc, anchor
        self.data: list[Any] = []

    def child(self) -> Loc:
        return (*self.loc, len(self.data))


_NO_KEY: Any = object()  # a mapping waiting for its next key
_MERGING: Any = object()  # a mapping reading the value of its `<<` key


class _Map:
    __slots__ = ("anchor", "data", "key", "loc", "outer", "own")

    def __init__(self, loc: Loc, anchor: str | None) -> None:
        self.loc, self.anchor = loc, anchor
        self.data: dict[Any, Any] = {}
        self.key: Any = _NO_KEY
        self.own: set[Any] = set()  # keys written in the mapping itself, not merged into it
        self.outer: _Marks | None = None  # while merging, where the mapping's marks go

    def child(self) -> Loc:
        return (*self.loc, "<<") if self.key is _MERGING else (*self.loc, self.key)


@dataclass
class _Anchor:
    start: int  # index of its first event in _Builder._events
    end: int | None  # after its last event; None while its value is still being read
    line: int


class _Builder:
    """Turns the events of one document into data and marks."""

    def __init__(self, document: MarkedDocument, loader: Any) -> None:
        self._loader = loader
        self._marks = _Marks(document.values, document.keys, document.duplicates)
        self._constructor = yaml.constructor.SafeConstructor()
        self._stack: list[_Seq | _Map] = []
        self._events: list[Event] = []  # the document's own inside anchors, for aliases
        self._recording = 0  # anchored collections open: their events are kept
        self._anchors: dict[str, _Anchor] = {}
        self._replays: list[Iterator[Event]] = []
        self._expanding: tuple[Event, Loc] | None = None  # the outermost alias being replayed
        self._built = 0
        self._documents = 0
        self._root: Any = None

    def build(self) -> Any:
        get_event, record = self._loader.get_event, self._events.append
        while True:
            event = self._replayed() if self._replays else None
            if event is None:
                event = get_event()
                if self._recording:
                    record(event)
            match event:
                case ScalarEvent():
                    self._scalar(event)
                case CollectionStartEvent():
                    self._open(event)
                case CollectionEndEvent():
                    self._close()
                case AliasEvent():
                    self._alias(event)
                case DocumentStartEvent():
                    self._document(event)
                case StreamEndEvent():
                    return self._root

    def _replayed(self) -> Event | None:
        """The next event an alias repeats; None once every alias has been replayed."""
        while self._replays:
            event = next(self._replays[-1], None)
            if event is not None:
                return event
            self._replays.pop()
        return None

    def _document(self, event: DocumentStartEvent) -> None:
        self._documents += 1
        if self._documents > 1:
            raise _error(
                event,
                "a bot file holds one YAML document; a second one starts here",
                "remove the `---` or `...` line, or put the second bot in a file of its own",
            )

    def _scalar(self, event: ScalarEvent) -> None:
        frame = self._stack[-1] if self._stack else None
        tag = _tag(event, self._loader.resolve)
        if isinstance(frame, _Map) and frame.key is _NO_KEY:
            self._key(frame, event, tag)
            return
        loc = frame.child() if frame else ()
        self._built += 1
        if self._built > MAX_VALUES:
            raise _too_many(*self._written(event, loc))
        self._marks.values[loc] = _mark(event, event.style)
        if event.anchor is not None:
            self._remember(event)
        value = event.value if tag == _STR else self._read(event, tag, loc)
        if frame is None:
            self._root = value
        elif isinstance(frame, _Seq):
            frame.data.append(value)
        else:
            self._add(frame, value)

    def _key(self, frame: _Map, event: ScalarEvent, tag: str) -> None:
        self._built += 1
        if self._built > MAX_VALUES:
            raise _too_many(*self._written(event, frame.loc))
        if event.anchor is not None:
            self._remember(event)
        if tag == _MERGE:
            frame.key, frame.outer = _MERGING, self._marks
            self._marks = _Marks({}, {}, [])
            return
        key = event.value if tag == _STR else self._read(event, tag, frame.loc)
        key = key if isinstance(key, str | int) else str(key)
        loc, mark = (*frame.loc, key), _mark(event, event.style)
        if key not in frame.own:
            frame.own.add(key)
        elif not self._replays:  # an alias repeats a duplicate already reported
            self._marks.duplicates.append((loc, mark))
        self._marks.keys[loc] = mark
        frame.key = key

    def _open(self, event: CollectionStartEvent) -> None:
        frame = self._stack[-1] if self._stack else None
        kind = "a mapping" if isinstance(event, MappingStartEvent) else "a list"
        if isinstance(frame, _Map) and frame.key is _NO_KEY:
            raise _error(event, f"a key must be text or a number, not {kind}", loc=frame.loc)
        loc = frame.child() if frame else ()
        self._built += 1
        if self._built > MAX_VALUES:
            raise _too_many(*self._written(event, loc))
        if len(self._stack) >= MAX_DEPTH:
            written, written_loc = self._written(event, ())
            message = f"nesting is deeper than {MAX_DEPTH} levels"
            hint = "a bot needs a few; look for brackets that are never closed"
            raise _error(written, message, hint, written_loc)
        if event.tag not in (None, "!", f"{_TAG}map" if kind == "a mapping" else f"{_TAG}seq"):
            message = f"the YAML tag '{_shown(event.tag)}' is not supported on {kind}"
            raise _error(event, message, "remove it", loc)
        self._marks.values[loc] = _mark(event)
        anchor = self._remember(event)
        self._stack.append(_Map(loc, anchor) if kind == "a mapping" else _Seq(loc, anchor))

    def _close(self) -> None:
        frame = self._stack.pop()
        if frame.anchor is not None:
            self._anchors[frame.anchor].end = len(self._events)
            self._recording -= 1
        self._add(self._stack[-1] if self._stack else None, frame.data)

    def _add(self, frame: _Seq | _Map | None, value: Any) -> None:
        if frame is None:
            self._root = value
        elif isinstance(frame, _Seq):
            frame.data.append(value)
        elif frame.key is _MERGING:
            self._merge(frame, value)
        else:
            frame.data[frame.key] = value
            frame.key = _NO_KEY

    def _merge(self, frame: _Map, value: Any) -> None:
        """`<<: *a` or `<<: [*a, *b]`: the keys the mapping lacks, the first source's first.

        A later `<<` overrides an earlier one, as in PyYAML, and the mapping's own keys win.
        The value was read at `loc.<<` into marks of its own; the winners' marks move to `loc`.
        """
        assert frame.outer is not None  # set with _MERGING
        merged, self._marks = self._marks, frame.outer
        frame.key, frame.outer = _NO_KEY, None
        here = (*frame.loc, "<<")
        if isinstance(value, dict):
            sources, width = [value], 0
        elif isinstance(value, list):
            sources, width = value, 1  # each source one level down
        else:
            raise _not_mergeable(value, merged.values[here], here)
        for index, source in enumerate(sources):
            if not isinstance(source, dict):
                raise _not_mergeable(source, merged.values[(*here, index)], (*here, index))
        taken: dict[Any, Loc] = {}
        for index, source in enumerate(sources):
            for key, item in source.items():
                if key not in frame.own and key not in taken:
                    taken[key] = (index,) if width else ()
                    frame.data[key] = item
        start = len(here)
        for written, into in ((merged.values, self._marks.values), (merged.keys, self._marks.keys)):
            for loc, mark in written.items():
                rest = loc[start:]
                if len(rest) > width and taken.get(rest[width]) == rest[:width]:
                    into[(*frame.loc, *rest[width:])] = mark
        self._marks.duplicates.extend(merged.duplicates)

    def _alias(self, event: AliasEvent) -> None:
        frame = self._stack[-1] if self._stack else None
        is_key = isinstance(frame, _Map) and frame.key is _NO_KEY
        loc = frame.loc if frame and is_key else frame.child() if frame else ()
        name = event.anchor or ""  # an alias always names one
        anchor = self._anchors.get(name)
        if anchor is None:
            raise _error(event, f"the alias *{name} has no anchor &{name} before it", loc=loc)
        if anchor.end is None:
            raise _error(
                event,
                f"the alias *{name} is inside the value anchored as &{name}, so it never ends",
                f"an alias repeats a value that ends before it; &{name} is on line {anchor.line}",
                loc,
            )
        first = self._events[anchor.start]
        if is_key and isinstance(first, CollectionStartEvent):  # said here, not at the anchor
            kind = "a mapping" if isinstance(first, MappingStartEvent) else "a list"
            raise _error(event, f"a key must be text or a number, not {kind}", loc=loc)
        if not self._replays:
            self._expanding = (event, loc)
        self._replays.append(iter(self._events[anchor.start : anchor.end]))

    def _written(self, event: Event, loc: Loc) -> tuple[Event, Loc]:
        """Where to report a limit met: while aliases are replayed, at the one the file has."""
        return self._expanding if self._replays and self._expanding else (event, loc)

    def _remember(self, event: ScalarEvent | CollectionStartEvent) -> str | None:
        """Record the anchor an event of the document (not of a replay) defines."""
        name = event.anchor
        if name is None or self._replays:
            return None
        if name in self._anchors:
            first = self._anchors[name].line
            raise _error(
                event,
                f"the anchor &{name} is already defined on line {first}",
                "rename one of them",
            )
        if not self._recording:
            self._events.append(event)  # else the loop kept it
        start = len(self._events) - 1
        collection = isinstance(event, CollectionStartEvent)
        self._anchors[name] = _Anchor(start, None if collection else start + 1, _mark(event).line)
        self._recording += collection
        return name

    def _read(self, event: ScalarEvent, tag: str, loc: Loc) -> Any:
        if tag in _TEXT_TAGS:
            return event.value
        kind = _KINDS.get(tag)
        explicit = event.tag not in (None, "!")
        if kind is None:
            raise _error(
                event,
                f"the YAML tag '{_shown(tag)}' is not supported",
                f"remove it, or {_QUOTE_HINT}",
                loc,
            )
        written = f"{_shown(tag)} " if explicit else ""
        hint = f"remove the tag {_shown(tag)}, or {_QUOTE_HINT}" if explicit else _QUOTE_HINT
        limit = sys.get_int_max_str_digits()
        if tag == _INT and limit and len(event.value) > limit:
            raise _error(
                event,
                f"cannot read an integer of {len(event.value):,} characters: "
                f"Python reads at most {limit:,} digits",
                hint,
                loc,
            )
        try:
            return self._constructor.yaml_constructors[tag](
                self._constructor, yaml.ScalarNode(tag, event.value)
            )
        # What PyYAML's readers raise: `int('')`, `value[0]` of '', `bool_values['maybe']`, a
        # timestamp that does not match its pattern, `datetime.date(2024, 13, 45)`.
        except (ValueError, LookupError, AttributeError, OverflowError) as exc:
            reason = f": {exc}" if tag == _TIMESTAMP and isinstance(exc, ValueError) else ""
            shown = event.value if len(event.value) <= 40 else event.value[:40] + "…"
            raise _error(
                event, f"cannot read {written}{shown!r} as {kind}{reason}", hint, loc
            ) from None


def _too_many(event: Event, loc: Loc) -> YamlSyntaxError:
    return _error(
        event,
        f"the file has more than {MAX_VALUES:,} values, counting each one an alias repeats",
        "an alias repeats all its anchor holds, so aliases of aliases multiply",
        loc,
    )


def _not_mergeable(value: Any, mark: Mark, loc: Loc) -> YamlSyntaxError:
    kind = "a list" if isinstance(value, list) else repr(value)
    return YamlSyntaxError(
        f"`<<` merges a mapping or a list of mappings, not {kind}",
        mark.line,
        mark.column,
        "write `<<: *name`, naming an anchored mapping",
        loc,
    )


def _shown(tag: str) -> str:
    return f"!!{tag.removeprefix(_TAG)}" if tag.startswith(_TAG) else tag


def _tag(event: ScalarEvent, resolve: Callable[..., str]) -> str:
    """The tag written, or else the one PyYAML's resolver gives the value."""
    tag = event.tag
    if tag is not None and tag != "!":
        return tag
    value = event.value
    if not event.implicit[0] or (value and value[0] not in _RESOLVABLE):
        return _STR  # quoted, or plain and starting like no number, date, true or null
    return resolve(yaml.ScalarNode, value, event.implicit)


def _mark(event: Event, style: str | None = None) -> Mark:
    mark = event.start_mark
    assert mark is not None  # libyaml's events all have one
    return Mark(mark.line + 1, mark.column + 1, style)


def _error(event: Event, message: str, hint: str | None = None, loc: Loc = ()) -> YamlSyntaxError:
    mark = _mark(event)
    return YamlSyntaxError(message, mark.line, mark.column, hint, loc)
