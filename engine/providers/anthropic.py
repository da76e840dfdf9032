"""Anthropic messages through the official SDK."""

from __future__ import annotations

from typing import Any

import httpx2

from ..spec.models import AnthropicModel
from .base import ChunkStream, ModelCall
from .sdk import open_body, sdk_client, sdk_key
from .wire import AnthropicReader

# The messages API requires max_tokens; this is used when the bot sets none.
DEFAULT_MAX_TOKENS = 1024


def open_stream(
    spec: AnthropicModel, api_key: str | None, base_url: str | None, call: ModelCall
) -> ChunkStream:
    """Start a streaming message; errors before the first chunk raise ProviderError. The
    SDK sends the request; its events are read from the body (`wire.AnthropicReader`)."""
    key = sdk_key(spec, api_key, base_url)
    client = sdk_client("anthropic", key, base_url, spec.timeout.connect, spec.timeout.total)

    def send() -> httpx2.Response:
        response = client.messages.with_streaming_response.create(
            model=spec.name, messages=_messages(call), stream=True, **_options(call)
        ).__enter__()
        http_response: httpx2.Response = response.http_response
        return http_response

    stream: ChunkStream = open_body("anthropic", send, AnthropicReader)
    return stream


def _messages(call: ModelCall) -> list[dict[str, str]]:
    """Anthropic needs strict user/assistant alternation, starting with the user."""
    merged: list[dict[str, str]] = []
    for message in call.messages:
        if merged and merged[-1]["role"] == message.role:
            merged[-1]["content"] += "\n\n" + message.content
        else:
            merged.append({"role": message.role, "content": message.content})
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    return merged


def _options(call: ModelCall) -> dict[str, Any]:
    """temperature and top_p are not sent: the SDK (2.x, API version 2026-10-21) refuses
    them with a TypeError and the API with a 400; the loader warns when a bot sets them."""
    sampling = call.sampling
    options: dict[str, Any] = {"max_tokens": sampling.max_tokens or DEFAULT_MAX_TOKENS}
    if call.system:
        options["system"] = call.system
    if sampling.stop:
        options["stop_sequences"] = list(sampling.stop)
    return options
