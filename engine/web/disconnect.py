"""Noticing that the client went away while its answer waits for a model.

A WSGI server learns that a client left only when a write fails, and an answer waiting
for a model writes little: a keep-alive comment every KEEPALIVE_SECONDS in SSE mode, and
nothing at all in JSON mode, where the whole answer is gathered before the response
starts. Meanwhile the model kept generating, and the suggestions after it were asked for,
for nobody.

So while an answer waits for a model (the runtime marks that with `flush` on `meta`), the
event loop watches the client's socket for it to become readable. A client waiting for its
answer sends nothing more, so readable with nothing to read (EOF) or a reset means it is
gone: the answer is interrupted where it waits, and the relay's `finally` closes the model
call. Readable with data is a pipelined request: the client is there, and watching stops.
(A client that half-closes its side after sending the request would look gone; HTTP
clients, Poe's included, do not.)

This needs gunicorn's gevent worker, the production server: its environ carries the
connection's socket, and a watch costs one read watcher. Elsewhere (Flask's test client,
a threaded server) the events pass through untouched, and a disconnect is noticed at the
next write, as before. A rule-based answer never waits, so it is never watched.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..cooperative import under_gevent
from ..iterators import close_iterator
from ..protocol.events import Event, Meta

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("engine.web")


class ClientGone(BaseException):
    """Thrown into an answer waiting for a model when its client has left.

    A BaseException, like GeneratorExit: the stream guard and the relay let it through
    (their `finally` blocks stop the bot and close the model call) instead of turning it
    into an error event that nobody would read.
    """


def until_gone(events: Iterator[Event], environ: WSGIEnvironment, bot_name: str) -> Iterator[Event]:
    """`events`, ended early (and closed) if the client leaves while a model is awaited."""
    client = environ.get("gunicorn.socket")  # the socket, or engine/worker.py's wrapper of it
    if client is None or not under_gevent():
        return events
    return _watched(events, client.fileno(), bot_name)


def _watched(events: Iterator[Event], client: int, bot_name: str) -> Iterator[Event]:
    watch: Watch | None = None
    try:
        while watch is None or not watch.gone:
            event = next(events, None) if watch is None else watch.next(events)
            if event is None:
                return
            yield event
            if watch is None and isinstance(event, Meta) and event.flush:
                watch = Watch(client)
    except ClientGone:
        pass  # interrupted while waiting; the events' own `finally` blocks have run
    finally:
        if watch is not None:
            watch.stop()
        close_iterator(events)
    log.info("bot %s: the client went away; the answer was stopped", bot_name)


class Watch:
    """One client connection (its file descriptor) watched for EOF by the event loop.

    A read watcher whose callback runs in the loop itself: no greenlet per answer (one
    was spawned, started and switched to for every model answer: about 5 % of the
    server's CPU with 5,000 conversations opened at once, bench/first_byte.py, and its
    stack in each open conversation's memory).
    """

    def __init__(self, client: int) -> None:
        import gevent

        self.gone = False
        self._waiting = False  # the answer's greenlet is inside `next(events)`
        self._answer = gevent.getcurrent()
        self._client = client
        self._loop = gevent.get_hub().loop
        self._watcher = self._loop.io(client, 1)  # 1: readable
        self._watcher.start(self._readable)

    def next(self, events: Iterator[Event]) -> Event | None:
        """The next event; raises ClientGone if the client leaves meanwhile."""
        self._waiting = True
        try:
            return next(events, None)
        finally:
            self._waiting = False

    def stop(self) -> None:
        self._watcher.stop()
        self._watcher.close()

    def _readable(self) -> None:
        pending = _peek(self._client)
        if pending is None:
            return  # nothing there after all: keep watching
        self.stop()
        if pending:
            return  # a pipelined request: the client is still there
        self.gone = True
        # Interrupt from the loop's callbacks, as gevent's own `kill` does, and only while
        # the answer waits: anywhere else (writing the response) it would break the server.
        self._loop.run_callback(self._interrupt)

    def _interrupt(self) -> None:
        if self._waiting:
            self._answer.throw(ClientGone())


def _peek(fileno: int) -> bytes | None:
    """The first byte waiting on the connection without taking it: b"" at EOF or after a
    reset, None if nothing is there after all. Through a plain socket on the descriptor,
    which never waits, whatever wraps the server's socket object."""
    from gevent import monkey

    plain = monkey.get_original("socket", "socket")(fileno=fileno)
    try:
        return bytes(plain.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return None
    except OSError:  # ECONNRESET
        return b""
    finally:
        plain.detach()  # the descriptor stays the server's
