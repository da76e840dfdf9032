"""REQUEST_READ_TIMEOUT against the real server, over raw sockets: a request must arrive whole
within it, while an idle keep-alive connection keeps its longer allowance."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from ._poe import parse_sse, query, user
from ._server import Server

TIMEOUT = 2.0  # REQUEST_READ_TIMEOUT for this server
SLACK = 2.0  # how much later than the timeout a connection may be cut


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slow-clients")
    server = Server(folder / "server.log", workers=1, REQUEST_READ_TIMEOUT=str(TIMEOUT))
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT + SLACK + 5)


def request(text: str) -> tuple[bytes, bytes]:
    """The head and body of a query to the hello bot."""
    body = json.dumps(query(user(text))).encode()
    headers = Server.headers(length=len(body))
    head = "POST /hello HTTP/1.1\r\nHost: test\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    return head.encode(), body


def answer(sock: socket.socket) -> tuple[int, str, bytes]:
    """Status, Connection header and body of the next response on `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.getheader("Connection", ""), response.read()


def seconds_until_closed(sock: socket.socket, since: float) -> float:
    """Waits for the server to close the connection, having sent nothing."""
    assert sock.recv(1024) == b""
    return time.monotonic() - since


def test_headers_cut_short_close_the_connection_after_the_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /hello HTTP/1.1\r\nHost: test\r\nContent-Le")
        waited = seconds_until_closed(sock, time.monotonic())
    assert TIMEOUT - 0.5 <= waited <= TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(server: Server) -> None:
    with connect(server) as sock:
        waited = seconds_until_closed(sock, time.monotonic())
    assert TIMEOUT - 0.5 <= waited <= TIMEOUT + SLACK


def test_a_body_shorter_than_its_length_gets_408_after_the_timeout(server: Server) -> None:
    head, body = request("never finished")
    with connect(server) as sock:
        sock.sendall(head + body[: len(body) // 2])
        sent = time.monotonic()
        status, connection, raw = answer(sock)
        waited = time.monotonic() - sent
        assert sock.recv(1024) == b""  # and the connection is closed after the answer
    assert status == 408
    assert json.loads(raw) == {"error": "the request body did not arrive in time"}
    assert connection == "close"
    assert TIMEOUT - 0.5 <= waited <= TIMEOUT + SLACK


def test_a_slow_but_steady_client_is_answered(server: Server) -> None:
    head, body = request("steady")
    pieces = [head[:20], head[20:60], head[60:], body[:30], body[30:90], body[90:]]
    with connect(server) as sock:
        for piece in pieces:  # 1.5 s in all, inside the 2 s allowed
            sock.sendall(piece)
            time.sleep(0.25)
        status, _, raw = answer(sock)
    assert status == 200
    assert ("text", {"text": "Hello! You said: steady"}) in parse_sse(raw)


def test_an_idle_keep_alive_connection_outlasts_the_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(request("first")))
        assert answer(sock)[:2] == (200, "keep-alive")
        time.sleep(TIMEOUT + 1)
        sock.sendall(b"".join(request("second")))
        status, _, raw = answer(sock)
    assert status == 200
    assert ("text", {"text": "Hello! You said: second"}) in parse_sse(raw)


def test_a_next_request_that_stalls_is_cut_from_its_first_byte(server: Server) -> None:
    head, body = request("stalled")
    with connect(server) as sock:
        sock.sendall(b"".join(request("first")))
        assert answer(sock)[0] == 200
        time.sleep(1.0)  # idle: not counted
        sock.sendall(head[:30])
        waited = seconds_until_closed(sock, time.monotonic())
    assert TIMEOUT - 0.5 <= waited <= TIMEOUT + SLACK
