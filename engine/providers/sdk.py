"""What the official openai and anthropic SDKs share: their clients, reading a stream's
text, closing it, and turning their errors (which have the same names in both) into ours."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from .base import (
    Chunk,
    ProviderError,
    close_response,
    missing_package,
    read_upstream,
    upstream_error,
)


def sdk(package: str) -> Any:
    """The SDK module, or a configuration error naming the package to install."""
    try:
        return importlib.import_module(package)
    except ImportError:  # pragma: no cover - both are in requirements.txt
        raise missing_package(package) from None


# The client class of each SDK; both take the same arguments.
CLIENTS = {"openai": "OpenAI", "anthropic": "Anthropic"}


@lru_cache(maxsize=64)
def sdk_client(
    package: str, api_key: str | None, base_url: str | None, connect: float, total: float
) -> Any:
    """One client (and connection pool) per configuration, shared by all requests."""
    module = sdk(package)
    return getattr(module, CLIENTS[package])(
        api_key=api_key or "missing",
        base_url=base_url,
        timeout=module.Timeout(total, connect=connect),
        max_retries=0,  # the engine retries, and only before the first chunk
    )


class SDKStream:
    """An SDK's streaming response as chunks; `texts` picks the text out of each event.

    The SDK's iterator simply stops when the body does, so a connection closed mid-answer
    would look like a whole answer: only the event of type `end` (Anthropic's
    `message_stop`) shows that the model finished.
    """

    def __init__(
        self, package: str, create: Callable[[], Any], texts: TextPicker, end: str
    ) -> None:
        self._package = package
        self._texts, self._end = texts, end
        errors: type[Exception] = sdk(package).APIError
        try:
            self._stream = create()
        except errors as exc:
            raise classify(exc) from exc

    def __iter__(self) -> Iterator[Chunk]:
        ended = False
        # Read on to the end of the body after the end event, so the connection goes back
        # to the pool instead of being shut down by `close`.
        for event in read_upstream(self._stream, self._package):
            ended = ended or event.type == self._end
            for text in self._texts(event):
                yield Chunk(text)
        if not ended:
            raise ProviderError(
                f"{self._package}: the stream ended without {self._end}", retryable=True
            )

    def close(self) -> None:
        close_response(self._stream.response)


TextPicker = Callable[[Any], Iterator[str]]


def classify(exc: Exception) -> ProviderError:
    """Map an SDK error to a ProviderError: retryable or not, configuration or not."""
    return upstream_error(type(exc).__module__.split(".")[0], exc)
