"""A small HTTP/1.1 client for streamed model answers, under the official SDKs.

The SDKs send through httpx2, whose stack (httpcore2, h11, the response's decoders and line
splitter) cost about half of the engine's CPU per relayed chunk under gevent: several layers
of Python and a timer per socket read, for a 200-byte chunk. `Transport` replaces only the
bottom of that stack (it is an httpx2 transport, given to the SDK's `http_client`), so the
SDK still builds, authenticates and sends each request and turns HTTP errors into its
exceptions. A response body is a `Body`, which the providers read directly: one `recv` per
read, the chunked framing undone in place, nothing else.

Plain sockets, so it is cooperative under gevent's monkey patching (the production server)
and an ordinary blocking client elsewhere (`engine chat`, tests). Proxies from the
environment are still honoured: httpx2 mounts its own transports for them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx2

_MAX_HEAD = 64 * 1024  # a response's status line and headers, at most
_MAX_IDLE = 256  # kept-alive connections per origin
_IDLE_FOR = 60.0  # seconds an unused connection is kept
_ADDRESSES_FOR = 10.0  # seconds a host's looked-up addresses are reused (as aiohttp's default)
_READ = 65536
Origin = tuple[str, str, int]
Address = tuple[socket.AddressFamily, socket.SocketKind, int, Any]


class Connection:
    """One socket to an origin, with the bytes read past the last response's end."""

    __slots__ = ("idle_since", "origin", "sock")

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self.sock, self.origin = sock, origin
        self.idle_since = 0.0

    def usable(self) -> bool:
        """Whether an idle connection still looks open: nothing to read, no EOF."""
        if time.monotonic() - self.idle_since > _IDLE_FOR:
            return False
        try:
            self.sock.setblocking(False)
            try:
                return not self.sock.recv(1, socket.MSG_PEEK)  # EOF or stray bytes: unusable
            finally:
                self.sock.setblocking(True)
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self, wake: bool = True) -> None:
        """Close the socket; with `wake`, shut it down first, which wakes a thread blocked
        reading it (closing alone does not). An idle connection has no reader to wake."""
        if wake:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Pool:
    """Kept-alive connections per origin, most recently used last."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, deque[Connection]] = {}
        self._lock = threading.Lock()
        self._ssl = ssl_context
        self._addresses: dict[tuple[str, int], tuple[float, list[Address]]] = {}

    def take(self, origin: Origin) -> Connection | None:
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if connection.usable():
                    return connection
                connection.close(wake=False)
        return None

    def give(self, connection: Connection) -> None:
        """Keep `connection` for the next request to its origin, and close the connections
        idle for longer than `_IDLE_FOR` (the oldest, at the front): a burst leaves many
        that later, quieter traffic never takes, which the server closes meanwhile."""
        now = connection.idle_since = time.monotonic()
        closing: list[Connection] = []
        with self._lock:
            idle = self._idle.setdefault(connection.origin, deque())
            while idle and now - idle[0].idle_since > _IDLE_FOR:
                closing.append(idle.popleft())
            if len(idle) < _MAX_IDLE:
                idle.append(connection)
            else:
                closing.append(connection)  # no room
        for unwanted in closing:
            unwanted.close(wake=False)

    def connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        try:
            sock = self._open_socket(host, port, timeout)
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:
            raise httpx2.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx2.create_ssl_context()
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
            except TimeoutError as exc:
                sock.close()
                raise httpx2.ConnectTimeout(f"TLS with {host}:{port}: {exc}") from exc
            except OSError as exc:  # ssl.SSLError is one
                sock.close()
                raise httpx2.ConnectError(f"TLS with {host}:{port}: {exc}") from exc
        return Connection(sock, origin)

    def _open_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A socket connected to the first of the host's addresses that answers, as
        `socket.create_connection`, with the addresses looked up at most every
        `_ADDRESSES_FOR` seconds. Under gevent a lookup runs in a native thread of gevent's
        pool, even for a numeric address: two thread switches and the GIL handed over,
        about 100 µs of CPU a connection, and a burst of answers opens hundreds at once."""
        failure: OSError | None = None
        for family, kind, proto, address in self._looked_up(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
        self._addresses.pop((host, port), None)  # none answered: look them up again next time
        raise failure or OSError(f"no address found for {host}")

    def _looked_up(self, host: str, port: int) -> list[Address]:
        now = time.monotonic()
        known = self._addresses.get((host, port))
        if known is not None and now - known[0] < _ADDRESSES_FOR:
            return known[1]
        found: list[Address] = [
            (family, kind, proto, address)
            for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, 0, socket.SOCK_STREAM
            )
        ]
        self._addresses[(host, port)] = (now, found)
        return found

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close(wake=False)


# One pool for every client in the process: a connection to an origin serves whichever
# model configuration calls it next.
POOL = Pool()


class Transport(httpx2.BaseTransport):
    """httpx2's transport interface over `Pool`: HTTP/1.1, one request per connection at a
    time, bodies streamed as `Body`."""

    def __init__(self, pool: Pool | None = None) -> None:
        self.pool = pool or POOL

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        head, content = _request_bytes(request)
        status, headers, body = send(
            self.pool, (scheme, url.host, port), head, content, timeouts, request.method
        )
        return httpx2.Response(
            status, headers=headers, stream=body, request=request, extensions={"body": body}
        )

    def close(self) -> None:
        """Nothing: the pool is shared (`POOL`), and its idle connections expire."""


def _request_bytes(request: httpx2.Request) -> tuple[bytes, bytes]:
    content = request.read()
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    for name, value in request.headers.raw:
        if name.lower() == b"accept-encoding":
            value = b"identity"  # the body is read as it is sent: no decompression step
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n", content


def send(
    pool: Pool,
    origin: Origin,
    head: bytes,
    content: bytes,
    timeouts: dict[str, Any],
    method: str = "POST",
) -> tuple[int, list[tuple[bytes, bytes]], Body]:
    """Send one request; its status, headers and body (not yet read). A kept-alive
    connection the server closed meanwhile is replaced once, before any answer came."""
    connection = pool.take(origin)
    reused = connection is not None
    while True:
        if connection is None:
            connection = pool.connect(origin, timeouts.get("connect"))
        connection.sock.settimeout(timeouts.get("write"))
        try:
            connection.sock.sendall(head + content)
            connection.sock.settimeout(timeouts.get("read"))
            status, headers, rest, http10 = _read_head(connection.sock)
        except _Stale:
            connection.close()
            if not reused:
                raise httpx2.RemoteProtocolError(
                    f"{origin[1]}:{origin[2]} closed the connection without answering"
                ) from None
            connection, reused = None, False
            continue
        except TimeoutError as exc:
            connection.close()
            raise httpx2.ReadTimeout(f"no answer from {origin[1]}:{origin[2]}") from exc
        except OSError as exc:
            connection.close()
            if reused:
                connection, reused = None, False
                continue
            raise httpx2.ReadError(f"{origin[1]}:{origin[2]}: {exc}") from exc
        body = Body(pool, connection, rest, headers, status, method, timeouts.get("read"))
        if http10:
            body.keep_alive = False
        return status, headers, body


class _Stale(Exception):
    """The connection ended before a byte of the answer."""


def _read_head(sock: socket.socket) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """Status, headers, the bytes read past them, and whether it is HTTP/1.0 (which
    closes the connection after the answer)."""
    buffer = b""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise httpx2.RemoteProtocolError("the response's headers are too long")
            data = sock.recv(_READ)
            if not data:
                if buffer:
                    raise httpx2.RemoteProtocolError("the connection closed inside the headers")
                raise _Stale
            buffer += data
            continue
        lines = buffer[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx2.RemoteProtocolError(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
        status = int(parts[1])
        rest = buffer[end + 4 :]
        if 100 <= status < 200 and status != 101:
            buffer = rest  # `100 Continue` and the like: the real answer follows
            continue
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpx2.RemoteProtocolError(f"invalid header line {line[:100]!r}")
            headers.append((name.strip(), value.strip()))
        return status, headers, rest, parts[0] == b"HTTP/1.0"


_CHUNKED, _LENGTH, _UNTIL_CLOSE, _DONE = range(4)


class Body(httpx2.SyncByteStream):
    """A response body, read as it arrives: `poll` returns what one socket read brought
    (the chunked framing removed), so a streamed model chunk costs one `recv`.

    Closed whole, its connection goes back to the pool; closed early, the connection is
    shut down, which also wakes a thread blocked reading it, and the upstream sees it end.
    """

    def __init__(
        self,
        pool: Pool,
        connection: Connection,
        rest: bytes,
        headers: list[tuple[bytes, bytes]],
        status: int,
        method: str,
        read_timeout: float | None,
    ) -> None:
        self._pool, self._connection, self._buffer = pool, connection, rest
        self.read_timeout = read_timeout
        self.keep_alive = True
        self._left = 0  # bytes of chunk data (chunked) or of the body (length) still due
        self._crlf = False  # chunked: the CRLF after a chunk's data is due
        self.encoded = False  # a Content-Encoding other than identity: not for `poll`
        length: int | None = None
        chunked = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"content-length" and value.isdigit():
                length = int(value)
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            elif lowered == b"content-encoding" and value.lower() != b"identity":
                self.encoded = True
        if method == "HEAD" or status in (204, 304) or length == 0:
            self._state = _DONE
        elif chunked:
            self._state = _CHUNKED
        elif length is not None:
            self._state, self._left = _LENGTH, length
        else:
            self._state, self.keep_alive = _UNTIL_CLOSE, False
        self._closed = False
        self._stalled = False  # `_buffer` holds an incomplete size line

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def poll(self, timeout: float | None) -> bytes | None:
        """The body's bytes that one read brings (b"" if it brought only framing), or None
        at the body's end. Raises TimeoutError if nothing came within `timeout`, and
        httpx2's errors if the connection fails or the framing is broken. At the end the
        connection goes back to the pool (or is closed)."""
        if self._state == _DONE:
            self.close()
            return None
        try:
            return self._poll(timeout)
        except httpx2.HTTPError:
            self._state, self.keep_alive = _DONE, False
            self.close()  # a broken answer: its connection serves no other
            raise

    def _poll(self, timeout: float | None) -> bytes | None:
        if self._buffer and not self._stalled:
            data, self._buffer = self._buffer, b""
        else:
            sock = self._connection.sock
            if sock.gettimeout() != timeout:
                sock.settimeout(timeout)
            try:
                data = sock.recv(_READ)
            except TimeoutError:
                raise
            except OSError as exc:
                self._state, self.keep_alive = _DONE, False
                raise httpx2.ReadError(f"reading the answer: {exc}") from exc
            if not data:
                return self._eof()
            if self._buffer:  # the start of a size line read before
                data, self._buffer, self._stalled = self._buffer + data, b"", False
        if self._state == _CHUNKED:
            return self._unchunk(data)
        if self._state == _LENGTH:
            if len(data) >= self._left:
                data, self._buffer = data[: self._left], data[self._left :]
                self._state = _DONE
                self._left = 0
                return data
            self._left -= len(data)
        return data

    def _eof(self) -> bytes | None:
        self.keep_alive = False
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return None
        self._state = _DONE
        raise httpx2.RemoteProtocolError("the connection closed before the answer's end")

    def _unchunk(self, data: bytes) -> bytes:
        pieces: list[bytes] = []
        position, size = 0, len(data)
        while position < size:
            if self._left:
                take = min(self._left, size - position)
                pieces.append(data[position : position + take])
                position += take
                self._left -= take
                if not self._left:
                    self._crlf = True
                continue
            end = data.find(b"\r\n", position)
            if end < 0:
                break  # a partial size line (or CRLF): wait for the rest
            if self._crlf:
                if end != position:
                    raise httpx2.RemoteProtocolError("a chunk is longer than its size says")
                self._crlf = False
                position = end + 2
                continue
            line = data[position:end].split(b";", 1)[0].strip()
            try:
                chunk = int(line, 16)
            except ValueError:
                raise httpx2.RemoteProtocolError(f"invalid chunk size {line[:20]!r}") from None
            if chunk == 0:
                trailers = data.find(b"\r\n\r\n", end)
                if data.startswith(b"\r\n", end + 2):
                    position = end + 4
                elif trailers < 0:
                    break  # the trailers have not all arrived
                else:
                    position = trailers + 4
                self._state = _DONE
                break
            self._left = chunk
            position = end + 2
        if position < size:
            if self._state != _DONE and size - position > _MAX_HEAD:
                raise httpx2.RemoteProtocolError("an invalid chunk size line")
            self._buffer = data[position:]
            self._stalled = self._state != _DONE  # only more bytes can complete it
        return b"".join(pieces) if len(pieces) != 1 else pieces[0]

    def __iter__(self) -> Iterator[bytes]:
        while (data := self.poll(self.read_timeout)) is not None:
            if data:
                yield data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._state == _DONE and self.keep_alive and not self._buffer:
            self._pool.give(connection)
        else:
            connection.close()
