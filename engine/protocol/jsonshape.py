"""Events aggregated into one JSON body, for simple clients that cannot read SSE."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .events import Event
from .transcript import Transcript


def aggregate(events: Iterable[Event]) -> dict[str, Any]:
    """The whole answer at once: same events as the SSE stream, so both modes agree."""
    answer = Transcript.of(events)
    body: dict[str, Any] = {
        "messages": [{"type": "message", "text": answer.text}],
        "suggested_replies": answer.suggestions,
        "isFinalResponse": True,
    }
    if answer.files:
        body["files"] = [file.data() for file in answer.files]
    if answer.metadata is not None:
        body["metadata"] = answer.metadata
    if answer.error is not None:
        body["error"] = answer.error.data()
    return body
