"""Model answers read straight from the response body's bytes: one wire format each.

A `Reader` turns the bytes one socket read brought into chunks of text, keeping whatever
line or character is still incomplete for the next read; `BodyStream` drives it over a
`transport.Body`. No SDK event objects are built: OpenAI's `data:` line is parsed with
JSON (`loads`) and its deltas picked out; Anthropic's and Poe's events only when they carry
text (or an error).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .base import Chunk, ProviderError, upstream_error
from .transport import Body

# After the stream's end marker, how long the rest of the body (its last chunk's framing)
# may take before the connection is closed instead of being kept.
_DRAIN = 1.0


def loads(data: bytes) -> Any:
    """JSON from a stream's bytes: orjson (0.6 µs for a chat-completions chunk, against
    2.7 µs), or `json` for what orjson refuses and `json` reads: the lone half of an emoji
    that a model split between two chunks (`"\\ud83d"`, joined later by `WholeText`),
    NaN. ValueError if neither reads it. (orjson reads an integer past 64 bits as a
    float; the readers take only text out of an event.)"""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class Lines:
    """Bytes to lines, across reads: LF, CRLF or a lone CR end a line (as SSE allows)."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._rest:
            data = self._rest + data
        if b"\r" in data:
            held = b""
            if data.endswith(b"\r"):  # perhaps the first half of a CRLF: wait for the LF
                data, held = data[:-1], b"\r"
            lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            self._rest = lines.pop() + held
            return lines
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return lines


def field(line: bytes) -> tuple[bytes, bytes]:
    """An SSE line's field name and value (`data:x` and `data: x` are the same)."""
    name, _, value = line.partition(b":")
    if value.startswith(b" "):
        value = value[1:]
    return name, value


class Reader:
    """One wire format: `feed` returns the text chunks in a read; `ended` once the stream's
    end marker came; `marker` names it for the error when it never does."""

    provider = ""
    marker = ""
    ended = False
    # A failure that came in the same read as text: raised at the next read, so the
    # text before it is relayed first (as it would be had it come a read earlier).
    failure: ProviderError | None = None

    def feed(self, data: bytes) -> list[Chunk]:
        if self.failure is not None:
            raise self.failure
        chunks: list[Chunk] = []
        try:
            self.read(data, chunks)
        except ProviderError as exc:
            if not chunks:
                raise
            self.failure = exc
        return chunks

    def read(self, data: bytes, chunks: list[Chunk]) -> None:
        """Append the chunks of `data` to `chunks`."""
        raise NotImplementedError


class OpenAIReader(Reader):
    """Chat-completions chunks: one `data: {json}` line each, `data: [DONE]` at the end."""

    provider, marker = "openai", "[DONE]"

    def __init__(self) -> None:
        self._lines = Lines()

    def read(self, data: bytes, chunks: list[Chunk]) -> None:
        for line in self._lines.feed(data):
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, `event:` lines
            value = line[5:].strip()
            if value == b"[DONE]":
                self.ended = True
                return
            for choice in _openai_event(value).get("choices") or ():
                text = ((choice or {}).get("delta") or {}).get("content")
                if isinstance(text, str) and text:
                    chunks.append(Chunk(text))


def _openai_event(data: bytes) -> dict[str, Any]:
    try:
        event = loads(data)
    except ValueError:  # invalid JSON, or bytes that are not UTF-8
        raise ProviderError(
            f"openai: invalid JSON in the stream: {data[:100]!r}", retryable=True
        ) from None
    if not isinstance(event, dict):
        raise ProviderError(f"openai: unexpected stream event: {data[:100]!r}", retryable=True)
    if event.get("error"):  # a server reporting a failure inside a 200 stream
        raise ProviderError(
            f"openai: error in the stream: {str(event['error'])[:300]}", retryable=True
        )
    return event


class EventReader(Reader):
    """SSE events (`event:` and `data:` fields, dispatched on a blank line); `event` is
    called with the name and data of each one this format may care about."""

    interesting: frozenset[bytes] = frozenset()

    def __init__(self) -> None:
        self._lines = Lines()
        self._name = b"message"
        self._data: list[bytes] = []

    def read(self, data: bytes, chunks: list[Chunk]) -> None:
        for line in self._lines.feed(data):
            if not line:
                if self._data:
                    name, joined = self._name, b"\n".join(self._data)
                    self._name, self._data = b"message", []
                    if name in self.interesting:
                        chunk = self.event(name, joined)
                        if chunk is not None:
                            chunks.append(chunk)
                        if self.ended:
                            return
                else:
                    self._name = b"message"
            elif line[0] != 58:  # not ":", a comment (keep-alive)
                name, value = field(line)
                if name == b"event":
                    self._name = value
                elif name == b"data":
                    self._data.append(value)

    def event(self, name: bytes, data: bytes) -> Chunk | None:
        raise NotImplementedError

    def payload(self, name: bytes, data: bytes) -> dict[str, Any]:
        try:
            value = loads(data)
        except ValueError:
            raise ProviderError(
                f"{self.provider}: invalid JSON in {name.decode(errors='replace')!r}: "
                f"{data[:100]!r}",
                retryable=True,
            ) from None
        if not isinstance(value, dict):
            raise ProviderError(
                f"{self.provider}: unexpected event data: {data[:100]!r}", retryable=True
            )
        return value


class AnthropicReader(EventReader):
    """Messages stream: `content_block_delta` events carry text, `message_stop` ends it,
    `error` (such as `overloaded_error`) fails it."""

    provider, marker = "anthropic", "message_stop"
    interesting = frozenset((b"content_block_delta", b"message_stop", b"error"))

    def event(self, name: bytes, data: bytes) -> Chunk | None:
        if name == b"message_stop":
            self.ended = True
            return None
        payload = self.payload(name, data)
        if name == b"error":
            raise ProviderError(
                f"anthropic: error in the stream: {str(payload.get('error', payload))[:300]}",
                retryable=True,
            )
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta" and isinstance(text := delta.get("text"), str):
            return Chunk(text) if text else None
        return None


class PoeReader(EventReader):
    """Poe's bot protocol: `text` and `replace_response` events, `error`, `done`."""

    provider, marker = "poe", "`done`"
    interesting = frozenset((b"text", b"replace_response", b"error", b"done"))

    def __init__(self, bot: str) -> None:
        super().__init__()
        self.bot = bot

    def event(self, name: bytes, data: bytes) -> Chunk | None:
        if name == b"done":
            self.ended = True
            return None
        try:
            payload = loads(data)
        except ValueError:
            raise ProviderError(
                f"poe bot {self.bot} sent invalid JSON in {name.decode(errors='replace')!r}: "
                f"{data[:100]!r}",
                retryable=False,
            ) from None
        if not isinstance(payload, dict):
            payload = {}
        if name == b"error":
            raise ProviderError(
                f"poe bot {self.bot} answered an error: {payload.get('text', '')}",
                retryable=bool(payload.get("allow_retry", True)),
            )
        return Chunk(str(payload.get("text", "")), replace=name == b"replace_response")


class BodyStream:
    """A model's answer read from its response body by a `Reader`: a ChunkStream, and
    `poll(timeout)` for the relay to read it itself, one socket read at a time."""

    pollable = True

    def __init__(self, body: Body, reader: Reader, close: Any = None) -> None:
        self._body, self._reader = body, reader
        self._close = close or body.close

    def poll(self, timeout: float | None) -> list[Chunk] | None:
        """The chunks one read brought (maybe none), None once the answer is whole.
        Raises TimeoutError when nothing came within `timeout`, ProviderError when the
        upstream fails or the body ends before the stream's end marker."""
        try:
            return self._read(timeout)
        except TimeoutError:
            raise
        except BaseException:
            self.close()  # a failed answer: its connection serves no other
            raise

    def _read(self, timeout: float | None) -> list[Chunk] | None:
        reader = self._reader
        if reader.failure is not None:
            raise reader.failure
        if reader.ended:
            self._drain(timeout)
            return None
        try:
            data = self._body.poll(timeout)
        except (TimeoutError, ProviderError):
            raise
        except Exception as exc:  # httpx2's errors from the body: the upstream's doing
            raise upstream_error(reader.provider, exc) from exc
        if data is None:
            # A body that ends without the marker is a connection closed mid-answer.
            raise ProviderError(
                f"{reader.provider}: the stream ended without {reader.marker}", retryable=True
            )
        return reader.feed(data) if data else []

    def _drain(self, timeout: float | None) -> None:
        """Read the body to its end, so the connection can serve another answer."""
        wait = _DRAIN if timeout is None else min(timeout, _DRAIN)
        try:
            while self._body.poll(wait) is not None:
                pass
        except Exception:  # noqa: BLE001 - the answer is whole; closing drops the connection
            return

    def __iter__(self) -> Any:
        timeout = self._body.read_timeout
        while True:
            try:
                chunks = self.poll(timeout)
            except TimeoutError as exc:
                raise upstream_error(self._reader.provider, exc) from exc
            if chunks is None:
                return
            yield from chunks

    def close(self) -> None:
        self._close()
