"""FairGeventWorker: yields between keep-alive requests, accepts all that waits, times how
long a request takes to arrive, and closes connections as it stops.

The speed-ups themselves are measured in bench/ (keep-alive p99, 2,000 model streams);
these tests pin down the mechanisms. The read timeout and the shutdown are also checked
against the real server (tests/test_slow_clients.py, tests/test_shutdown.py).
"""

from __future__ import annotations

import gc
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gevent.pool import Pool
from gunicorn.workers import ggevent

import engine.worker
from engine import cooperative
from engine.protocol.guard import ServerStopping
from engine.worker import (
    FairGeventWorker,
    _Connection,
    _ending_margin,
    _Listener,
    _OwnSocketServer,
    _SettledConfig,
)


@pytest.fixture(autouse=True)
def _arrivals_reset() -> Iterator[None]:
    """The count of requests arriving is the process's (engine/cooperative.py): a test's
    connection that reads a request and never answers leaves it raised, and answers in
    later tests would wait for it (tests/test_first_bytes.py checks it is 0)."""
    yield
    while cooperative._arriving > 0:
        cooperative.arrived(-1)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)  # as a worker's: an empty queue ends a turn instead of waiting
    yield sock
    sock.close()


def _one_burst(
    listener: socket.socket, waiting: int, answer: Callable[[], None] = lambda: None
) -> list[str]:
    """Serve `waiting` connections queued before the server starts, each answered by
    `answer` in its handler; "loop turned" marks where the event loop turned between them
    (a callback queued by the first answer)."""
    clients = [socket.create_connection(listener.getsockname()) for _ in range(waiting)]
    order: list[str] = []

    def handle(sock: Any, address: Any) -> None:
        if not order:
            gevent.get_hub().loop.run_callback(order.append, "loop turned")
        order.append("answered")
        answer()

    server = _OwnSocketServer(listener, handle=handle, spawn=Pool(waiting))
    server.max_accept = 1  # what gunicorn sets whenever workers > 1
    server.start()
    try:
        with gevent.Timeout(10):
            while order.count("answered") < waiting or "loop turned" not in order:
                gevent.sleep(0.01)
    finally:
        server.stop()
        for client in clients:
            client.close()
    return order


def test_its_servers_take_every_connection_waiting_in_one_turn(listener: socket.socket) -> None:
    assert _one_burst(listener, 5) == ["answered"] * 5 + ["loop turned"]


def test_a_turn_takes_connections_for_half_a_second_at_most(
    monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    """So a flood of new connections holds the answers already streaming (and the worker's
    heartbeat) for that long at most: the next turn takes the rest."""
    monkeypatch.setattr(engine.worker, "ACCEPT_BUDGET", 0.1)
    order = _one_burst(listener, 5, answer=lambda: _busy(0.06))
    assert order[0] == "answered"  # a turn takes one connection at least
    assert order.index("loop turned") < 5  # before the fifth: 0.3 s in all


def _busy(seconds: float) -> None:
    """An answer's work: the CPU held, as gevent cannot take it back (a sleep would yield)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_turn_runs_with_the_garbage_collector_paused(listener: socket.socket) -> None:
    """Its collections wait for the turn's end, instead of delaying the first bytes that
    the connections after it wait for."""
    collecting: list[bool] = []
    _one_burst(listener, 3, answer=lambda: collecting.append(gc.isenabled()))
    assert collecting == [False, False, False]
    assert gc.isenabled()
    gc.disable()  # a process that had paused it itself: left paused
    try:
        with socket.create_server(("127.0.0.1", 0)) as another:
            another.setblocking(False)
            _one_burst(another, 1)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_new_connection_is_answered_at_once_from_the_accept_watcher(
    listener: socket.socket,
) -> None:
    """Not queued behind the callbacks already waiting (older answers' chunks): first
    bytes first (5,000 conversations at once, bench/first_byte.py)."""
    order: list[str] = []
    server = _OwnSocketServer(
        listener, handle=lambda sock, address: order.append("answered"), spawn=Pool(10)
    )
    ours, theirs = socket.socketpair()

    def accepted() -> None:  # what gevent's accept watcher does, in the hub
        server.do_handle(ours, ("127.0.0.1", 1))
        order.append("accept watcher done")

    gevent.get_hub().loop.run_callback(accepted)
    gevent.sleep(0.05)
    theirs.close()
    assert order == ["answered", "accept watcher done"]
    assert ours.fileno() == -1  # closed after its answer, as gevent's own wrapper does


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
    assert server.max_accept == (sys.maxsize if own_sockets else 1)  # gunicorn's 1: 2 workers


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

    def answer(*_: object) -> bool:
        sock.calls.append("answered")
        return True

    monkeypatch.setattr(ggevent.GeventWorker, "handle_request", answer)
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


# ---------------------------------------------------------------------------- reading


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """A connected pair of gevent sockets: the server's side, and the client's."""
    server, client = gsocket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_request_that_arrives_in_time_is_read(pair: tuple[Any, Any]) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert connection.recv(100) == b"GET / HTTP/1.1\r\n"
    assert server.gettimeout() is None  # gunicorn's blocking socket, as it was


def test_late_headers_read_as_the_end_of_the_connection(pair: tuple[Any, Any]) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=0.2, keepalive=60)
    client.sendall(b"GET / HT")
    assert connection.recv(100) == b"GET / HT"
    assert connection.recv(100) == b""  # gunicorn closes quietly, as for a client gone
    assert server.gettimeout() is None


def test_a_late_body_raises_a_timeout_and_marks_the_request_final(
    pair: tuple[Any, Any],
) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=0.2, keepalive=60)
    request = _Request()
    connection.begin_request(request)
    client.sendall(b'{"vers')
    assert connection.recv(100) == b'{"vers'
    with pytest.raises(TimeoutError):
        connection.recv(100)
    assert request.must_close  # the answer says Connection: close, and the socket closes


def test_the_wait_for_a_next_request_is_not_counted(pair: tuple[Any, Any]) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=0.2, keepalive=60)
    connection.begin_request(_Request())
    connection.end_request()
    assert connection.idle
    gevent.spawn_later(0.4, client.sendall, b"GET / HTTP/1.1\r\n")
    assert connection.recv(100) == b"GET / HTTP/1.1\r\n"  # after 0.4 s of idleness
    assert not connection.idle  # and the next request's own deadline runs from here
    assert connection.recv(100) == b""


def test_hanging_up_wakes_a_reader_with_the_end_of_the_connection(
    pair: tuple[Any, Any],
) -> None:
    server, _ = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    connection.end_request()
    gevent.spawn_later(0.1, connection.hang_up)
    assert connection.recv(100) == b""


def test_hanging_up_a_closed_connection_is_harmless(pair: tuple[Any, Any]) -> None:
    server, _ = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    server.close()
    connection.hang_up()


# ------------------------------------------------------------------ writing, counting


def _readable(sock: Any) -> bytes:
    """What the client's side holds now, without waiting."""
    try:
        return bytes(sock._sock.recv(1 << 20))
    except BlockingIOError:
        return b""


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"


def test_a_response_s_headers_leave_with_its_first_bytes(pair: tuple[Any, Any]) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    connection.begin_request(_Request())
    connection.sendall(HEAD)  # gunicorn's send_headers
    assert _readable(client) == b""  # held
    connection.sendall(b"event: meta\r\n\r\n")
    assert _readable(client) == HEAD + b"event: meta\r\n\r\n"  # one send
    connection.sendall(b"event: text\r\n\r\n")
    assert _readable(client) == b"event: text\r\n\r\n"  # later pieces go at once
    connection.end_request()
    assert _readable(client) == b""


def test_headers_without_a_body_are_sent_when_the_request_ends(pair: tuple[Any, Any]) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    connection.begin_request(_Request())
    connection.sendall(HEAD)
    connection.end_request()
    assert _readable(client) == HEAD
    connection.begin_request(_Request())  # the next request on the connection: held again
    connection.sendall(HEAD)
    assert _readable(client) == b""


def test_a_write_larger_than_the_socket_takes_waits_for_the_reader(
    pair: tuple[Any, Any],
) -> None:
    server, client = pair
    connection = _Connection(server, read_timeout=5, keepalive=60)
    data = bytes(range(256)) * 40_000  # 10 MB: far more than the kernel's buffers
    received = bytearray()

    def read_slowly() -> None:
        while len(received) < len(data):
            gevent.sleep(0.001)
            received.extend(client.recv(1 << 16))

    reader = gevent.spawn(read_slowly)
    connection.sendall(data)
    reader.join(timeout=10)
    assert bytes(received) == data


def test_an_idle_connection_ends_after_its_keepalive(pair: tuple[Any, Any]) -> None:
    server, _ = pair
    connection = _Connection(server, read_timeout=5, keepalive=0.2)
    connection.begin_request(_Request())
    connection.end_request()
    with gevent.Timeout(2):
        assert connection.recv(100) == b""  # gunicorn closes quietly, as at EOF
    assert server.gettimeout() is None


def test_a_request_counts_as_arriving_only_while_it_can_run(pair: tuple[Any, Any]) -> None:
    """From its bytes coming in to its answer's first bytes, but not while it waits for the
    rest of itself: half a request holds no answer up (engine/web/cooperative.py)."""
    server, client = pair
    before = cooperative._arriving
    connection = _Connection(server, read_timeout=5, keepalive=60)
    assert cooperative._arriving == before  # a connection that sent nothing
    client.sendall(b"POST /bot HTTP/1.1\r\n")
    assert connection.recv(100) == b"POST /bot HTTP/1.1\r\n"
    assert cooperative._arriving == before + 1
    seen: list[int] = []
    reading = gevent.spawn(connection.recv, 100)
    gevent.sleep(0.05)
    seen.append(cooperative._arriving)  # waiting for the rest
    client.sendall(b"Host: x\r\n\r\n")
    assert reading.get(timeout=2) == b"Host: x\r\n\r\n"
    assert seen == [before]
    assert cooperative._arriving == before + 1
    connection.begin_request(_Request())
    connection.sendall(HEAD)
    connection.sendall(b"event: meta\r\n\r\n")  # the first bytes
    assert cooperative._arriving == before
    connection.end_request()
    assert cooperative._arriving == before


def test_a_request_that_gets_no_answer_stops_counting_when_it_ends(
    pair: tuple[Any, Any],
) -> None:
    server, client = pair
    before = cooperative._arriving
    connection = _Connection(server, read_timeout=5, keepalive=60)
    client.sendall(b"GARBAGE\r\n\r\n")
    connection.recv(100)
    assert cooperative._arriving == before + 1
    connection.first_bytes_sent()  # what the worker does as the connection ends
    connection.first_bytes_sent()
    assert cooperative._arriving == before


def test_its_configuration_is_gunicorn_s_read_once() -> None:
    from gunicorn.config import Config

    config = Config()
    config.set("keepalive", 75)
    config.set("worker_class", "engine.worker.FairGeventWorker")
    settled = _SettledConfig(config)
    for name in config.settings:
        if name != "worker_class":
            assert getattr(settled, name) == getattr(config, name), name
    assert settled.keepalive == 75
    assert settled.worker_class is FairGeventWorker  # a property: the real object's
    assert settled.is_ssl == config.is_ssl


def test_a_listener_s_address_is_read_once(listener: socket.socket) -> None:
    wrapped = _Listener(listener)
    assert wrapped.getsockname() == listener.getsockname()
    assert wrapped.fileno() == listener.fileno()  # anything else is the socket's own


def test_held_headers_go_before_a_file_sent_from_the_file(
    pair: tuple[Any, Any], tmp_path: Any
) -> None:
    """Static files leave through sendfile, straight from the file: headers first."""
    server, client = pair
    page = tmp_path / "page.html"
    page.write_bytes(b"<html>hello</html>")
    connection = _Connection(server, read_timeout=5, keepalive=60)
    connection.begin_request(_Request())
    connection.sendall(HEAD)
    with page.open("rb") as file:
        assert connection.sendfile(file, 0, 18) == 18
    connection.end_request()
    assert _readable(client) == HEAD + b"<html>hello</html>"


class _Tls:
    """A socket that counts as TLS: its own calls only, never the plain socket beneath."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.sent = sock, list[bytes]()

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    @property
    def _sock(self) -> Any:
        pytest.fail("the plain socket beneath a TLS one was used")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_over_tls_every_byte_goes_through_the_socket_s_own_calls(
    pair: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain-socket shortcuts would write and read past the TLS layer."""
    monkeypatch.setattr(engine.worker, "SSLSocket", _Tls)
    server, client = pair
    tls = _Tls(server)
    connection = _Connection(tls, read_timeout=5, keepalive=60)
    connection.begin_request(_Request())
    connection.sendall(HEAD)
    connection.sendall(b"event: meta\r\n\r\n")
    assert tls.sent == [HEAD + b"event: meta\r\n\r\n"]  # its sendall, headers held as ever
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert connection.recv(100) == b"GET / HTTP/1.1\r\n"  # through its recv
