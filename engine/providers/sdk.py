"""What the official openai and anthropic SDKs share: their clients, built only for a model
that has a key (or a server of its own), and their errors (which have the same names in
both) turned into ours. `SDKStream` reads a stream through the SDK's own events, as the
anthropic provider does; the openai provider reads its stream's lines itself (`ChatStream`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from ..spec._base import ENV_REF
from ..spec.models import AnthropicModel, OpenAIModel
from .base import (
    Chunk,
    ProviderError,
    close_response,
    missing_package,
    read_upstream,
    upstream_error,
)

# Where each SDK's key comes from when the model names no `api_key: ${VAR}`.
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# What a model on a server of its own without a key gives the SDK, which builds no client
# without one; a server that needs no key (Ollama, llama.cpp) ignores it.
NO_KEY = "missing"


def sdk(package: str) -> Any:
    """The SDK module, or a configuration error naming the package to install."""
    try:
        return importlib.import_module(package)
    except ImportError:  # pragma: no cover - both are in requirements.txt
        raise missing_package(package) from None


def sdk_key(spec: OpenAIModel | AnthropicModel, api_key: str | None, base_url: str | None) -> str:
    """The key to build the model's client with.

    The provider's own API needs one: without it the model is a configuration error, known
    before any request leaves (the SDK would otherwise send a junk key and count on a 401,
    which no network, a proxy or an outage turns into a retried "not answering"). A model
    on a server of its own (`base_url`) may need none, as a local Ollama does.
    """
    if api_key is not None:
        return api_key
    if base_url is not None:
        return NO_KEY
    named = ENV_REF.match(spec.api_key or "")
    variable = named.group(1) if named else KEY_VARIABLES[spec.provider]
    raise ProviderError(
        f"{spec.provider}: no API key ({variable} is not set); the model was not called",
        retryable=False,
        configuration=True,
    )


# The client class of each SDK; both take the same arguments.
CLIENTS = {"openai": "OpenAI", "anthropic": "Anthropic"}


@lru_cache(maxsize=64)
def sdk_client(
    package: str, api_key: str, base_url: str | None, connect: float, total: float
) -> Any:
    """One client (and connection pool) per configuration, shared by all requests."""
    module = sdk(package)
    return getattr(module, CLIENTS[package])(
        api_key=api_key,
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
