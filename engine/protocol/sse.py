"""Events to Server-Sent Events bytes: the only place that knows the framing."""

from __future__ import annotations

import json
from json.encoder import encode_basestring

from ..text import clean_text
from .events import Comment, Event, KeepAlive, Text

# CRLF line ends, as sse-starlette (and so fastapi_poe) sends them; any SSE client accepts them.
_EOL = "\r\n"
KEEPALIVE = f": ping{_EOL}{_EOL}".encode()
CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


_TEXT_START = f'event: text{_EOL}data: {{"text": '.encode()
_TEXT_END = f"}}{_EOL}{_EOL}".encode()


def encode(event: Event) -> bytes:
    """One event as `event: <name>` + `data: <json on one line>` + a blank line."""
    if type(event) is Text:
        # A model's chunk, the hot path of a relay: the text escaped once, by the same C
        # function `json.dumps(..., ensure_ascii=False)` uses, so the bytes are the same.
        try:
            return _TEXT_START + encode_basestring(event.text).encode() + _TEXT_END
        except UnicodeEncodeError:
            return _TEXT_START + encode_basestring(clean_text(event.text)).encode() + _TEXT_END
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
