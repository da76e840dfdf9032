"""Other Poe bots through Poe's bot query API: the same `query` we serve, read back as SSE."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx2

from ..spec.models import PoeModel
from .base import ModelCall, ProviderError, status_error
from .transport import POOL, send
from .wire import BodyStream, PoeReader

PROTOCOL_VERSION = "1.2"


def open_stream(spec: PoeModel, call: ModelCall) -> BodyStream:
    """POST the conversation to `base_url + bot`; errors before any text raise ProviderError.

    Sent and read by engine/providers/transport.py (Poe's protocol needs no SDK), the
    answer's events by `wire.PoeReader`.
    """
    if not call.access_key:
        raise ProviderError(
            f"calling the Poe bot {spec.bot} needs this bot's access key (set `access_key`)",
            retryable=False,
            configuration=True,
        )
    url = urlsplit(spec.base_url + spec.bot)
    scheme, host = url.scheme, url.hostname or ""
    port = url.port or (443 if scheme == "https" else 80)
    content = json.dumps(_body(call)).encode()
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    head = _head(target, url.netloc, call.access_key, len(content))
    timeouts = {"connect": spec.timeout.connect, "read": spec.timeout.total}
    timeouts["write"] = spec.timeout.total
    try:
        status, _, body = send(POOL, (scheme, host, port), head, content, timeouts)
        if status != 200:
            detail = _read_some(body)
            raise status_error(f"poe bot {spec.bot}", status, detail.decode(errors="replace"))
    except httpx2.HTTPError as exc:
        raise ProviderError(f"poe: {type(exc).__name__}: {exc}", retryable=True) from exc
    return BodyStream(body, PoeReader(spec.bot))


def _head(path: str, host: str, key: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Accept: text/event-stream\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nUser-Agent: poe-bot-engine\r\n\r\n"
    ).encode()


def _read_some(body: Any, limit: int = 300) -> bytes:
    """The start of an error answer's body, for the message; the rest is not waited for."""
    data = b""
    try:
        while len(data) < limit and (piece := body.poll(body.read_timeout)) is not None:
            data += piece
    finally:
        body.close()
    return data[:limit]


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
