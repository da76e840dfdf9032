"""What the official openai and anthropic SDKs share: their clients, reading a stream's
text, closing it, and turning their errors (which have the same names in both) into ours."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from .base import Chunk, ProviderError, close_response, missing_package, status_error


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
    """An SDK's streaming response as chunks; `texts` picks the text out of each event."""

    def __init__(self, package: str, create: Callable[[], Any], texts: TextPicker) -> None:
        self._errors: type[Exception] = sdk(package).APIError
        self._texts = texts
        try:
            self._stream = create()
        except self._errors as exc:
            raise classify(exc) from exc

    def __iter__(self) -> Iterator[Chunk]:
        try:
            for event in self._stream:
                for text in self._texts(event):
                    yield Chunk(text)
        except self._errors as exc:
            raise classify(exc) from exc

    def close(self) -> None:
        close_response(self._stream.response)


TextPicker = Callable[[Any], Iterator[str]]


def classify(exc: Exception) -> ProviderError:
    """Map an SDK error to a ProviderError: retryable or not, configuration or not."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__module__.split(".")[0]
    if isinstance(status, int) and status >= 400:
        return status_error(name, status, getattr(exc, "message", exc))
    # Timeouts, dropped connections, and errors sent inside a 200 stream (such as
    # Anthropic's `overloaded_error` event): the request was fine, another try may work.
    return ProviderError(f"{name}: {type(exc).__name__}: {exc}", retryable=True, status=status)
