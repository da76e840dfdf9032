"""Other Poe bots through Poe's bot query API: the same `query` we serve, read back as SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import httpx

from ..spec.models import PoeModel
from .base import Chunk, ModelCall, ProviderError, close_response, status_error

PROTOCOL_VERSION = "1.2"


def open_stream(spec: PoeModel, call: ModelCall) -> PoeStream:
    """POST the conversation to `base_url + bot`; errors before any text raise ProviderError."""
    if not call.access_key:
        raise ProviderError(
            f"calling the Poe bot {spec.bot} needs this bot's access key (set `access_key`)",
            retryable=False,
            configuration=True,
        )
    client = _client(spec.timeout.connect, spec.timeout.total)
    request = client.build_request(
        "POST",
        spec.base_url + spec.bot,
        json=_body(call),
        headers={"Authorization": f"Bearer {call.access_key}", "Accept": "text/event-stream"},
    )
    try:
        response = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise ProviderError(f"poe: {type(exc).__name__}: {exc}", retryable=True) from exc
    if response.status_code != 200:
        body = response.read()[:300]
        response.close()
        raise status_error(
            f"poe bot {spec.bot}", response.status_code, body.decode(errors="replace")
        )
    return PoeStream(response, spec.bot)


class PoeStream:
    """`text` and `replace_response` events as chunks; an `error` event raises."""

    def __init__(self, response: httpx.Response, bot: str) -> None:
        self._response = response
        self._bot = bot

    def __iter__(self) -> Iterator[Chunk]:
        try:
            for event, data in _events(self._response.iter_lines()):
                if event == "done":
                    return
                chunk = self._chunk(event, data)
                if chunk is not None:
                    yield chunk
        except httpx.HTTPError as exc:
            raise ProviderError(f"poe: {type(exc).__name__}: {exc}", retryable=True) from exc
        raise ProviderError(f"poe bot {self._bot} ended without `done`", retryable=True)

    def _chunk(self, event: str, data: str) -> Chunk | None:
        if event not in ("text", "replace_response", "error"):
            return None  # meta, suggested_reply, data, json, file: not part of the text
        try:
            payload: dict[str, Any] = json.loads(data)
        except json.JSONDecodeError:
            raise ProviderError(
                f"poe bot {self._bot} sent invalid JSON in {event!r}: {data[:100]}", retryable=False
            ) from None
        if event == "error":
            raise ProviderError(
                f"poe bot {self._bot} answered an error: {payload.get('text', '')}",
                retryable=bool(payload.get("allow_retry", True)),
            )
        return Chunk(str(payload.get("text", "")), replace=event == "replace_response")

    def close(self) -> None:
        close_response(self._response)


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Minimal SSE parsing: `event:` and `data:` fields, dispatched on a blank line."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue  # keep-alive comment
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def _body(call: ModelCall) -> dict[str, Any]:
    query: list[dict[str, Any]] = []
    if call.system:
        query.append({"role": "system", "content": call.system})
    roles = {"user": "user", "assistant": "bot"}
    query += [{"role": roles[m.role], "content": m.content} for m in call.messages]
    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "type": "query",
        "query": query,
        "user_id": call.user_id,
        "conversation_id": call.conversation_id,
        "message_id": "",
        "metadata": call.poe_metadata,
    }
    if call.sampling.temperature is not None:
        body["temperature"] = call.sampling.temperature
    if call.sampling.stop:
        body["stop_sequences"] = list(call.sampling.stop)
    return body


@lru_cache(maxsize=16)
def _client(connect: float, total: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(total, connect=connect))
