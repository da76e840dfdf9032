"""`call` steps end to end, from YAML to events, against a real HTTP server on loopback."""

from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.compiled import CompiledBot
from engine.outbound import OutboundResponse, fetch
from engine.protocol.events import Error, Event, Replace, Text
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.protocol.transcript import Transcript
from engine.runtime import run
from engine.runtime.flows import CALL_FAILED, UNSTORABLE
from engine.runtime.scope import FlowTrace

from ._poe import query, user
from .conftest import compile_bot

ENV = {"ENGINE_STATE_SECRET": "s" * 32, "API_TOKEN": "t0ken"}


class Api(BaseHTTPRequestHandler):
    """A small order API; remembers every request line and header it was sent."""

    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        Api.seen.append((self.path, dict(self.headers)))
        if self.path.startswith("/orders/"):
            self._json(200, {"status": "delivered", "total": "$42.00", "items": [{"sku": "a"}]})
        elif self.path.startswith("/echo"):
            self._json(200, {"path": self.path})
        elif self.path == "/slow":
            time.sleep(1.0)
            self._json(200, {})
        elif self.path == "/fail":
            self._json(500, {"error": "down"})
        elif self.path == "/big":
            self._json(200, {"blob": "x" * 300_000})
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(404, {})

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that stops reading (an answer over the cap) is expected here


@pytest.fixture(scope="module")
def api() -> Iterator[int]:
    server = QuietServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def make(port: int, call: str, allow: str = '["127.0.0.1"]', reply: str = "Done.") -> CompiledBot:
    return compile_bot(
        f"""
        allow_hosts: {allow}
        flows:
          look:
            - set: {{q: "{{{{ message }}}}"}}
            - call: {call.replace("PORT", str(port))}
            - reply: "{reply}"
        routes:
          - flow: look
        """,
        ENV,
    )


def turn(bot: CompiledBot, text: str, **options: Any) -> tuple[list[Event], FlowTrace]:
    trace = FlowTrace()
    events = run(bot, parse_query(query(user(text))), trace=trace, **options)
    return list(guarded(events, bot.name)), trace


def test_a_call_extracts_into_vars_behind_a_status_line(api: int) -> None:
    bot = make(
        api,
        '{url: "http://127.0.0.1:PORT/orders/{{ vars.q }}", status: "Looking up your order…", '
        'headers: {Authorization: "Bearer ${API_TOKEN}"}, '
        'extract: {status: status, total: total, first: "items[0].sku"}}',
        reply="Order is {{ vars.status }}, total {{ vars.total }}.",
    )
    events, trace = turn(bot, "AB123456")
    texts = [e for e in events if isinstance(e, Text | Replace)]
    assert texts == [
        Text("Looking up your order…"),
        Replace(""),
        Text("Order is delivered, total $42.00."),
    ]
    assert trace.vars == {
        "q": "AB123456",
        "status": "delivered",
        "total": "$42.00",
        "first": "a",
    }
    path, headers = Api.seen[-1]
    assert path == "/orders/AB123456"
    assert headers["Authorization"] == "Bearer t0ken"


def test_a_message_cannot_move_the_call_to_another_host_or_path(api: int) -> None:
    bot = make(
        api,
        '{url: "http://127.0.0.1:PORT/echo/{{ vars.q }}", query: {q: "{{ vars.q }}"}, '
        "extract: {status: path}}",
    )
    events, trace = turn(bot, "x@evil.example/../admin?y=1#z")
    path = trace.vars["status"] if trace.vars else None
    assert path == (
        "/echo/x%40evil.example%2F..%2Fadmin%3Fy%3D1%23z"
        "?q=x%40evil.example%2F..%2Fadmin%3Fy%3D1%23z"
    )
    assert Api.seen[-1][0] == path


def failing(api: int, call: str, caplog: pytest.LogCaptureFixture, **options: Any) -> str:
    caplog.set_level(logging.WARNING, "engine.runtime")
    bot = make(api, call + "}")
    events, trace = turn(bot, "AB123456", **options)
    answer = Transcript.of(events)
    assert answer.error is None and answer.metadata is None and trace.running is None
    assert answer.text == "Down, sorry."
    return caplog.text


ON_ERROR = ', on_error: {reply: "Down, sorry.", end: true}'


def test_a_timeout_takes_the_error_branch(api: int, caplog: pytest.LogCaptureFixture) -> None:
    call = '{url: "http://127.0.0.1:PORT/slow", timeout: 0.3, retries: 0' + ON_ERROR
    assert "GET 127.0.0.1: no complete answer within 0.3 s (timeout)" in failing(api, call, caplog)


def test_a_500_takes_the_error_branch(api: int, caplog: pytest.LogCaptureFixture) -> None:
    call = '{url: "http://127.0.0.1:PORT/fail", retries: 0' + ON_ERROR
    assert "answered HTTP 500 Internal Server Error" in failing(api, call, caplog)


def test_an_answer_over_the_cap_is_refused(api: int, caplog: pytest.LogCaptureFixture) -> None:
    call = '{url: "http://127.0.0.1:PORT/big", max_bytes: 100000' + ON_ERROR
    assert "the answer is longer than 100,000 bytes (max_bytes)" in failing(api, call, caplog)


def test_a_redirect_to_a_refused_address_is_not_followed(
    api: int, caplog: pytest.LogCaptureFixture
) -> None:
    call = '{url: "http://127.0.0.1:PORT/redirect"' + ON_ERROR
    log = failing(api, call, caplog)
    assert "169.254.169.254 is not in allow_hosts" in log and "redirected from" in log


def test_a_name_resolving_to_a_private_address_is_refused(
    api: int, caplog: pytest.LogCaptureFixture
) -> None:
    def dns(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    caplog.set_level(logging.WARNING, "engine.runtime")
    bot = make(
        api,
        '{url: "http://db.internal.test:PORT/orders/1"' + ON_ERROR + "}",
        '["db.internal.test"]',
    )
    events, _ = turn(bot, "x", fetcher=functools.partial(fetch, resolver=dns))
    assert Transcript.of(events).text == "Down, sorry."
    assert "127.0.0.1" in caplog.text and "loopback" in caplog.text


def test_without_on_error_the_flow_ends_with_an_apology(api: int) -> None:
    bot = make(api, '{url: "http://127.0.0.1:PORT/fail", retries: 0}')
    events, _ = turn(bot, "x")
    assert Transcript.of(events).text == CALL_FAILED


def test_a_route_can_call_and_answer_from_what_it_extracted(api: int) -> None:
    bot = compile_bot(
        f"""
        allow_hosts: ["127.0.0.1"]
        routes:
          - if: "regex(message, '^[A-Z]{{2}}\\\\d{{6}}$')"
            call:
              url: "http://127.0.0.1:{api}/orders/{{{{ message }}}}"
              status: "Looking up {{{{ message }}}}…"
              extract: {{status: status}}
              on_error: {{reply: "Lookup failed."}}
            reply: "Order {{{{ message }}}} is {{{{ vars.status }}}}."
          - reply: "Send an order number."
        """,
        ENV,
    )
    events, trace = turn(bot, "AB123456")
    answer = Transcript.of(events)
    assert (answer.text, answer.metadata) == ("Order AB123456 is delivered.", None)
    assert Text("Looking up AB123456…") in events
    assert Transcript.of(turn(bot, "hi")[0]).text == "Send an order number."


def test_a_value_json_cannot_carry_ends_the_flow_with_a_message(
    api: int, caplog: pytest.LogCaptureFixture
) -> None:
    def nan(request: Any, policy: Any) -> OutboundResponse:
        return OutboundResponse(200, {}, b'{"total": NaN}', "GET", request.url, 0.0)

    bot = compile_bot(
        """
        allow_hosts: [api.acme.example]
        flows:
          a:
            - call: {url: "https://api.acme.example/x", extract: {total: total}}
            - ask: "Pay {{ vars.total }}?"
              save: ok
        routes:
          - flow: a
        """,
        ENV,
    )
    events, _ = turn(bot, "go", fetcher=nan)
    answer = Transcript.of(events)
    assert (answer.text, answer.metadata) == ("", None)
    assert answer.error == Error(UNSTORABLE)
    assert "a var cannot be kept as JSON" in caplog.text
