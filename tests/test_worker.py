"""FairGeventWorker: yields between keep-alive requests, accepts all that waits, and closes
connections as it stops.

The speed-ups themselves are measured in bench/ (keep-alive p99, 2,000 model streams);
these tests pin down the mechanisms. The shutdown is also checked against the real server
(tests/test_shutdown.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gunicorn.workers import ggevent

import engine.worker
from engine.protocol.guard import ServerStopping
from engine.worker import FairGeventWorker, _Connection, _ending_margin, _OwnSocketServer


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_its_servers_keep_gevents_accept_batch(listener: socket.socket) -> None:
    server = _OwnSocketServer(listener, handle=lambda *_: None)
    server.max_accept = 1  # what gunicorn sets whenever workers > 1
    assert server.max_accept == 100


class _Cfg:
    def __init__(self, reuse_port: bool) -> None:
        self.reuse_port = reuse_port
        self.is_ssl = False
        self.workers = 2


@pytest.mark.parametrize(("reuse_port", "own_sockets"), [(True, True), (False, False)])
def test_run_uses_them_only_when_each_worker_has_its_own_socket(
    monkeypatch: pytest.MonkeyPatch, listener: socket.socket, reuse_port: bool, own_sockets: bool
) -> None:
    built: list[Any] = []

    class Shared(ggevent.StreamServer):  # type: ignore[misc]
        def start(self) -> None:
            built.append(self)

    class Own(_OwnSocketServer):
        def start(self) -> None:
            built.append(self)

    monkeypatch.setattr(ggevent, "StreamServer", Shared)
    monkeypatch.setattr(engine.worker, "_OwnSocketServer", Own)
    monkeypatch.setattr(FairGeventWorker, "_stop", lambda self, servers: None)
    worker = _worker(_Cfg(reuse_port), alive=False)
    worker.sockets, worker.worker_connections = [listener], 10
    worker.run()
    (server,) = built
    assert isinstance(server, Own) is own_sockets
    assert server.max_accept == (100 if own_sockets else 1)  # gunicorn's 1: two workers


class _Request:
    must_close = False


class _Sock:
    """What handle_request needs of a connection: its request bookkeeping."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_request(self, request: Any) -> None:
        self.calls.append("begin")

    def end_request(self) -> None:
        self.calls.append("end")


def _worker(cfg: Any = None, alive: bool = True) -> Any:
    worker = object.__new__(FairGeventWorker)
    worker.cfg, worker.alive = cfg, alive
    return worker


def test_it_yields_to_other_connections_after_each_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = _Sock()
    monkeypatch.setattr(
        ggevent.GeventWorker, "handle_request", lambda *_: sock.calls.append("answered") or True
    )
    monkeypatch.setattr(gevent, "sleep", lambda seconds=0: sock.calls.append(f"yield {seconds}"))
    assert _worker().handle_request("l", _Request(), sock, "addr") is True
    assert sock.calls == ["begin", "answered", "yield 0", "end"]


def test_killed_while_yielding_it_closes_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ggevent.GeventWorker, "handle_request", lambda *_: True)

    def killed(seconds: float = 0) -> Any:
        raise gevent.GreenletExit

    monkeypatch.setattr(gevent, "sleep", killed)
    sock = _Sock()
    with pytest.raises(StopIteration):  # gunicorn's signal to close the connection
        _worker().handle_request("l", _Request(), sock, "addr")
    assert sock.calls == ["begin", "end"]


def test_stopping_it_closes_each_connection_after_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ggevent.GeventWorker, "handle_request", lambda *_: True)
    with pytest.raises(StopIteration):
        _worker(alive=False).handle_request("l", _Request(), _Sock(), "addr")


def test_an_answer_ended_while_writing_closes_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ServerStopping raised outside the stream (a blocked write): nothing more can be sent."""

    def stopped(*_: Any) -> Any:
        raise ServerStopping

    monkeypatch.setattr(ggevent.GeventWorker, "handle_request", stopped)
    sock = _Sock()
    with pytest.raises(StopIteration):
        _worker().handle_request("l", _Request(), sock, "addr")
    assert sock.calls == ["begin", "end"]


def test_the_ending_margin_leaves_most_of_the_grace_period_to_answers() -> None:
    assert _ending_margin(30) == 2.0
    assert _ending_margin(4) == 1.0


# ---------------------------------------------------------------------------- hanging up


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """A connected pair of gevent sockets: the server's side, and the client's."""
    server, client = gsocket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_hanging_up_wakes_a_reader_with_the_end_of_the_connection(
    pair: tuple[Any, Any],
) -> None:
    server, _ = pair
    connection = _Connection(server)
    connection.end_request()
    gevent.spawn_later(0.1, connection.hang_up)
    assert connection.recv(100) == b""


def test_hanging_up_a_closed_connection_is_harmless(pair: tuple[Any, Any]) -> None:
    server, _ = pair
    connection = _Connection(server)
    server.close()
    connection.hang_up()
