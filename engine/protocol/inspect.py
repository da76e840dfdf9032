"""The playground's protocol inspector: a bot's SSE answer, parsed as it arrives and checked
against the rules Poe applies (../shared/poe-protocol.md §3), so a creator sees on the
first turn what Poe would refuse or silently drop.

The parser follows the WHATWG event-stream rules (any of LF, CRLF or CR ends a line; a
line starting with `:` is a comment; `data` lines join with newlines) but, unlike a
browser, keeps each event's raw text and reports an event that has a name and no data,
because showing the creator what went over the wire is the point.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Poe's events (§3.2); anything else Poe ignores, so it is only a warning.
KNOWN_EVENTS = frozenset(
    {"meta", "text", "replace_response", "suggested_reply", "file", "data", "json", "error", "done"}
)
# What counts as an answer: Poe says "Bot returned no text in response" otherwise.
_ANSWER_EVENTS = frozenset({"text", "replace_response"})
# Poe closes the stream at an error: these after it are never shown.
_CONTENT_EVENTS = frozenset({"text", "replace_response", "suggested_reply", "file", "data", "json"})
FIRST_BYTE_LIMIT_MS = 5000.0


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its name (`message` when it has none), its data (None when it
    had no `data` line) and the lines as received."""

    event: str
    data: str | None
    raw: str

    def parsed(self) -> tuple[Any, str | None]:
        """The data as JSON and None, or None and why it is not a JSON object."""
        if self.data is None:
            return None, "it has no data line"
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            return None, f"its data is not JSON ({exc})"
        if not isinstance(value, dict):
            return None, f"its data is JSON but not an object: {self.data[:80]}"
        return value, None


@dataclass(frozen=True)
class SSEComment:
    """A comment line (`: ping`): legal SSE that every client skips; `text` without `:`."""

    text: str


Item = SSEEvent | SSEComment


@dataclass
class SSEParser:
    """Bytes in, events and comments out, whatever the chunking: a CR at the end of one
    chunk waits for the next to see whether an LF follows, and a UTF-8 character split
    between chunks is joined."""

    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _pending: str = ""
    _name: str | None = None
    _data: list[str] | None = None
    _raw: list[str] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[Item]:
        text = self._pending + self._decoder.decode(chunk)
        self._pending = ""
        items: list[Item] = []
        start = 0
        while True:
            cut = _next_line_end(text, start)
            if cut is None:
                break
            end, after = cut
            if text[end] == "\r" and end + 1 == len(text):
                break  # a CR last in the chunk: the LF of a CRLF may come next
            self._line(text[start:end], text[start:after], items)
            start = after
        self._pending = text[start:]
        return items

    def finish(self) -> tuple[list[Item], str]:
        """At the end of the body: the last line if the body ended on a bare CR, and the
        raw text of an event left without its blank line (which no client dispatches)."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        items: list[Item] = []
        if text.endswith("\r"):
            self._line(text[:-1], text, items)
            text = ""
        leftover = "".join(self._raw) + text
        self._reset()
        return items, leftover

    def _line(self, line: str, raw: str, items: list[Item]) -> None:
        if not line:
            if self._name is not None or self._data is not None:
                data = None if self._data is None else "\n".join(self._data)
                items.append(SSEEvent(self._name or "message", data, "".join(self._raw) + raw))
            self._reset()
            return
        if line.startswith(":"):
            items.append(SSEComment(line[1:].strip()))
            return
        self._raw.append(raw)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._name = value
        elif name == "data":
            self._data = [*(self._data or []), value]

    def _reset(self) -> None:
        self._name, self._data, self._raw = None, None, []


def _next_line_end(text: str, start: int) -> tuple[int, int] | None:
    """Where the next line ends and the one after starts, or None without a line end."""
    lf, cr = text.find("\n", start), text.find("\r", start)
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 < len(text) and text[cr + 1] == "\n":
        return cr, cr + 2
    return cr, cr + 1


@dataclass(frozen=True)
class Violation:
    """A rule of the protocol an answer broke; `event` is the index of the event at fault."""

    rule: str
    message: str
    event: int | None = None
    severity: str = "error"

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "message": self.message,
            "event": self.event,
            "severity": self.severity,
        }


def check(
    status: int,
    content_type: str,
    events: Sequence[SSEEvent],
    first_byte_ms: float | None = None,
) -> list[Violation]:
    """Every rule the answer broke, in the order a reader meets them."""
    found = _http(status, content_type, first_byte_ms)
    if "text/event-stream" not in content_type.lower():
        return found  # not SSE: its events mean nothing
    return found + _events(events)


def _http(status: int, content_type: str, first_byte_ms: float | None) -> list[Violation]:
    found = []
    if status != 200:
        found.append(
            Violation("http-status", f"HTTP {status}: Poe shows an error for anything but 200")
        )
    if "text/event-stream" not in content_type.lower():
        shown = content_type or "none"
        found.append(
            Violation(
                "content-type",
                f"Content-Type {shown}: a query must be answered with text/event-stream",
            )
        )
    if first_byte_ms is not None and first_byte_ms > FIRST_BYTE_LIMIT_MS:
        found.append(
            Violation(
                "slow-first-byte",
                f"the first byte came after {first_byte_ms / 1000:.1f} s; Poe gives up after "
                f"{FIRST_BYTE_LIMIT_MS / 1000:.0f} s (send meta at once)",
            )
        )
    return found


def _events(events: Sequence[SSEEvent]) -> list[Violation]:
    found: list[Violation] = []
    names = [event.event for event in events]
    for index, event in enumerate(events):
        found += _one_event(index, event)
    found += _order(names)
    if "done" not in names:
        found.append(Violation("no-done", "the answer ended without a `done` event"))
    if not _answered(events):
        found.append(
            Violation(
                "empty-answer",
                "no text and no error: Poe shows 'Bot returned no text in response'",
            )
        )
    return found


def _one_event(index: int, event: SSEEvent) -> list[Violation]:
    found = []
    if event.event not in KNOWN_EVENTS:
        found.append(
            Violation(
                "unknown-event",
                f"event {event.event!r} is not one Poe knows; Poe ignores it",
                index,
                "warning",
            )
        )
    _, why = event.parsed()
    if why is not None:
        found.append(Violation("bad-json", f"event {event.event!r}: {why}", index))
    return found


def _order(names: list[str]) -> list[Violation]:
    found = []
    for index, name in enumerate(names):
        if name == "meta" and index > 0:
            found.append(
                Violation("meta-not-first", "`meta` must be the first event; Poe ignores it", index)
            )
    if "done" in names:
        done = names.index("done")
        if done + 1 < len(names):
            extra = names[done + 1]
            found.append(
                Violation("after-done", f"`{extra}` after `done`: Poe never reads it", done + 1)
            )
    errors = [index for index, name in enumerate(names) if name == "error"]
    if len(errors) > 1:
        found.append(Violation("two-errors", "a second `error`: Poe stops at the first", errors[1]))
    if errors:
        end = names.index("done") if "done" in names else len(names)
        late = [i for i in range(errors[0] + 1, end) if names[i] in _CONTENT_EVENTS]
        if late:
            found.append(
                Violation(
                    "text-after-error",
                    f"`{names[late[0]]}` after `error`: Poe has closed the answer",
                    late[0],
                )
            )
    return found


def _answered(events: Sequence[SSEEvent]) -> bool:
    for event in events:
        if event.event == "error":
            return True
        if event.event in _ANSWER_EVENTS:
            value, _ = event.parsed()
            if isinstance(value, dict) and value.get("text"):
                return True
    return False
