"""What every provider shares: the call it receives, the chunks it yields, the errors it raises."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from ..errors import EngineError
from ..text import REPLACEMENT, clean_text

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One turn as providers see it: Poe's `bot` role is already `assistant`."""

    role: Role
    content: str


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters after rendering, validation and clamping; None means unset."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelCall:
    """Everything one model call needs, independent of the provider."""

    system: str | None
    messages: tuple[ChatMessage, ...]
    sampling: Sampling = field(default_factory=Sampling)
    turn: int = 1
    # For calls to other Poe bots: the caller's key and Poe's per-request token.
    access_key: str | None = None
    poe_metadata: str = ""
    user_id: str = ""
    conversation_id: str = ""


@dataclass(frozen=True)
class Chunk:
    """Text streamed by a model; `replace` throws away what was sent before (Poe bots only).
    `more`: another chunk that arrived with this one follows at once (write them together)."""

    text: str
    replace: bool = False
    more: bool = field(default=False, compare=False)


class ProviderError(EngineError):
    """A failed model call. `retryable` failures (429, 5xx, network) may be tried again."""

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool,
        configuration: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        # Configuration errors (missing key, unknown model) are the creator's to fix.
        self.configuration = configuration
        self.status = status


class ChunkStream(Protocol):
    """An open model answer: iterate for chunks, close to stop the upstream call."""

    def __iter__(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


def clean_call(call: ModelCall) -> ModelCall:
    """The call with every text an encoder can write: a lone surrogate in a prompt (a
    template can write one: `{{ "\\ud800" }}`) would fail the request before it left."""
    system = clean_text(call.system) if call.system else call.system
    messages = tuple(
        message
        if (text := clean_text(message.content)) is message.content
        else ChatMessage(message.role, text)
        for message in call.messages
    )
    stop = tuple(map(clean_text, call.sampling.stop))
    if system is call.system and messages == call.messages and stop == call.sampling.stop:
        return call
    return replace(
        call, system=system, messages=messages, sampling=replace(call.sampling, stop=stop)
    )


class WholeText:
    """A stream whose chunks are valid text, whatever the model sent.

    A model may split an emoji's two escaped UTF-16 halves (`"\\ud83d"`, `"\\ude00"`)
    across chunks, and JSON decodes each half as a lone surrogate, which no encoder
    writes. A chunk ending in a high surrogate keeps it back to join the next chunk's
    low one; any surrogate still alone becomes U+FFFD.

    `pollable` when the stream beneath can be read a socket read at a time (`poll`), as
    the relay does for the providers' own readers (engine/providers/wire.py).
    """

    def __init__(self, stream: ChunkStream) -> None:
        self._stream = stream
        self._held = ""
        self.pollable = bool(getattr(stream, "pollable", False))

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self._stream:
            whole = self._whole(chunk)
            if whole is not None:
                yield whole
        if self._held:
            self._held = ""
            yield Chunk(REPLACEMENT)

    def poll(self, timeout: float | None) -> list[Chunk] | None:
        """The whole chunks of one read (see `wire.BodyStream.poll`)."""
        chunks: list[Chunk] | None = self._stream.poll(timeout)  # type: ignore[attr-defined]
        if chunks is None:
            if self._held:
                self._held = ""
                return [Chunk(REPLACEMENT)]
            return None
        whole = [out for chunk in chunks if (out := self._whole(chunk)) is not None]
        return whole

    def _whole(self, chunk: Chunk) -> Chunk | None:
        text = chunk.text if chunk.replace else self._held + chunk.text
        self._held = ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._held = text[:-1], text[-1]
        text = clean_text(text)
        if text is chunk.text:
            return chunk
        if text or chunk.replace:
            return Chunk(text, chunk.replace, chunk.more)
        return None

    def close(self) -> None:
        self._stream.close()


Item = TypeVar("Item")


def read_upstream(items: Iterable[Item], provider: str) -> Iterator[Item]:
    """`items`, read from a model's response. Whatever fails while reading is the upstream's
    doing (a dropped connection, a body that is not what the API promised), so it becomes a
    ProviderError here; what still escapes a provider is the engine's own bug."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except ProviderError:
            raise
        except Exception as exc:
            raise upstream_error(provider, exc) from exc
        yield item


def upstream_error(provider: str, exc: Exception) -> ProviderError:
    """An exception from a model's API or the network: its HTTP status decides, when it
    carries one; otherwise (timeouts, dropped connections, errors sent inside a 200 stream
    such as Anthropic's `overloaded_error`) the request was fine and another try may work."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return status_error(provider, status, getattr(exc, "message", exc))
    return ProviderError(f"{provider}: {type(exc).__name__}: {exc}", retryable=True, status=status)


def status_error(provider: str, status: int, body: Any = "") -> ProviderError:
    """Classify an HTTP status the same way for every provider."""
    retryable = status == 429 or status >= 500 or status == 408
    configuration = status in (401, 403, 404)
    detail = f"{provider} answered HTTP {status}"
    if body:
        detail += f": {str(body)[:300]}"
    return ProviderError(detail, retryable=retryable, configuration=configuration, status=status)


def missing_package(package: str) -> ProviderError:
    return ProviderError(
        f"the {package} package is not installed; add it to requirements.txt",
        retryable=False,
        configuration=True,
    )


def close_response(response: Any) -> None:
    """Close an httpx(2) streaming response so the upstream sees the connection end now.

    The relay closes from another thread than the one reading, and on Linux `close()`
    alone neither wakes a thread blocked reading the socket nor sends the FIN until that
    read returns: the upstream would keep generating. Shutting the socket down does both.
    A finished response's connection is back in the pool, possibly serving another
    request, so only an unfinished one is shut down.
    """
    if not response.is_closed:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    response.close()
