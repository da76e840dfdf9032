"""SIGTERM: open answers end properly, and nothing holds up the exit.

The guard's part is checked directly; then each test starts its own `python app.py` with
one worker, since each one stops it, with a fake OpenAI server in this process as the model.
"""

from __future__ import annotations

import http.client
import json
import socket
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.events import Done, Error, Event, Meta, Text
from engine.protocol.guard import RESTARTING, ServerStopping, guarded

from ._poe import query, user
from ._server import Server
from .fake_llm import FakeLLM, Reply

STREAMER_KEY = "T" * 32
BOT = """\
    access_key: ${STREAMER_KEY}
    model: {provider: openai, name: gpt-e2e, retries: 0, timeout: {total: 120}}
    routes:
      - llm: {system: You stream.}
    """


def test_the_guard_ends_a_stopped_answer_with_a_retryable_error() -> None:
    closed: list[bool] = []

    def answer() -> Iterator[Event]:
        try:
            yield Meta()
            yield Text("half ")
            raise ServerStopping  # as the worker raises it into a greenlet waiting here
        finally:
            closed.append(True)

    assert list(guarded(answer(), "demo")) == [
        Meta(),
        Text("half "),
        Error(RESTARTING, allow_retry=True),
        Done(),
    ]
    assert closed == [True]


def test_the_guard_ends_an_answer_stopped_before_its_first_event() -> None:
    def answer() -> Iterator[Event]:
        raise ServerStopping
        yield Meta()  # a generator, stopped before it yields

    assert list(guarded(answer(), "demo")) == [
        Meta(),
        Error(RESTARTING, allow_retry=True),
        Done(),
    ]


@pytest.fixture
def openai() -> Iterator[FakeLLM]:
    with FakeLLM("openai") as fake:
        yield fake


@pytest.fixture
def start(tmp_path: Path, openai: FakeLLM) -> Iterator[Callable[[int], Server]]:
    """Start the server with a given GRACEFUL_TIMEOUT; it is stopped after the test."""
    servers: list[Server] = []

    def start(graceful_timeout: int) -> Server:
        bots = tmp_path / "bots"
        bots.mkdir()
        (bots / "streamer.yaml").write_text(textwrap.dedent(BOT), encoding="utf-8")
        server = Server(
            tmp_path / "server.log",
            workers=1,
            BOTS_DIR=str(bots),
            OPENAI_BASE_URL=openai.url,
            OPENAI_API_KEY="sk-e2e",
            STREAMER_KEY=STREAMER_KEY,
            GRACEFUL_TIMEOUT=str(graceful_timeout),
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def open_stream(server: Server) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = server.connect()
    body = json.dumps(query(user("tell me a long story")))
    connection.request("POST", "/streamer", body, server.headers(STREAMER_KEY))
    response = connection.getresponse()
    assert response.status == 200
    return connection, response


def read_events(response: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any], float]]:
    """(name, data, arrival time) of each event until the stream ends, pings left out."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            try:
                data = response.read1(65536)
            except (http.client.IncompleteRead, ConnectionError):
                return  # cut without the closing chunk: the caller sees what came
            if not data:
                return
            buffer += data
        block, buffer = buffer.split(b"\r\n\r\n", 1)
        if block.startswith(b":"):
            continue
        name_line, data_line = block.decode().split("\r\n")
        yield (
            name_line.removeprefix("event: "),
            json.loads(data_line.removeprefix("data: ")),
            time.monotonic(),
        )


def exit_code(server: Server, within: float) -> int:
    """The server's exit code, failing if it is still running `within` seconds from now."""
    return server.process.wait(within)


def test_an_answer_still_open_at_the_deadline_ends_with_a_retryable_error(
    start: Callable[[int], Server], openai: FakeLLM
) -> None:
    openai.script(Reply(chunks=[f"word{i} " for i in range(60)], delay=0.5))  # 30 s of text
    server = start(4)
    connection, response = open_stream(server)
    try:
        events = read_events(response)
        assert next(events)[0] == "meta"
        assert next(events)[0] == "text"
        server.terminate()
        stopped = time.monotonic()
        rest = list(events)
    finally:
        connection.close()
    names = [name for name, _, _ in rest]
    assert names[-2:] == ["error", "done"], names
    assert set(names[:-2]) == {"text"}, names  # the answer went on during the grace period
    _, error, ended = rest[-2]
    assert error == {
        "text": "The bot's server is restarting. Please try again.",
        "allow_retry": True,
    }
    assert 2.0 <= ended - stopped <= 4.0, "the error came long before, or after, the deadline"
    openai.wait_for_disconnect(timeout=2)  # the model call was closed, not left running
    assert not openai.requests[-1].completed
    assert exit_code(server, within=2) == 0
    log = server.log()
    assert "bot streamer: the server stopped before the answer ended" in log
    assert "SIGKILL" not in log and "Traceback" not in log, log


def test_a_client_that_stopped_reading_does_not_hold_up_the_exit(
    start: Callable[[int], Server], openai: FakeLLM
) -> None:
    """The worker is blocked writing to a full socket; it still ends before its deadline."""
    big = "x" * 60_000
    openai.script(Reply(chunks=[big] * 300 + ["never sent"], delay=[0.0] * 300 + [30.0]))
    server = start(6)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(("127.0.0.1", server.port))
        body = json.dumps(query(user("flood me"))).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in server.headers(STREAMER_KEY, len(body)).items())
        client.sendall(f"POST /streamer HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
        # 18 MB sent by the model: far more than the sockets hold, so the worker waits to write.
        openai.wait_for_requests(1)
        deadline = time.monotonic() + 10
        while len(openai.requests[0].sent) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        server.terminate()
        stopped = time.monotonic()
        code = exit_code(server, within=7)
        exited = time.monotonic()
    finally:
        client.close()
    assert code == 0
    assert exited - stopped < 6.0, "the worker waited for the arbiter to kill it"
    log = server.log()
    assert "SIGKILL" not in log and "Traceback" not in log, log
    openai.wait_for_disconnect(timeout=2)


def test_an_idle_keep_alive_connection_is_closed_at_once(start: Callable[[int], Server]) -> None:
    server = start(10)
    connection = server.connect()
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        assert connection.sock is not None
        sock = connection.sock
        server.terminate()
        stopped = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server, with nothing written
        closed = time.monotonic()
        code = exit_code(server, within=5)
    finally:
        connection.close()
    assert code == 0
    assert closed - stopped < 3.0
    log = server.log()
    assert "SIGKILL" not in log and "Traceback" not in log, log
