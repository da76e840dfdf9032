"""OpenAI chat completions (and every OpenAI-compatible server) through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..spec.models import OpenAIModel
from .base import Chunk, ModelCall, ProviderError, close_response, missing_package, status_error


def open_stream(
    spec: OpenAIModel, api_key: str | None, base_url: str | None, call: ModelCall
) -> OpenAIStream:
    """Start a streaming completion; errors before the first chunk raise ProviderError."""
    try:
        import openai
    except ImportError:  # pragma: no cover - it is in requirements.txt
        raise missing_package("openai") from None
    client = _client(api_key, base_url, spec.timeout.connect, spec.timeout.total)
    try:
        stream = client.chat.completions.create(
            model=spec.name, messages=_messages(call), stream=True, **_sampling(call)
        )
    except openai.APIError as exc:
        raise classify(exc) from exc
    return OpenAIStream(stream)


class OpenAIStream:
    """Text deltas of a chat-completions stream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Chunk]:
        import openai

        try:
            for event in self._stream:
                for choice in event.choices or ():
                    text = getattr(choice.delta, "content", None)
                    if text:
                        yield Chunk(text)
        except openai.APIError as exc:
            raise classify(exc) from exc

    def close(self) -> None:
        close_response(self._stream.response)


@lru_cache(maxsize=64)
def _client(api_key: str | None, base_url: str | None, connect: float, total: float) -> Any:
    """One client (and connection pool) per configuration, shared by all requests."""
    import openai

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


def classify(exc: Exception) -> ProviderError:
    """Map an SDK error (openai's or anthropic's, which share names) to a ProviderError."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__module__.split(".")[0]
    if isinstance(status, int) and status >= 400:
        return status_error(name, status, getattr(exc, "message", exc))
    # Timeouts, dropped connections, and errors sent inside a 200 stream (such as
    # Anthropic's `overloaded_error` event): the request was fine, another try may work.
    return ProviderError(f"{name}: {type(exc).__name__}: {exc}", retryable=True, status=status)
