"""Events to Server-Sent Events bytes: the only place that knows the framing."""

from __future__ import annotations

import json

from ..text import clean_text
from .events import Comment, Event, KeepAlive

# CRLF line ends, as sse-starlette (and so fastapi_poe) sends them; any SSE client accepts them.
_EOL = "\r\n"
KEEPALIVE = f": ping{_EOL}{_EOL}".encode()
CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def encode(event: Event) -> bytes:
    """One event as `event: <name>` + `data: <json on one line>` + a blank line."""
    if isinstance(event, KeepAlive):
        return KEEPALIVE  # a comment line: every SSE client skips it
    if isinstance(event, Comment):
        # One line, whatever the text holds: a line end would end the comment.
        line = " ".join(event.text.splitlines())
        return clean_text(f": {line}{_EOL}{_EOL}").encode()
    # json.dumps escapes newlines inside strings, so the data always fits on one line.
    payload = json.dumps(event.data(), ensure_ascii=False)
    frame = f"event: {event.name}{_EOL}data: {payload}{_EOL}{_EOL}"
    try:
        return frame.encode()
    except UnicodeEncodeError:
        # A lone surrogate that did not come through the request's edge (a template's
        # own escape, say): write U+FFFD rather than fail after the 200 status is sent.
        return clean_text(frame).encode()
