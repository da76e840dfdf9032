"""One playground turn: the browser's conversation completed into the query request Poe
would send, POSTed over HTTP to the bot (this server's own endpoint, or a remote one), and
its SSE answer streamed back as NDJSON lines while the inspector reads it.

Going through HTTP rather than calling the runtime is the point: the creator sees the
bytes Poe would see, from the same endpoint, with the same auth, framing and timing. The
server runs under gevent, so the blocking httpx client only parks this greenlet.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..compiled import CompiledBot
from ..protocol.inspect import SSEComment, SSEEvent, SSEParser, Violation, check
from ..state import decode

TRACE_PREFIX = "engine-trace "
# Poe's whole-answer limit is 600 s; keep-alives come every few seconds, so a minute of
# silence means the bot is stuck.
TURN_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# Fields of a ProtocolMessage the playground passes on; anything else the browser sends
# (an `access_key`, say) stays out of the request.
MESSAGE_FIELDS = (
    "role",
    "content",
    "content_type",
    "timestamp",
    "message_id",
    "metadata",
    "attachments",
    "parameters",
    "feedback",
    "reactions",
    "sender",
)
BODY_SHOWN = 2000  # characters of a non-SSE answer quoted in its violation


class TurnError(ValueError):
    """The browser's turn request is malformed; the message says how."""


@dataclass(frozen=True)
class Target:
    """Where the turn goes and with what; `bot` is set for local bots (trace, state)."""

    url: str
    key: str | None
    trace_token: str | None = None
    bot: CompiledBot | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if self.trace_token:
            headers["X-Engine-Trace"] = self.trace_token
        return headers


def new_id(prefix: str) -> str:
    """A Poe-shaped identifier: `m-` and 32 lowercase hex digits."""
    return f"{prefix}-{secrets.token_hex(16)}"


def query_request(payload: Any) -> dict[str, Any]:
    """The Poe query request for the browser's turn; TurnError if it cannot be one."""
    if not isinstance(payload, dict):
        raise TurnError("the body must be a JSON object with `conversation_id` and `query`")
    messages = payload.get("query")
    if not isinstance(messages, list) or not messages:
        raise TurnError("`query` must be a non-empty list of messages, the new one last")
    conversation = payload.get("conversation_id") or new_id("c")
    language = payload.get("language_code") or "en"
    if not isinstance(conversation, str) or not isinstance(language, str):
        raise TurnError("`conversation_id` and `language_code` must be strings")
    return {
        "version": "1.2",
        "type": "query",
        "query": [_message(message, index) for index, message in enumerate(messages)],
        "user_id": "u-play",
        "conversation_id": conversation,
        "message_id": new_id("m"),
        "metadata": "",
        "language_code": language,
    }


def _message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
        raise TurnError(f"query[{index}] must be an object with a string `content`")
    completed = {name: message[name] for name in MESSAGE_FIELDS if name in message}
    completed.setdefault("role", "user")
    completed.setdefault("content", "")
    completed.setdefault("content_type", "text/markdown")
    completed.setdefault("timestamp", int(time.time() * 1_000_000))
    completed["message_id"] = completed.get("message_id") or new_id("m")
    completed.setdefault("metadata", None)
    completed.setdefault("attachments", [])
    completed.setdefault("parameters", {})
    return completed


@dataclass
class Inspection:
    """What one answer looked like on the wire: its timings and events, as they came."""

    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    content_type: str = ""
    first_byte: float | None = None
    done: float | None = None
    chunks: list[float] = field(default_factory=list)
    events: list[SSEEvent] = field(default_factory=list)
    body: str = ""  # the start of an answer that is not SSE
    failures: list[Violation] = field(default_factory=list)
    trace_seen: bool = False

    def ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)

    def metadata(self) -> str | None:
        """The last `data` event's metadata: what Poe would keep with the bot message."""
        for event in reversed(self.events):
            if event.event == "data":
                value, _ = event.parsed()
                metadata = value.get("metadata") if isinstance(value, dict) else None
                if isinstance(metadata, str):
                    return metadata
        return None


def stream(target: Target, body: dict[str, Any], conversation: str) -> Iterator[bytes]:
    """The NDJSON lines of one turn; the `end` line comes last whatever happens."""
    yield line({"kind": "request", "url": target.url, "body": body})
    seen = Inspection()
    try:
        yield from _exchange(target, body, seen)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        rule = "no-done" if seen.status else "http-status"
        seen.failures.append(Violation(rule, f"no answer from {target.url}: {reason}"))
    if target.bot is not None and not seen.trace_seen:
        yield line({"kind": "trace", "path": [], "nodes": []})
    yield line(_end(target, body, conversation, seen))


def _exchange(target: Target, body: dict[str, Any], seen: Inspection) -> Iterator[bytes]:
    with (
        httpx.Client(timeout=TURN_TIMEOUT, trust_env=False) as client,
        client.stream("POST", target.url, json=body, headers=target.headers()) as response,
    ):
        seen.status = response.status_code
        seen.content_type = response.headers.get("content-type", "")
        yield line(
            {
                "kind": "response",
                "t": seen.ms(),
                "status": seen.status,
                "content_type": seen.content_type,
            }
        )
        sse = "text/event-stream" in seen.content_type.lower()
        parser = SSEParser()
        for chunk in response.iter_raw():
            t = seen.ms()
            seen.first_byte = t if seen.first_byte is None else seen.first_byte
            seen.chunks.append(t)
            if not sse:
                seen.body += chunk.decode("utf-8", "replace")[: BODY_SHOWN - len(seen.body)]
                continue
            for item in parser.feed(chunk):
                yield from _item(item, t, target, seen)
        items, leftover = parser.finish()
        for item in items:
            yield from _item(item, seen.ms(), target, seen)
        if leftover.strip():
            cut = f"the answer ended inside an event (no blank line after it): {leftover[:200]!r}"
            seen.failures.append(Violation("no-done", cut))


def _item(
    item: SSEEvent | SSEComment, t: float, target: Target, seen: Inspection
) -> Iterator[bytes]:
    if isinstance(item, SSEComment):
        if target.bot is not None and item.text.startswith(TRACE_PREFIX):
            seen.trace_seen = True
            yield line(_trace(item.text[len(TRACE_PREFIX) :]))
        else:
            yield line({"kind": "comment", "t": t, "text": item.text})
        return
    seen.events.append(item)
    if item.event == "done" and seen.done is None:
        seen.done = t
    data, _ = item.parsed()
    yield line({"kind": "event", "t": t, "event": item.event, "data": data, "raw": item.raw})


def _trace(text: str) -> dict[str, Any]:
    """The trace line: the locs the turn took and the diagram's nodes to highlight."""
    try:
        trace = json.loads(text)
        path = [str(loc) for loc in trace.get("path", [])]
    except (ValueError, AttributeError, TypeError):
        path = []
    return {"kind": "trace", "path": path, "nodes": _nodes(path)}


def _nodes(path: list[str]) -> list[str]:
    try:
        from ..graph import nodes_for
    except ImportError:  # the diagram module is optional to the turn
        return []
    return list(nodes_for(path))


def _end(
    target: Target, body: dict[str, Any], conversation: str, seen: Inspection
) -> dict[str, Any]:
    violations = (
        check(seen.status, seen.content_type, seen.events, seen.first_byte) if seen.status else []
    )
    if seen.body:
        violations = [_quoted(v, seen.body) for v in violations]
    said = {failure.rule for failure in seen.failures}  # said already, with the reason
    violations = [v for v in violations if v.rule not in said]
    return {
        "kind": "end",
        "t": seen.ms(),
        "timings": {"first_byte": seen.first_byte, "done": seen.done, "chunks": seen.chunks},
        "violations": [v.as_json() for v in [*seen.failures, *violations]],
        "state": _state(target.bot, seen.metadata(), conversation),
        "message_id": body["message_id"],
    }


def _quoted(violation: Violation, body: str) -> Violation:
    if violation.rule != "http-status":
        return violation
    return Violation(violation.rule, f"{violation.message}; the body: {body}", violation.event)


def _state(
    bot: CompiledBot | None, metadata: str | None, conversation: str
) -> dict[str, Any] | None:
    """The flow state the answer carries, decoded as the bot would read it next turn."""
    if bot is None or metadata is None:
        return None
    state, _ = decode(metadata, bot.name, bot.state_key, conversation)
    if state is None:
        return None
    return {"flow": state.flow, "step": state.step, "vars": state.vars, "tries": state.tries}


def line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode() + b"\n"
