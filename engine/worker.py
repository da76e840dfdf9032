"""gunicorn's gevent worker, made fair between keep-alive connections, strict about slow
requests, and ending every open answer properly when it stops.

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
runs; with gevent's default (100) it was 0.6-1.6 s in all 29 runs (bench/README.md). Here
a worker takes every connection waiting, for up to half a second per turn (`ACCEPT_BUDGET`).

Third, reading: gunicorn waits for a request's headers as long as for an idle keep-alive
connection's next request (`keepalive`, 75 s), and a body shorter than its Content-Length
held a connection until the client gave up. Here a request must arrive whole, headers and
body, within `REQUEST_READ_TIMEOUT` seconds of its first byte (of the accept, for a new
connection's first request); only the wait for the first byte of a next request keeps the
keep-alive allowance. Headers that are late close the connection without an answer; a late
body raises `TimeoutError` from `wsgi.input`, which the app answers with 408, and the
connection closes after that answer.

Fourth, stopping. On SIGTERM gunicorn's worker stops accepting, waits up to
`graceful_timeout` for its connections to end, then kills what is left; but the arbiter
SIGKILLs the worker at that same deadline, counted from a moment earlier, so an answer still
running was cut with neither `error` nor `done`, and an idle keep-alive connection held the
worker for the whole wait. Here `run` is gunicorn's gevent `run` with its shutdown replaced:
idle keep-alive connections are closed at once; answers run until shortly before the
deadline (`_ending_margin`), then `ServerStopping` is raised inside each, which the stream
guard turns into a retryable `error` and `done` (closing the model call on the way); a
connection still open after that, such as a client that stopped reading, is shut down, and
the worker exits before the arbiter would kill it.

Fifth, first bytes first (engine/cooperative.py): each connection counts, from its request's
bytes coming in to its answer's first bytes, as arriving; answers already streaming wait
for those before their next chunk. And the path to those first bytes is short: gunicorn's
headers leave with the first body bytes in one send, writes skip gevent's `sendall` when
one `send` takes them, reads skip the timer when the bytes are there, and gunicorn's
settings are read as plain attributes (bench/first_byte.py, bench/profile_first_byte.py).
"""

from __future__ import annotations

import contextlib
import gc
import math
import socket
import sys
import time
from collections.abc import Iterable
from functools import partial
from typing import Any

import gevent
from gevent import monkey
from gevent.pool import Pool
from gevent.server import StreamServer
from gevent.ssl import SSLSocket
from gunicorn.sock import ssl_context
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

from .cooperative import WAIT_LIMIT, arrived
from .protocol.guard import ServerStopping
from .settings import Settings

__all__ = ["FairGeventWorker"]

_PlainSocket = monkey.get_original("socket", "socket")

# Answers still open this long before the graceful deadline are ended (a quarter of the
# deadline if that is shorter): time to write their last events and exit before the SIGKILL.
_ENDING_MARGIN = 2.0


# How long a worker goes on taking new connections in one turn of its event loop (seconds):
# every connection waiting is taken and answered up to its first bytes, for up to this long.
# The answers already streaming wait that long at most, as they do for requests arriving.
ACCEPT_BUDGET = WAIT_LIMIT


class _OwnSocketServer(StreamServer):  # type: ignore[misc]
    """A server on a socket no other worker accepts from: takes every connection waiting,
    and answers each at once, up to its first wait, before the loop turns.

    gevent starts a connection's greenlet from the loop's queue of callbacks, which runs for
    at most 5 ms (the switch interval) per turn, behind whatever is queued there already: the
    chunks of every answer already streaming. With thousands of streams open, a new request
    then waited seconds for its first byte (5,000 conversations at once: p99 6 s,
    bench/first_byte.py). Started here, from the accept watcher, a request is read and
    answered as far as it can go (a model's answer: its `meta` written, the model called)
    before any chunk of older answers: first bytes first. A burst of new connections
    delays streaming answers by about as long as answering their first bytes takes.

    Taking them is bounded by time, not by count (`ACCEPT_BUDGET`). A count of 1,000 ended
    a burst's turn while more connections waited in the kernel's queue; the loop then ran
    the chunks that had come due for every answer already open (about 70 µs each) before it
    took the next ones, and the last of 5,000 conversations waited for those rounds of
    chunks as well as for the first bytes before its own. A bound there is, so that a flood
    of connections cannot hold every answer already streaming (or the worker's heartbeat)
    for longer than that: the next turn takes the rest.
    """

    # When the current turn's taking ends (time.monotonic()), set as each turn begins.
    _taking_until = math.inf

    @property
    def max_accept(self) -> int:
        return sys.maxsize  # bounded in time instead, by `do_read`

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """Ignore gunicorn's `1`, meant for workers that share one socket."""

    def _do_read(self) -> None:
        """One turn's taking, with the garbage collector paused. (gevent's BaseServer calls
        `_do_read` from its accept watcher; tests/test_worker.py fails if it no longer does.)

        Answering the first bytes of thousands of new connections allocates fast: in a
        burst of 5,000, each worker ran about ten young collections of up to 12 ms, each
        delaying every first byte still to come. Paused, the collection runs once the
        turn ends, among the answers' chunks. 5,000 conversations at once
        (bench/first_byte.py), five runs of each alternated: first byte p99 686 ms on
        average with turns of 1,000 connections, 667 bounded in time, 594 bounded and
        paused. A turn is bounded in time, and so is what it allocates.
        """
        self._taking_until = time.monotonic() + ACCEPT_BUDGET
        collecting = gc.isenabled()
        gc.disable()
        try:
            super()._do_read()
        finally:
            if collecting:
                gc.enable()

    def do_read(self) -> tuple[Any, Any] | None:
        """The next connection waiting, or None to end this turn: the kernel's queue is
        empty, or the turn has had its `ACCEPT_BUDGET` (the listening socket then stays
        readable, and the loop's next turn goes on taking)."""
        if time.monotonic() >= self._taking_until:
            return None
        taken: tuple[Any, Any] | None = super().do_read()
        return taken

    def do_handle(self, *args: Any) -> None:
        try:
            greenlet = self.pool.spawn(_handle_and_close, self._handle, self.do_close, args)
        except BaseException:
            self.do_close(*args)
            raise
        if gevent.getcurrent() is gevent.get_hub():  # in the accept watcher, as always
            greenlet.switch()  # run it now; its `run` cancels the start it was queued for


class _Connection:
    """A client socket that times how long each request takes to arrive, sends a response's
    headers with its first bytes, and counts requests still waiting for their first bytes.

    gunicorn and the app use it as the socket itself (everything but `recv` and `sendall`
    is the socket's own). `deadline` is when the request being read must be complete; None
    while the connection is idle, between an answer and the first byte of the next request.
    `arriving`: a request's bytes came in and no answer's bytes have left yet; answers
    under way make way for these (engine/cooperative.py).
    """

    def __init__(self, sock: Any, read_timeout: float, keepalive: float) -> None:
        self.sock = sock
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self.greenlet = gevent.getcurrent()
        self.deadline: float | None = time.monotonic() + read_timeout
        self.answering = False
        self.request: Any = None
        # The calls made for every answer, bound once instead of through __getattr__.
        self.send = sock.send
        self.sendall = self._sendall
        # The real socket's calls, which never wait: `send` may send part, `recv` raises
        # BlockingIOError when nothing is there. Over TLS (gunicorn's `certfile`) every
        # byte goes through the TLS layer: gevent's own calls only.
        if isinstance(sock, SSLSocket):
            self._send_now = self._recv_now = _not_now
        else:
            self._send_now, self._recv_now = sock._sock.send, sock._sock.recv
        self._held = b""
        self.arriving = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    @property
    def idle(self) -> bool:
        return self.deadline is None

    def begin_request(self, request: Any) -> None:
        """The headers are in; the app now reads the body (if any) and answers."""
        self.answering, self.request = True, request
        if self.deadline is None:  # a pipelined request, read from gunicorn's buffer
            self.deadline = time.monotonic() + self.read_timeout
        self._arrive()
        self.sendall = self._hold  # gunicorn's first write of a response: its headers

    def end_request(self) -> None:
        self.answering, self.request, self.deadline = False, None, None
        held, self._held = self._held, b""
        self.sendall = self._sendall
        self.first_bytes_sent()
        if held:  # a response that wrote nothing after its headers
            # The client left if this fails; reading its next request ends the connection.
            with contextlib.suppress(OSError):
                self._sendall(held)

    def _sendall(self, data: bytes) -> None:
        """gevent's `sendall`, after one plain `send` that usually takes it all.

        gevent's own asks the kernel for the socket's buffer size on every call and
        sends through a memoryview in Python: about 5 µs per write, and an answer
        writes once per model chunk. A client that reads slowly fills its buffer; then
        the rest goes through gevent's, which waits for room (and gives up after the
        socket's timeout, as before).
        """
        try:
            sent = self._send_now(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def _hold(self, data: bytes) -> None:
        """gunicorn writes a response's headers alone, then each piece of its body: held
        here, the headers leave with the first piece, one send instead of two (a model's
        answer: `meta` arrives with its headers)."""
        self._held = data
        self.sendall = self._send_with_held

    def _send_with_held(self, data: bytes) -> None:
        held, self._held = self._held, b""
        self.sendall = self._sendall
        self.first_bytes_sent()  # before the send, which waits if the client reads nothing
        self._sendall(held + data)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """gunicorn sends a file's bytes straight from the file (static files): the held
        headers go first."""
        if self._held:
            self._send_with_held(b"")
        sent: int = self.sock.sendfile(file, offset, count)
        return sent

    def _read(self, size: int, timeout: float) -> bytes:
        """What the socket has, or what comes within `timeout` seconds (TimeoutError).

        A request that has to wait for more of its bytes does not count as arriving
        meanwhile (engine/cooperative.py): a client that sends half a request holds
        no other answer up.
        """
        try:
            ready: bytes = self._recv_now(size)  # usually there already: no timer, no switch
            return ready
        except BlockingIOError:
            pass
        waiting = self.arriving
        if waiting:
            arrived(-1)
        self.sock.settimeout(timeout)
        try:
            data: bytes = self.sock.recv(size)
            return data
        finally:
            self.sock.settimeout(None)
            if waiting and self.arriving:
                arrived(1)

    def _arrive(self) -> None:
        if not self.arriving:
            self.arriving = True
            arrived(1)

    def first_bytes_sent(self) -> None:
        """The answer's first bytes left (or the request or connection ended without)."""
        if self.arriving:
            self.arriving = False
            arrived(-1)

    def recv(self, size: int) -> bytes:
        try:
            return self._recv(size)
        except ServerStopping:
            if self.answering:
                raise  # reading a body: the worker closes the connection
            return b""  # between requests, or in headers: gunicorn closes quietly on EOF

    def _recv(self, size: int) -> bytes:
        if self.deadline is None:  # idle: the next request may wait `keepalive` seconds
            try:
                data = self._read(size, self.keepalive)
            except TimeoutError:
                return b""  # gunicorn closes an idle connection quietly on EOF
            self.deadline = time.monotonic() + self.read_timeout  # a next request began
            if data:
                self._arrive()
            return data
        left = self.deadline - time.monotonic()
        if left > 0:
            try:
                data = self._read(size, left)
            except TimeoutError:
                pass
            else:
                if data:
                    self._arrive()
                return data
        if not self.answering:
            return b""  # late headers: gunicorn takes the client for gone and closes
        self.request.must_close = True  # where the next request would start is unknown
        raise TimeoutError(f"the request took over {self.read_timeout:g} s to arrive")

    def hang_up(self) -> None:
        """Shut the connection down: a greenlet reading it gets EOF, one writing it EPIPE.

        Through a plain socket on the same descriptor: gevent's own `shutdown` would wake
        the waiting greenlet with EBADF instead, which gunicorn logs as a socket error.
        """
        try:
            plain = _PlainSocket(fileno=self.sock.fileno())
        except (OSError, ValueError):  # ValueError: fileno() is -1, it was closed
            return
        try:
            plain.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client was gone already
        finally:
            plain.detach()  # the descriptor stays the gevent socket's, to close


class FairGeventWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """The stock gevent worker, yielding between keep-alive requests, bounding the time to
    read a request, and ending open answers properly on shutdown."""

    cfg: Any  # gunicorn's Config, then read through _SettledConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = _SettledConfig(self.cfg)
        # engine.server.Server hands over its Settings; under gunicorn's own command line,
        # they come from the environment as usual.
        settings = getattr(self.app, "settings", None) or Settings()
        self.read_timeout = float(settings.request_read_timeout)
        self.connections: set[_Connection] = set()
        self.stopping_since: float | None = None

    def handle_exit(self, sig: Any, frame: Any) -> None:
        """SIGTERM: the arbiter's `graceful_timeout` is counted from now."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        super().handle_exit(sig, frame)

    # ------------------------------------------------------------------ serving

    def init_process(self) -> None:
        """In the new worker process: gunicorn's start-up, which ends by serving (`run`)."""
        _tune_gc()
        super().init_process()

    def run(self) -> None:
        """gunicorn's GeventWorker.run for its own StreamServer; see `_stop` for the end."""
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        # Looked up here, not imported: bench/serve.py swaps gunicorn's StreamServer and ours.
        server_class = _OwnSocketServer if self.cfg.reuse_port else ggevent.StreamServer
        servers = []
        for sock in self.sockets:
            sock.setblocking(1)
            pool = Pool(self.worker_connections)
            listener = _Listener(sock)
            handle = partial(self.handle, listener)
            server = server_class(sock, handle=handle, spawn=pool, **ssl_args)
            if self.cfg.workers > 1:
                server.max_accept = 1  # _OwnSocketServer ignores it
            server.start()
            servers.append(server)
        # A tenth of a second, not gunicorn's second: SIGTERM's handler runs only when Python
        # code does, and a worker being replaced (SIGHUP, a hot reload) keeps accepting on its
        # own socket until it sees it, answering with the bots it was forked with.
        while self.alive:
            self.notify()
            gevent.sleep(0.1)
        self._stop(servers)

    def timeout_ctx(self) -> contextlib.AbstractContextManager[None]:
        """gunicorn bounds each request's reading with a gevent.Timeout of `keepalive`
        seconds (one made, started and cancelled per request); `_Connection` bounds its
        reads itself: `keepalive` while idle, REQUEST_READ_TIMEOUT once a request began."""
        return contextlib.nullcontext()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        connection = _Connection(client, self.read_timeout, float(self.cfg.keepalive))
        self.connections.add(connection)
        try:
            super().handle(listener, connection, addr)
        finally:
            connection.first_bytes_sent()
            self.connections.discard(connection)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        sock.begin_request(req)
        try:
            handled = super().handle_request(listener_name, req, sock, addr)
            if not self.alive:
                raise StopIteration  # stopping: serve no further request on this connection
            gevent.sleep(0)  # let every other ready greenlet run before this one reads again
        except ServerStopping:
            # Ended while reading the body or writing to a client that is not reading: no
            # answer can be finished here, so close the connection.
            raise StopIteration from None
        except gevent.GreenletExit:
            # Killed while yielding (the shutdown's last resort): the answer was already
            # sent, so close the connection quietly instead of writing a 500.
            raise StopIteration from None
        finally:
            sock.end_request()
        return handled

    # ------------------------------------------------------------------ stopping

    def _stop(self, servers: list[Any]) -> None:
        """Stop accepting; end idle connections now and open answers before the deadline."""
        for server in servers:
            server.close()
        pools = [server.pool for server in servers]
        since = self.stopping_since or time.monotonic()
        budget = float(self.cfg.graceful_timeout)
        margin = _ending_margin(budget)
        _hang_up(c for c in self.connections if c.idle)
        if self._drain(pools, until=since + budget - margin):
            return
        answering = [c for c in self.connections if c.answering]
        if answering:
            self.log.warning(
                "Ending %d open answer(s): the graceful timeout (%g s) is almost over",
                len(answering),
                budget,
            )
        for connection in answering:
            gevent.kill(connection.greenlet, ServerStopping)
        if self._drain(pools, until=since + budget - margin / 2):
            return
        _hang_up(self.connections)  # clients that stopped reading, requests still arriving
        if self._drain(pools, until=since + budget - margin / 4):
            return
        for server in servers:
            server.stop(timeout=0)

    def _drain(self, pools: list[Pool], until: float) -> bool:
        """Wait until every connection has ended (True) or `until` passes (False)."""
        while (left := until - time.monotonic()) > 0:
            if all([pool.join(timeout=min(left, 1.0)) for pool in pools]):
                return True
            self.notify()  # still alive, to the arbiter
        return all(pool.free_count() == pool.size for pool in pools)


# Allocations between two young collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def _tune_gc() -> None:
    """Collect less of what never becomes garbage, in the worker, before it serves.

    Everything loaded before serving (the bots, the modules) lives as long as the worker:
    frozen, the collector no longer walks it, and the pages the worker shares with the
    arbiter stay shared. Thousands of open answers allocate fast, and at Python's default
    threshold a young collection ran every few hundred objects and a full one every few
    thousand: with 5,000 conversations opened at once the collector took about a fifth of
    each worker's CPU (0.8 s of 3.6), 0.2 s after this (bench/first_byte.py). Cycles are
    still collected, a little later.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _not_now(*_: Any) -> Any:
    raise BlockingIOError


class _Listener:
    """A listening socket as gunicorn's `handle` uses it: its address read once, not
    asked of the kernel through gevent's wrapper for every connection."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.name = sock.getsockname()

    def getsockname(self) -> Any:
        return self.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class _SettledConfig:
    """gunicorn's configuration as the worker reads it: each setting a plain attribute.

    gunicorn reads its settings through `Config.__getattr__` (a lookup and a method call
    each), 27 times per request; the values never change in a worker once it runs. What
    is not a plain setting (properties such as `is_ssl`, or `worker_class`, which turns
    the setting's text into a class; methods) is the real object's.
    """

    def __init__(self, cfg: Any) -> None:
        computed = type(cfg)
        self.__dict__.update(
            (name, setting.get())
            for name, setting in cfg.settings.items()
            if not hasattr(computed, name)
        )
        self._config = cfg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def _handle_and_close(handle: Any, close: Any, args: tuple[Any, ...]) -> None:
    """gevent's own wrapper for a connection's greenlet: answer it, then close it."""
    try:
        handle(*args)
    finally:
        close(*args)


def _ending_margin(graceful_timeout: float) -> float:
    return min(_ENDING_MARGIN, graceful_timeout / 4)


def _hang_up(connections: Iterable[_Connection]) -> None:
    for connection in list(connections):
        connection.hang_up()
