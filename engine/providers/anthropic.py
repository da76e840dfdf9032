"""Anthropic messages through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..spec.models import AnthropicModel
from .base import ModelCall
from .sdk import SDKStream, sdk_client, sdk_key

# The messages API requires max_tokens; this is used when the bot sets none.
DEFAULT_MAX_TOKENS = 1024


def open_stream(
    spec: AnthropicModel, api_key: str | None, base_url: str | None, call: ModelCall
) -> SDKStream:
    """Start a streaming message; errors before the first chunk raise ProviderError."""
    key = sdk_key(spec, api_key, base_url)
    client = sdk_client("anthropic", key, base_url, spec.timeout.connect, spec.timeout.total)

    def create() -> Any:
        return client.messages.create(
            model=spec.name, messages=_messages(call), stream=True, **_options(call)
        )

    return SDKStream("anthropic", create, _texts, end="message_stop")


def _texts(event: Any) -> Iterator[str]:
    """The text of one messages-stream event, if it carries any."""
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        yield event.delta.text


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
