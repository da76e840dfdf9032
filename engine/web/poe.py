"""`POST /<bot>`: auth, size limit, parse, run, encode. No bot logic lives here."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..compiled import CompiledBot
from ..protocol import jsonshape, sse
from ..protocol.guard import guarded
from ..protocol.requests import REPORT_TYPES, RequestError, parse_body, parse_query, request_type
from ..providers.relay import RelayTiming
from ..runtime import run

blueprint = Blueprint("poe", __name__)
log = logging.getLogger("engine.web")


def _error(status: int, message: str, **headers: str) -> Response:
    body = json.dumps({"error": message})
    return Response(body, status, headers, content_type="application/json")


@blueprint.get("/<bot_name>")
def describe(bot_name: str) -> Response:
    """A browser check that the URL is right; Poe itself only POSTs."""
    bot = current_app.extensions["engine"].bots.get(bot_name)
    if bot is None:
        return _unknown_bot(bot_name)
    return _error(405, f"bot '{bot_name}' is running; Poe talks to it with POST", Allow="POST")


@blueprint.post("/<bot_name>")
def answer(bot_name: str) -> Response:
    state = current_app.extensions["engine"]
    bot: CompiledBot | None = state.bots.get(bot_name)
    if bot is None:
        return _unknown_bot(bot_name)
    if bot.access_key is not None and not _authorized(bot.access_key):
        log.warning("bot %s: refused a request with a missing or wrong access key", bot_name)
        return _error(401, "missing or wrong access key", **{"WWW-Authenticate": "Bearer"})
    try:
        data = parse_body(request.get_data(cache=False))
        kind = request_type(data)
        return _dispatch(bot, kind, data, state.settings_bodies[bot_name])
    except RequestEntityTooLarge:
        log.warning("bot %s: refused a body over %d bytes", bot_name, request.max_content_length)
        return _error(413, f"the request body is over {request.max_content_length} bytes")
    except RequestError as exc:
        log.warning("bot %s: bad request: %s", bot_name, exc.message)
        return _error(exc.status, exc.message)


def _dispatch(bot: CompiledBot, kind: str, data: dict[str, Any], settings: bytes) -> Response:
    if kind == "query":
        return _query(bot, data)
    if kind == "settings":
        return Response(settings, 200, content_type="application/json")
    if kind in REPORT_TYPES:
        _log_report(bot.name, kind, data)
        return Response("{}", 200, content_type="application/json")
    return _error(501, f"unsupported request type {kind!r}")


def _query(bot: CompiledBot, data: dict[str, Any]) -> Response:
    query = parse_query(data)
    timing = RelayTiming(keepalive=current_app.extensions["engine"].settings.keepalive_seconds)
    events = guarded(run(bot, query, timing=timing), bot.name)
    if _wants_json():
        return Response(
            json.dumps(jsonshape.aggregate(events)), 200, content_type="application/json"
        )
    return Response(_encoded(events), 200, sse.HEADERS, content_type=sse.CONTENT_TYPE)


def _encoded(events: Iterator[Any]) -> Iterator[bytes]:
    try:
        for event in events:
            yield sse.encode(event)
    finally:
        # The server closes us when the client goes away: stop the bot (and any model
        # call it is waiting on) now, not whenever the generator is garbage-collected.
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _wants_json() -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


def _authorized(key: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time, so response timing reveals nothing about the key.
    return hmac.compare_digest(given.strip().encode(), key.encode())


def _log_report(bot_name: str, kind: str, data: dict[str, Any]) -> None:
    detail = {key: data[key] for key in ("message", "feedback_type", "reaction") if key in data}
    log.info("bot %s: %s %s", bot_name, kind, json.dumps(detail)[:500])


def _unknown_bot(bot_name: str) -> Response:
    names = ", ".join(sorted(current_app.extensions["engine"].bots)) or "none"
    return _error(404, f"no bot named {bot_name!r}; this server serves: {names}")
