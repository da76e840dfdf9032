"""Events to Server-Sent Events bytes: the only place that knows the framing."""

from __future__ import annotations

import json
from json.encoder import encode_basestring

from ..text import clean_text
from .events import Comment, Done, Event, KeepAlive, Meta, Suggest, Text

# CRLF line ends, as sse-starlette (and so fastapi_poe) sends them; any SSE client accepts them.
_EOL = "\r\n"
KEEPALIVE = f": ping{_EOL}{_EOL}".encode()
CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


_TEXT_START = f'event: text{_EOL}data: {{"text": '.encode()
_TEXT_END = f"}}{_EOL}{_EOL}".encode()
_SUGGEST_START = f'event: suggested_reply{_EOL}data: {{"text": '.encode()
# `meta` and `done` of each kind, encoded once: every answer starts and ends with them.
_FIXED: dict[Event, bytes] = {}
_FIXED_MOST = 64  # meta's variants come from the bot files' content types: few
# `json.dumps(..., ensure_ascii=False)`'s encoder, made once: the call makes one each time.
_JSON = json.JSONEncoder(ensure_ascii=False)


def encode(event: Event) -> bytes:
    """One event as `event: <name>` + `data: <json on one line>` + a blank line."""
    if type(event) is Text:
        # A model's chunk, the hot path of a relay: the text escaped once, by the same C
        # function `json.dumps(..., ensure_ascii=False)` uses, so the bytes are the same.
        try:
            return _TEXT_START + encode_basestring(event.text).encode() + _TEXT_END
        except UnicodeEncodeError:
            return _TEXT_START + encode_basestring(clean_text(event.text)).encode() + _TEXT_END
    if type(event) is Meta or type(event) is Done:
        fixed = _FIXED.get(event)  # `flush` is not part of an event's identity (events.py)
        if fixed is None:
            fixed = _framed(event)
            if len(_FIXED) < _FIXED_MOST:
                _FIXED[event] = fixed
        return fixed
    if type(event) is Suggest:  # the same bytes as `_framed`, as for a chunk of text
        try:
            return _SUGGEST_START + encode_basestring(event.text).encode() + _TEXT_END
        except UnicodeEncodeError:
            return _framed(event)
    if isinstance(event, KeepAlive):
        return KEEPALIVE  # a comment line: every SSE client skips it
    if isinstance(event, Comment):
        # One line, whatever the text holds: a line end would end the comment.
        line = " ".join(event.text.splitlines())
        return clean_text(f": {line}{_EOL}{_EOL}").encode()
    return _framed(event)


def _framed(event: Event) -> bytes:
    # JSON escapes newlines inside strings, so the data always fits on one line.
    payload = _JSON.encode(event.data())
    frame = f"event: {event.name}{_EOL}data: {payload}{_EOL}{_EOL}"
    try:
        return frame.encode()
    except UnicodeEncodeError:
        # A lone surrogate that did not come through the request's edge (a template's
        # own escape, say): write U+FFFD rather than fail after the 200 status is sent.
        return clean_text(frame).encode()
