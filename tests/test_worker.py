"""FairGeventWorker: yields between keep-alive requests, and accepts all that waits.

The speed-ups themselves are measured in bench/ (keep-alive p99, 2,000 model streams);
these tests pin down the two mechanisms.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from gunicorn.workers import ggevent

from engine.worker import FairGeventWorker, _OwnSocketServer


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


@pytest.mark.parametrize(("reuse_port", "own_sockets"), [(True, True), (False, False)])
def test_run_uses_them_only_when_each_worker_has_its_own_socket(
    monkeypatch: pytest.MonkeyPatch, reuse_port: bool, own_sockets: bool
) -> None:
    seen: list[type] = []
    monkeypatch.setattr(ggevent, "StreamServer", ggevent.StreamServer)  # undone after the test
    monkeypatch.setattr(ggevent.GeventWorker, "run", lambda self: seen.append(ggevent.StreamServer))
    worker = object.__new__(FairGeventWorker)
    worker.cfg = _Cfg(reuse_port)
    worker.run()
    assert (seen == [_OwnSocketServer]) is own_sockets


def test_it_yields_to_other_connections_after_each_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        ggevent.GeventWorker, "handle_request", lambda *_: calls.append("answered") or True
    )
    monkeypatch.setattr(gevent, "sleep", lambda seconds=0: calls.append(f"yield {seconds}"))
    worker = object.__new__(FairGeventWorker)
    assert worker.handle_request("l", "req", "sock", "addr") is True
    assert calls == ["answered", "yield 0"]


def test_killed_while_yielding_it_closes_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ggevent.GeventWorker, "handle_request", lambda *_: True)

    def killed(seconds: float = 0) -> Any:
        raise gevent.GreenletExit

    monkeypatch.setattr(gevent, "sleep", killed)
    worker = object.__new__(FairGeventWorker)
    with pytest.raises(StopIteration):  # gunicorn's signal to close the connection
        worker.handle_request("l", "req", "sock", "addr")
