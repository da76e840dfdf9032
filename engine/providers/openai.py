"""OpenAI chat completions (and every OpenAI-compatible server) through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..spec.models import OpenAIModel
from .base import ModelCall
from .sdk import SDKStream, sdk


def open_stream(
    spec: OpenAIModel, api_key: str | None, base_url: str | None, call: ModelCall
) -> SDKStream:
    """Start a streaming completion; errors before the first chunk raise ProviderError."""
    client = _client(api_key, base_url, spec.timeout.connect, spec.timeout.total)

    def create() -> Any:
        return client.chat.completions.create(
            model=spec.name, messages=_messages(call), stream=True, **_sampling(call)
        )

    return SDKStream("openai", create, _texts)


def _texts(event: Any) -> Iterator[str]:
    """The text deltas of one chat-completions chunk."""
    for choice in event.choices or ():
        text = getattr(choice.delta, "content", None)
        if text:
            yield text


@lru_cache(maxsize=64)
def _client(api_key: str | None, base_url: str | None, connect: float, total: float) -> Any:
    """One client (and connection pool) per configuration, shared by all requests."""
    openai = sdk("openai")
    return openai.OpenAI(
        api_key=api_key or "missing",
        base_url=base_url,
        timeout=openai.Timeout(total, connect=connect),
        max_retries=0,  # the engine retries, and only before the first chunk
    )


def _messages(call: ModelCall) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": call.system}] if call.system else []
    return messages + [{"role": m.role, "content": m.content} for m in call.messages]


def _sampling(call: ModelCall) -> dict[str, Any]:
    sampling, options = call.sampling, dict[str, Any]()
    if sampling.temperature is not None:
        options["temperature"] = sampling.temperature
    if sampling.max_tokens is not None:
        options["max_tokens"] = sampling.max_tokens
    if sampling.top_p is not None:
        options["top_p"] = sampling.top_p
    if sampling.stop:
        options["stop"] = list(sampling.stop)
    return options
