"""Helpers shared by the protocol tests: Poe request bodies and a strict SSE reader."""

from __future__ import annotations

import json
from typing import Any

from .conftest import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}

SSEEvent = tuple[str, dict[str, Any]]


def user(content: str, **fields: Any) -> dict[str, Any]:
    """A user message as Poe sends it (extra fields such as attachments or parameters)."""
    return {"role": "user", "content": content, "content_type": "text/markdown", **fields}


def bot(content: str, **fields: Any) -> dict[str, Any]:
    return {"role": "bot", "content": content, "content_type": "text/markdown", **fields}


def query(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A `query` request body with fixed ids, newest message last."""
    return {
        "version": "1.2",
        "type": "query",
        "query": list(messages),
        "user_id": "u-test",
        "conversation_id": "c-test",
        "message_id": "m-test",
        "metadata": "",
        "language_code": "en",
        **fields,
    }


def parse_sse(raw: bytes) -> list[SSEEvent]:
    """Events of a stream framed exactly as the engine frames it, failing on anything else.

    Each event is `event: <name>\\r\\n` + `data: <one-line JSON object>\\r\\n` + `\\r\\n`.
    """
    text = raw.decode("utf-8")
    assert text.endswith("\r\n\r\n"), f"the stream does not end with a blank line: {text!r}"
    events: list[SSEEvent] = []
    for block in text[: -len("\r\n\r\n")].split("\r\n\r\n"):
        lines = block.split("\r\n")
        assert len(lines) == 2, f"an event must be exactly two lines: {block!r}"
        name_line, data_line = lines
        assert name_line.startswith("event: "), name_line
        assert data_line.startswith("data: "), data_line
        data = json.loads(data_line[len("data: ") :])
        assert isinstance(data, dict), data_line
        events.append((name_line[len("event: ") :], data))
    return events


def names(events: list[SSEEvent]) -> list[str]:
    return [name for name, _ in events]
