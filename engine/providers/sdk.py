"""What the official openai and anthropic SDKs share: their clients, built only for a model
that has a key (or a server of its own), sending through engine/providers/transport.py; their
errors (which have the same names in both) turned into ours; and `SDKStream`, a streaming
response read from its body's bytes by a wire format's reader (engine/providers/wire.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import httpx2

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
from .transport import Body, Transport
from .wire import BodyStream, Reader

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
    """One client (and connection pool) per configuration, shared by all requests; the
    SDK's own httpx2 client (its defaults: redirects, proxies from the environment) over
    our transport."""
    module = sdk(package)
    timeout = module.Timeout(total, connect=connect)
    return getattr(module, CLIENTS[package])(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=0,  # the engine retries, and only before the first chunk
        http_client=module.DefaultHttpxClient(transport=Transport(), timeout=timeout),
    )


def open_body(
    package: str, send: Callable[[], httpx2.Response], reader: Callable[[], Reader]
) -> Any:
    """Send a streaming request with the SDK (`send` returns its response, body unread)
    and return its answer as a `BodyStream`, or as an `SDKLines` stream when the body did
    not come through our transport (a proxy from the environment) or came compressed.
    HTTP errors and failures to connect raise ProviderError here."""
    errors: type[Exception] = sdk(package).APIError
    try:
        http_response = send()
    except errors as exc:
        raise classify(exc) from exc
    body = http_response.extensions.get("body")
    if isinstance(body, Body) and not body.encoded:
        return BodyStream(body, reader(), lambda: close_response(http_response))
    return SDKLines(http_response, reader())


class SDKLines:
    """The same reader over httpx2's own byte stream (decoded), one read at a time."""

    def __init__(self, response: httpx2.Response, reader: Reader) -> None:
        self._response, self._reader = response, reader

    def __iter__(self) -> Iterator[Chunk]:
        reader = self._reader
        for data in read_upstream(self._response.iter_bytes(), reader.provider):
            yield from reader.feed(data)
            if reader.ended:
                return
        raise ProviderError(
            f"{reader.provider}: the stream ended without {reader.marker}", retryable=True
        )

    def close(self) -> None:
        close_response(self._response)


def classify(exc: Exception) -> ProviderError:
    """Map an SDK error to a ProviderError: retryable or not, configuration or not."""
    return upstream_error(type(exc).__module__.split(".")[0], exc)
