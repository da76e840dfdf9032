"""`POST /<bot>`: auth, size limit, parse, run, encode. No bot logic lives here.

This endpoint is plain WSGI, mounted in front of the Flask app (`app.wsgi_app`), because
it is the hot path: measured per FAQ turn, Flask's request and response objects cost more
than the engine's whole answer (bench/README.md). Everything else (the bot list, health,
browser checks) stays in Flask.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..compiled import CompiledBot
from ..iterators import close_iterator
from ..protocol import jsonshape, sse
from ..protocol.events import Event, KeepAlive
from ..protocol.guard import guarded
from ..protocol.requests import REPORT_TYPES, RequestError, parse_body, parse_query, request_type
from ..providers.relay import RelayTiming
from ..runtime import run
from .disconnect import until_gone

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from . import EngineState

log = logging.getLogger("engine.web")

JSON = "application/json"
_REASONS = {
    200: "OK",
    400: "BAD REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT FOUND",
    408: "REQUEST TIMEOUT",
    413: "REQUEST ENTITY TOO LARGE",
    501: "NOT IMPLEMENTED",
}


class Reply:
    """A status, headers and body iterable: what a WSGI handler hands back."""

    def __init__(
        self,
        status: int,
        body: Iterable[bytes],
        content_type: str = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status, self.body = status, body
        self.headers = [("Content-Type", content_type), *(headers or {}).items()]
        if isinstance(body, list):
            self.headers.append(("Content-Length", str(sum(map(len, body)))))


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON error body `{"error": message}` a bot creator can read."""
    return Reply(status, [json.dumps({"error": message}).encode()], JSON, headers)


class PoeEndpoint:
    """Answers `POST /<bot>` for every loaded bot and passes anything else to Flask."""

    def __init__(self, flask_app: WSGIApplication, state: EngineState) -> None:
        self._next = flask_app
        self._state = state
        self._timing = RelayTiming(keepalive=state.settings.keepalive_seconds)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or path.count("/") != 1:
            return self._next(environ, start_response)
        reply = self.answer(path[1:], environ)
        start_response(f"{reply.status} {_REASONS.get(reply.status, '')}", reply.headers)
        return reply.body

    def answer(self, name: str, environ: WSGIEnvironment) -> Reply:
        bot = self._state.bots.get(name)
        if bot is None:
            return unknown_bot(name, self._state.bots)
        if bot.access_key is not None and not _authorized(environ, bot.access_key):
            log.warning("bot %s: refused a request with a missing or wrong access key", name)
            return error(401, "missing or wrong access key", {"WWW-Authenticate": "Bearer"})
        try:
            data = parse_body(_read_body(environ, self._state.settings.max_body_bytes))
            return self._dispatch(bot, request_type(data), data, environ)
        except RequestError as exc:
            kind = "bad request" if exc.status == 400 else "refused"
            log.warning("bot %s: %s: %s", name, kind, exc.message)
            return error(exc.status, exc.message)

    def _dispatch(
        self, bot: CompiledBot, kind: str, data: dict[str, Any], environ: WSGIEnvironment
    ) -> Reply:
        if kind == "query":
            return self._query(bot, data, environ)
        if kind == "settings":
            return Reply(200, [self._state.settings_bodies[bot.name]])
        if kind in REPORT_TYPES:
            _log_report(bot.name, kind, data)
            return Reply(200, [b"{}"])
        return error(501, f"unsupported request type {kind!r}")

    def _query(self, bot: CompiledBot, data: dict[str, Any], environ: WSGIEnvironment) -> Reply:
        limiter = self._state.limiter
        events = run(bot, parse_query(data), timing=self._timing, limiter=limiter)
        events = guarded(events, bot.name)
        # Both modes stop the bot (and its model call) as soon as the client leaves.
        events = until_gone(events, environ, bot.name)
        if _wants_json(environ):
            return Reply(200, [json.dumps(jsonshape.aggregate(events)).encode()])
        return Reply(200, encoded(events), sse.CONTENT_TYPE, sse.HEADERS)


def encoded(events: Iterator[Event]) -> Iterator[bytes]:
    """SSE bytes, written in as few pieces as the answer allows.

    Events are gathered until the runtime marks one `flush` (it is about to wait for a
    model) or sends a keep-alive: a rule-based answer leaves in one write, a model's
    chunks each leave the moment they arrive.
    """
    pending: list[bytes] = []
    try:
        for event in events:
            pending.append(sse.encode(event))
            if getattr(event, "flush", False) or isinstance(event, KeepAlive):
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    finally:
        # The server closes us when the client goes away: stop the bot (and any model
        # call it is waiting on) now, not whenever the generator is garbage-collected.
        close_iterator(events)


def _read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared:
        if not declared.isdigit():
            raise RequestError(f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(f"the request body is over {limit} bytes", 413)
    try:
        if declared:
            return bytes(stream.read(int(declared)))
        body = bytes(stream.read(limit + 1))  # chunked: the server ends the stream for us
    except TimeoutError:
        # The server's REQUEST_READ_TIMEOUT (engine/worker.py) passed before the body ended.
        raise RequestError("the request body did not arrive in time", 408) from None
    if len(body) > limit:
        raise RequestError(f"the request body is over {limit} bytes", 413)
    return body


def _wants_json(environ: WSGIEnvironment) -> bool:
    accept = environ.get("HTTP_ACCEPT", "")
    return "application/json" in accept and "text/event-stream" not in accept


def _authorized(environ: WSGIEnvironment, key: str) -> bool:
    scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time, so response timing reveals nothing about the key.
    return hmac.compare_digest(given.strip().encode(), key.encode())


def _log_report(bot_name: str, kind: str, data: dict[str, Any]) -> None:
    detail = {key: data[key] for key in ("message", "feedback_type", "reaction") if key in data}
    log.info("bot %s: %s %s", bot_name, kind, json.dumps(detail)[:500])


def unknown_bot(name: str, bots: Mapping[str, CompiledBot]) -> Reply:
    served = ", ".join(sorted(bots)) or "none"
    return error(404, f"no bot named {name!r}; this server serves: {served}")
