"""Connections for httpcore that reach only addresses the policy allows, within a deadline.

httpcore asks its network backend to `connect_tcp(host, port)` with the URL's host. This
backend resolves that name itself, checks every address against the policy before
connecting to any, then connects to a checked address. DNS is asked once and its answer
is the one used, so a name cannot answer the check with a public address and the connection
with a private one. TLS still runs over that connection with the URL's host name (httpcore
calls `start_tls(server_hostname=host)`), so SNI and certificate checks are unchanged, and
the Host header comes from the URL as always.

Everything blocking is a socket call or `socket.getaddrinfo`, which gevent's monkey
patching makes cooperative.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from .policy import Address, HostPolicy, literal_address

# socket.getaddrinfo's shape: (host, port) -> [(family, type, proto, canonname, sockaddr)].
Resolver = Callable[[str, int], Iterable[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]


class AddressRefused(Exception):
    """A host resolved to an address the policy refuses; nothing was connected to."""


@dataclass(frozen=True)
class Deadline:
    """The time (`time.monotonic()`) by which one attempt must have its whole answer."""

    at: float

    def clamp(self, timeout: float | None, error: type[Exception]) -> float:
        """`timeout`, shortened to the time left; raises `error` when none is left."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the deadline passed")
        return left if timeout is None else min(timeout, left)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default: certifi's CA bundle, hostname checks. Built once (about 20 ms)."""
    return httpx.create_ssl_context()


class CheckedBackend(httpcore.NetworkBackend):
    """Connects only to addresses `policy` allows for the host, before `deadline`."""

    def __init__(self, policy: HostPolicy, resolver: Resolver, deadline: Deadline) -> None:
        self._policy = policy
        self._resolver = resolver
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in self._checked(host, port):
            limit = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._sockets.connect_tcp(
                    str(address), port, limit, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc  # try the host's next address, as socket.create_connection does
                continue
            return DeadlineStream(stream, self._deadline)
        assert failure is not None
        raise failure

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _checked(self, host: str, port: int) -> list[Address]:
        """Every address of `host`, once each; AddressRefused if any one is refused."""
        addresses = self._resolve(host, port)
        for address in addresses:
            refusal = self._policy.address_refusal(host, address)
            if refusal is not None:
                raise AddressRefused(refusal)
        return addresses

    def _resolve(self, host: str, port: int) -> list[Address]:
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        try:
            answers = self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        self._deadline.clamp(None, httpcore.ConnectTimeout)  # the resolver has no timeout
        found = (literal_address(str(sockaddr[0])) for *_, sockaddr in answers)
        addresses = list(dict.fromkeys(address for address in found if address is not None))
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        return addresses


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        limit = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, limit), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
