"""Events aggregated into one JSON body, for simple clients that cannot read SSE."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .events import Data, Error, Event, File, Replace, Suggest, Text


def aggregate(events: Iterable[Event]) -> dict[str, Any]:
    """The whole answer at once: same events as the SSE stream, so both modes agree."""
    text, suggestions, files = "", [], []
    extra: dict[str, Any] = {}
    for event in events:
        if isinstance(event, Text):
            text += event.text
        elif isinstance(event, Replace):
            text = event.text
        elif isinstance(event, Suggest):
            suggestions.append(event.text)
        elif isinstance(event, File):
            files.append(event.data())
        elif isinstance(event, Data):
            extra["metadata"] = event.metadata
        elif isinstance(event, Error):
            extra["error"] = event.data()
    body: dict[str, Any] = {
        "messages": [{"type": "message", "text": text}],
        "suggested_replies": suggestions,
        "isFinalResponse": True,
    }
    if files:
        body["files"] = files
    return body | extra
