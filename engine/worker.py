"""gunicorn's gevent worker, made fair between keep-alive connections.

gunicorn serves each connection from one greenlet that loops: read a request, answer it,
read the next. gevent's socket calls only give control back to the event loop when they
would block (`recv` on an empty buffer, `send` on a full one). A client that sends its next
request as soon as the last answer arrives (Poe's backend over a pooled connection, or any
load balancer) usually has it waiting by the time the answer is written, so that greenlet
never blocks: it serves the same connection back to back while every other connection's
requests sit unread until it happens to find its socket empty. Measured with 100
keep-alive connections on one worker: p50 0.4 ms, p99 up to 2.2 s, max 6 s, wrk timeouts;
98.8 % of requests served in streaks of 10+ on one connection (bench/README.md).

The fix: after each answer, yield to the event loop before reading the connection's next
request, so connections with a request waiting are served in turn.

Second, accepting: with several workers gunicorn makes each accept one connection per turn
of its event loop (`max_accept = 1`), to share one listening socket fairly. With
`reuse_port` every worker has its own socket and the kernel has already chosen the worker,
so that limit only slows a busy worker down: relaying 2,000 model streams, its accept queue
drained at about 40 connections/s and p99 time to first byte reached 4-13 s in 10 of 36
runs; with gevent's default (100) it was 0.6-1.6 s in all 29 runs (bench/README.md).
"""

from __future__ import annotations

from typing import Any

import gevent
from gevent.server import StreamServer
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

__all__ = ["FairGeventWorker"]


class _OwnSocketServer(StreamServer):  # type: ignore[misc]
    """A server on a socket no other worker accepts from: take every connection waiting."""

    @property
    def max_accept(self) -> int:
        return StreamServer.max_accept  # type: ignore[no-any-return]  # gevent's default, 100

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """Ignore gunicorn's `1`, meant for workers that share one socket."""


class FairGeventWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """The stock gevent worker, yielding to the event loop between keep-alive requests."""

    def run(self) -> None:
        if self.cfg.reuse_port:
            # gunicorn's run() builds its servers from this module global; this process
            # is this worker's alone, so the swap reaches nothing else.
            ggevent.StreamServer = _OwnSocketServer
        super().run()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        handled = super().handle_request(listener_name, req, sock, addr)
        try:
            gevent.sleep(0)  # let every other ready greenlet run before this one reads again
        except gevent.GreenletExit:
            # Killed while yielding (the graceful-shutdown deadline passed): the answer was
            # already sent, so close the connection quietly instead of writing a 500.
            raise StopIteration from None
        return handled
