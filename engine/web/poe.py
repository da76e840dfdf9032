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
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..compiled import CompiledBot
from ..iterators import close_iterator
from ..loader import is_weak
from ..protocol import jsonshape, sse
from ..protocol.events import Comment, Done, Error, Event, KeepAlive
from ..protocol.guard import guarded
from ..protocol.requests import REPORT_TYPES, RequestError, parse_body, parse_query, request_type
from ..providers.relay import RelayTiming
from ..runtime import run
from ..runtime.scope import FlowTrace
from .disconnect import under_gevent, until_gone

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from . import EngineState

log = logging.getLogger("engine.web")
# The line per request on a logger of its own, which a deployment can route or silence.
requests_log = logging.getLogger("engine.requests")

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

    def swap(self, state: EngineState) -> None:
        """Answer from `state` from now on (a reload): one attribute, read per request as
        before. An answer already running keeps the bot it started with."""
        self._state = state

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or path.count("/") != 1:
            return self._next(environ, start_response)
        served = Served(path[1:])
        reply = self.answer(path[1:], environ, served)
        start_response(f"{reply.status} {_REASONS.get(reply.status, '')}", reply.headers)
        served.status = reply.status
        if isinstance(reply.body, list):
            served.log()  # whole; a stream is logged when it ends (`encoded`)
        return reply.body

    def answer(self, name: str, environ: WSGIEnvironment, served: Served | None = None) -> Reply:
        served = served or Served(name)
        bot = self._state.bots.get(name)
        if bot is None:
            served.bot, served.outcome = repr(name[:100]), "no such bot"
            return unknown_bot(name, self._state.bots)
        if bot.access_key is not None and not _authorized(environ, bot.access_key):
            log.warning("bot %s: refused a request with a missing or wrong access key", name)
            served.outcome = "refused: missing or wrong access key"
            return error(401, "missing or wrong access key", {"WWW-Authenticate": "Bearer"})
        if _unguarded(bot) and _proxied(environ):
            log.warning("bot %s: refused a proxied request: the bot has no access key", name)
            served.outcome = "refused: proxied, no access key"
            return error(403, PROXIED_WITHOUT_KEY)
        try:
            data = parse_body(_read_body(environ, self._state.settings.max_body_bytes))
            served.kind = request_type(data)
            return self._dispatch(bot, served.kind, data, environ, served)
        except RequestError as exc:
            kind = "bad request" if exc.status == 400 else "refused"
            log.warning("bot %s: %s: %s", name, kind, exc.message)
            served.outcome = kind
            return error(exc.status, exc.message)

    def _dispatch(
        self,
        bot: CompiledBot,
        kind: str,
        data: dict[str, Any],
        environ: WSGIEnvironment,
        served: Served,
    ) -> Reply:
        if kind == "query":
            return self._query(bot, data, environ, served)
        if kind == "settings":
            return Reply(200, [self._state.settings_bodies[bot.name]])
        if kind in REPORT_TYPES:
            _log_report(bot.name, kind, data)
            return Reply(200, [b"{}"])
        served.outcome = "unsupported"
        return error(501, f"unsupported request type {kind!r}")

    def _query(
        self, bot: CompiledBot, data: dict[str, Any], environ: WSGIEnvironment, served: Served
    ) -> Reply:
        limiter = self._state.limiter
        # The playground's side channel; one attribute check when it is off.
        trace = None if self._state.trace_token is None else _trace_for(environ, self._state)
        events = run(bot, parse_query(data), timing=self._timing, limiter=limiter, trace=trace)
        events = guarded(events, bot.name)
        if trace is not None:
            events = traced(events, trace)
        # Both modes stop the bot (and its model call) as soon as the client leaves.
        events = served.watch(until_gone(events, environ, bot.name))
        if _wants_json(environ):
            served.kind = "query (json)"
            return Reply(200, [json.dumps(jsonshape.aggregate(events)).encode()])
        return Reply(200, encoded(events, served), sse.CONTENT_TYPE, sse.HEADERS)


class Served:
    """The one INFO line each `POST /<bot>` request leaves in the log once it is answered,
    `bot acme-help: query 200 answered in 0.4 ms`: the bot, the request type, the HTTP
    status, the outcome and the time taken; never the access key or what the user wrote.
    """

    __slots__ = ("bot", "kind", "outcome", "started", "status")

    def __init__(self, bot: str) -> None:
        self.bot, self.kind, self.status, self.outcome = bot, "request", 0, "answered"
        self.started = time.perf_counter()

    def watch(self, events: Iterator[Event]) -> Iterator[Event]:
        """`events`, noting how the answer ends: whole, with an error, or cut short (the
        client left, or the server closed the stream) when `done` never came."""
        self.outcome = "client left"
        try:
            for event in events:
                if type(event) is Error:
                    retry = "retry allowed" if event.allow_retry else "no retry"
                    kind = f"error {event.error_type}" if event.error_type else "error"
                    self.outcome = f"{kind} ({retry})"
                elif type(event) is Done and self.outcome == "client left":
                    self.outcome = "answered"
                yield event
        finally:
            close_iterator(events)  # closed early: stop the bot and its model call now

    def log(self) -> None:
        if requests_log.isEnabledFor(logging.INFO):
            took = (time.perf_counter() - self.started) * 1000
            _request_lines.add((self.bot, self.kind, self.status, self.outcome, took))


class _RequestLines:
    """Writes the request lines: at once, or under gevent (the production server) all the
    lines of one turn of the event loop together, at its end.

    Written between two answers, a line cost the worker about 80 µs of CPU per rule-based
    turn (of about 400): not the logging call itself (12 µs in a loop), but its code and
    data pushing the engine's out of the CPU caches, and back. Written together, the lines
    cost about 5 µs each (measured in issue 8's report). A line's time is still the
    request's own; its timestamp is at most one turn of the loop later.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[object, ...]] = []

    def add(self, line: tuple[object, ...]) -> None:
        loop = _gevent_loop()
        if loop is None:
            requests_log.info(REQUEST_LINE, *line)
            return
        self._pending.append(line)
        if len(self._pending) == 1:
            loop.run_callback(self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for line in pending:
            requests_log.info(REQUEST_LINE, *line)


REQUEST_LINE = "bot %s: %s %d %s in %.1f ms"
_request_lines = _RequestLines()


def _gevent_loop() -> Any:
    """The gevent event loop serving this request, if the server is gunicorn's gevent
    worker (the socket module is patched); None under any other server."""
    if not under_gevent():
        return None
    import gevent

    return gevent.get_hub().loop


def encoded(events: Iterator[Event], served: Served | None = None) -> Iterator[bytes]:
    """SSE bytes, written in as few pieces as the answer allows.

    Events are gathered until the runtime marks one `flush` (it is about to wait for a
    model) or sends a keep-alive: a rule-based answer leaves in one write, a model's
    chunks each leave the moment they arrive. `served` is logged when the stream ends.
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
        if served is not None:
            served.log()


def _trace_for(environ: WSGIEnvironment, state: EngineState) -> FlowTrace | None:
    """A FlowTrace when the request carries the playground's trace token, else None."""
    given, token = environ.get("HTTP_X_ENGINE_TRACE"), state.trace_token
    if not given or token is None:
        return None
    # Constant-time, as the access key: the token is what keeps the trace to the playground.
    return FlowTrace() if hmac.compare_digest(given.encode(), token.encode()) else None


TRACE_COMMENT = "engine-trace"


def traced(events: Iterator[Event], trace: FlowTrace) -> Iterator[Event]:
    """`events` with one SSE comment just before `done`: what the turn did, as JSON
    (`path`, the locs taken, and `running`, the flow left waiting), which Poe would skip."""
    try:
        for event in events:
            if type(event) is Done:
                seen = {"path": list(getattr(trace, "path", [])), "running": trace.running}
                yield Comment(f"{TRACE_COMMENT} {json.dumps(seen, ensure_ascii=False)}")
            yield event
    finally:
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


PROXIED_WITHOUT_KEY = (
    "this bot has no access key (or one under 16 characters), so it answers only requests "
    "made on this machine; this one came through a proxy or tunnel: set the bot's key"
)
# Headers that proxies and tunnels (nginx, Caddy, ngrok, cloudflared) add: a request that
# carries one came from elsewhere, even though the server is bound to loopback.
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _unguarded(bot: CompiledBot) -> bool:
    return bot.access_key is None or is_weak(bot.access_key)


def _proxied(environ: WSGIEnvironment) -> bool:
    return any(header in environ for header in _PROXY_HEADERS)


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
