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
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..compiled import CompiledBot
from ..cooperative import make_way, make_way_for_arrivals, under_gevent
from ..iterators import close_iterator
from ..loader import is_weak
from ..logs import FIELDS, hold_lines, json_lines, release_lines
from ..metrics import Metrics, metrics
from ..protocol import jsonshape, sse
from ..protocol.events import Comment, Done, Error, Event, KeepAlive, Replace, Text
from ..protocol.guard import guarded
from ..protocol.requests import REPORT_TYPES, RequestError, parse_body, parse_query, request_type
from ..providers.relay import RelayTiming
from ..runtime import run
from ..runtime.scope import FlowTrace
from .disconnect import until_gone

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
        # Made at the first count, in the worker: prometheus_client must be imported after
        # the server has set PROMETHEUS_MULTIPROC_DIR (engine/metrics.py).
        self._counting = state.settings.metrics

    def swap(self, state: EngineState) -> None:
        """Answer from `state` from now on (a reload): one attribute, read per request as
        before. An answer already running keeps the bot it started with."""
        self._state = state

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or path.count("/") != 1:
            return self._next(environ, start_response)
        served = Served(path[1:], self._counting, self._state.settings.log_messages)
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
            served.bot, served.outcome, served.known = repr(name[:100]), "no such bot", False
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
            served.kind, served.data = request_type(data), data
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
            if not json_lines():  # a JSON request line carries the report's fields itself
                _log_report(bot.name, kind, data)
            return Reply(200, [b"{}"])
        served.outcome = "unsupported"
        return error(501, f"unsupported request type {kind!r}")

    def _query(
        self, bot: CompiledBot, data: dict[str, Any], environ: WSGIEnvironment, served: Served
    ) -> Reply:
        limiter = self._state.limiter
        served.trace = trace = FlowTrace()  # what the turn did, for its log line and metrics
        events = run(bot, parse_query(data), timing=self._timing, limiter=limiter, trace=trace)
        events = guarded(events, bot.name)
        # The playground's side channel; one attribute check when it is off.
        if self._state.trace_token is not None and _trace_asked(environ, self._state):
            events = traced(events, trace)
        # Both modes stop the bot (and its model call) as soon as the client leaves.
        events = served.watch(until_gone(events, environ, bot.name))
        if _wants_json(environ):
            served.kind = "query (json)"
            body = [json.dumps(jsonshape.aggregate(events)).encode()]
            served.first_byte = time.perf_counter()
            return Reply(200, body)
        return Reply(200, encoded(events, served), sse.CONTENT_TYPE, sse.HEADERS)


class Served:
    """What each `POST /<bot>` request leaves once it is answered: one INFO line on
    `engine.requests`, `bot acme-help: query 200 answered in 0.4 ms` (the bot, the request
    type, the HTTP status, the outcome and the time taken; never the access key, nor what
    the user wrote unless LOG_MESSAGES), with LOG_FORMAT=json the same line as a JSON
    object with the fields of `fields`; and its counts in the metrics.
    """

    __slots__ = (
        "allow_retry",
        "bot",
        "characters",
        "data",
        "ended",
        "error_type",
        "first_byte",
        "kind",
        "known",
        "counting",
        "log_messages",
        "outcome",
        "started",
        "status",
        "trace",
    )

    def __init__(self, bot: str, counting: bool = False, log_messages: bool = False) -> None:
        self.bot, self.kind, self.status, self.outcome = bot, "request", 0, "answered"
        self.started = time.perf_counter()
        self.counting, self.log_messages, self.known = counting, log_messages, True
        self.data: dict[str, Any] | None = None
        self.trace: FlowTrace | None = None
        self.first_byte = self.ended = 0.0
        self.characters = 0
        self.error_type: str | None = None
        self.allow_retry: bool | None = None

    def watch(self, events: Iterator[Event]) -> Iterator[Event]:
        """`events`, noting how the answer ends: whole, with an error, or cut short (the
        client left, or the server closed the stream) when `done` never came."""
        self.outcome = "client left"
        try:
            for event in events:
                if type(event) is Text or type(event) is Replace:
                    self.characters += len(event.text)
                elif type(event) is Error:
                    retry = "retry allowed" if event.allow_retry else "no retry"
                    name = f"error {event.error_type}" if event.error_type else "error"
                    self.outcome = f"{name} ({retry})"
                    self.error_type, self.allow_retry = event.error_type, event.allow_retry
                elif type(event) is Done and self.outcome == "client left":
                    self.outcome = "answered"
                yield event
        finally:
            close_iterator(events)  # closed early: stop the bot and its model call now

    def log(self) -> None:
        self.ended = time.perf_counter()
        if self.counting or requests_log.isEnabledFor(logging.INFO):
            _request_lines.add(self)

    def line(self, outcome: str) -> None:
        """The request's line on `engine.requests`, if INFO is on there: the record that
        `requests_log.info` would make, made directly (no walk up the stack to find the
        caller, which is always this method) and handed to the logger's handlers."""
        if not requests_log.isEnabledFor(logging.INFO):
            return
        took = (self.ended - self.started) * 1000
        args: tuple[Any, ...] = (self.bot, self.kind, self.status, self.outcome, took)
        message, extra = REQUEST_LINE, None
        if json_lines():
            extra = {FIELDS: self.fields(outcome)}
        elif self.log_messages and (said := _said(self.data)) is not None:
            message, args = REQUEST_LINE + ": %r", (*args, said[:_SAID])
        record = requests_log.makeRecord(
            requests_log.name, logging.INFO, _SOURCE, _LINE, message, args, None, "line", extra
        )
        requests_log.handle(record)

    def category(self) -> str:
        """The outcome from a short fixed list: `answered`, `refused` (input rules),
        `limited`, `error`, `client_left`, or what a non-200 status says."""
        if self.status != 200:
            return _FAILED.get(self.status, "failed")
        if self.outcome.startswith("error"):
            if self.rule() is not None:
                return "refused"
            return "limited" if self.trace is not None and self.trace.limited else "error"
        return "client_left" if self.outcome == "client left" else "answered"

    def rule(self) -> str | None:
        """The input rule that refused the message, if one did."""
        path = self.trace.path if self.trace is not None else ()
        return path[0] if path and path[0].startswith("input") else None

    def fields(self, outcome: str) -> dict[str, Any]:
        """The JSON line's own fields (beside time, level, logger and message)."""
        data = self.data or {}
        fields: dict[str, Any] = {
            "bot": self.bot if self.known else None,
            "type": self.kind,
            "status": self.status,
            "outcome": outcome,
            "detail": self.outcome,
            "duration_ms": round((self.ended - self.started) * 1000, 3),
            "user_id": _id(data, "user_id"),
            "conversation_id": _id(data, "conversation_id"),
            "message_id": _id(data, "message_id"),
        }
        trace = self.trace
        if trace is not None:
            _add_turn_fields(fields, trace, self.rule())
            fields["first_byte_ms"] = round((self.first_byte - self.started) * 1000, 3)
            fields["characters"] = self.characters
            fields["error_type"], fields["allow_retry"] = self.error_type, self.allow_retry
            if self.log_messages:
                fields["user_message"] = _said(self.data)
        if self.kind in REPORT_TYPES:
            for key in _REPORTED:
                if key in data:
                    fields[key] = str(data[key])[:_SAID]
        return fields

    def count(self, sink: Metrics, outcome: str) -> None:
        bot = self.bot if self.known else ""
        sink.request(bot, self.kind, outcome)
        trace = self.trace
        if trace is not None and self.status == 200:
            first = (self.first_byte or self.ended) - self.started
            sink.query(bot, first, self.ended - self.started, self.characters)
            if trace.models:
                sink.models(trace.models)
            if outcome == "refused":
                sink.refused(bot, self.rule() or "input")
            if trace.limited:
                sink.limited(bot, trace.limited)
            if trace.call_failures:
                sink.call_failures(bot, trace.call_failures)
        elif self.kind in ("report_reaction", "report_feedback") and self.data is not None:
            kind = self.data.get("reaction", self.data.get("feedback_type"))
            sink.reaction(bot, kind if isinstance(kind, str) else "other")


_FAILED = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "no_such_bot",
    408: "timeout",
    413: "too_large",
    501: "unsupported",
}
_REPORTED = ("reaction", "feedback_type", "message")  # what a report_* request says
_SAID = 2000  # characters of a user's message (LOG_MESSAGES) or a report kept in a line


def _id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value[:200] if isinstance(value, str) else None


def _said(data: dict[str, Any] | None) -> str | None:
    """The user's message a query answers: the content of its last message."""
    messages = (data or {}).get("query")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        return content[:_SAID] if isinstance(content, str) else None
    return None


def _add_turn_fields(fields: dict[str, Any], trace: FlowTrace, rule: str | None) -> None:
    """What the turn did: the locs taken, the model that answered (the last tried),
    the retries and fallbacks on the way, the limit or rule that refused it."""
    models = trace.models
    last = models[-1] if models else None
    fields["path"] = trace.path
    fields["rule"] = rule
    fields["provider"] = last.provider if last else None
    fields["model"] = last.model if last else None
    fields["model_calls"] = len(models)
    fields["retries"] = sum(attempt.retry for attempt in models) if models else 0
    fields["fallbacks"] = sum(attempt.fallback for attempt in models) if models else 0
    fields["limit"] = trace.limited
    fields["call_failures"] = trace.call_failures


class _RequestLines:
    """Writes the request lines and counts: at once, or under gevent (the production
    server) those of one turn of the event loop together, at its end.

    Written between two answers, a line cost the worker about 80 µs of CPU per rule-based
    turn (of about 400): not the logging call itself (12 µs in a loop), but its code and
    data pushing the engine's out of the CPU caches, and back. Written together, the lines
    cost about 5 µs each (measured in issue 8's report). A line's time is still the
    request's own; its timestamp is at most one turn of the loop later. A batch's lines
    leave the root's handler in one write (`hold_lines`). Counts are gathered as each
    request ends (dict additions, so no request is held for them) and go to the metrics'
    files at the batch's end, one write per counter (`Metrics.commit`).
    """

    def __init__(self) -> None:
        self._pending: list[Served] = []  # the requests whose lines are still to write
        self._counted = False  # counts gathered that `Metrics.commit` has not written
        self._batching = False

    def add(self, served: Served) -> None:
        """`served`'s counts gathered now (plain dict additions: nothing of the request
        is kept for them) and its line, if INFO is on, written with its batch's."""
        if not self._batching:
            loop = _gevent_loop()
            if loop is None:
                self._count(served)
                self.write([served] if requests_log.isEnabledFor(logging.INFO) else [])
                return
            self._batching = True
            loop.run_callback(self._flush)
        self._count(served)
        if requests_log.isEnabledFor(logging.INFO):
            self._pending.append(served)

    def _count(self, served: Served) -> None:
        if not served.counting:
            return
        try:
            served.count(metrics(), served.category())
            self._counted = True
        except Exception:  # noqa: BLE001 - a failed count must not fail the answer
            log.exception("bot %s: the request's metrics failed", served.bot)

    @contextmanager
    def batched(self) -> Iterator[None]:
        """The lines of the requests answered inside written together at its end, as the
        server writes those of a turn of its loop (bench/observe.py measures both)."""
        self._batching = True
        try:
            yield
        finally:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._batching = self._pending, [], False
        self.write(pending)

    def write(self, batch: list[Served]) -> None:
        """The lines of `batch`, in one write when there are several, then the counts
        gathered since the last write."""
        held = hold_lines() if len(batch) > 1 else []
        try:
            for served in batch:
                try:
                    served.line(served.category())
                except Exception:  # noqa: BLE001 - a failed line must not lose the others
                    log.exception("bot %s: the request's log line failed", served.bot)
        finally:
            release_lines(held)
            if self._counted:
                self._counted = False
                try:
                    metrics().commit()
                except Exception:  # noqa: BLE001 - nor a failed count the next batch
                    log.exception("the metrics of this turn of the event loop failed")


REQUEST_LINE = "bot %s: %s %d %s in %.1f ms"
_request_lines = _RequestLines()
batched = _request_lines.batched
# Where a request line's record says it was made (`Served.line`), as findCaller would say.
_SOURCE, _LINE = __file__, Served.line.__code__.co_firstlineno


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

    Once the first bytes of an answer that waits are written, the answer makes way
    (`make_way`) before it calls its model, and its later chunks make way for connections
    still waiting for theirs: new requests get their first bytes first.
    """
    pending: list[bytes] = []
    first = True
    try:
        for event in events:
            pending.append(sse.encode(event))
            if getattr(event, "flush", False) or isinstance(event, KeepAlive):
                if served is not None and not served.first_byte:
                    served.first_byte = time.perf_counter()
                if not first:
                    make_way_for_arrivals()
                yield b"".join(pending)
                pending.clear()
                if first:
                    first = False
                    make_way()
        if pending:
            if served is not None and not served.first_byte:
                served.first_byte = time.perf_counter()
            yield b"".join(pending)
    finally:
        # The server closes us when the client goes away: stop the bot (and any model
        # call it is waiting on) now, not whenever the generator is garbage-collected.
        close_iterator(events)
        if served is not None:
            served.log()


def _trace_asked(environ: WSGIEnvironment, state: EngineState) -> bool:
    """Whether the request carries the playground's trace token."""
    given, token = environ.get("HTTP_X_ENGINE_TRACE"), state.trace_token
    if not given or token is None:
        return False
    # Constant-time, as the access key: the token is what keeps the trace to the playground.
    return hmac.compare_digest(given.encode(), token.encode())


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
