"""`fetch`: one call, with retries, redirects checked hop by hop, and a capped answer.

httpcore (httpx's own transport) is used without httpx's client: the client would log
every URL (queries may hold keys), read proxies from the environment (a proxy would
connect instead of us, unchecked) and keep cookies between bots. Each try gets its own
connection pool, so the backend can hold that try's deadline; calls do not share
connections, which costs a handshake per call and keeps every connection checked.
"""

from __future__ import annotations

import http
import json
import logging
import re
import socket
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpcore
import httpx

from .models import CallError, CallErrorKind, OutboundRequest, OutboundResponse
from .network import AddressRefused, CheckedBackend, Deadline, Resolver, tls_context
from .policy import HostPolicy
from .urls import DEFAULT_PORTS, Origin

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
METHODS = IDEMPOTENT | {"POST", "PATCH"}
REDIRECTS = frozenset({301, 302, 303, 307, 308})
BACKOFF = 0.2  # seconds before the second try, doubled before each next one, up to 2 s
DEFAULT_HEADERS = {"Accept": "application/json", "User-Agent": "poe-bot-engine"}
# Set from the URL and the body; a creator's value could split or redirect the request.
ENGINE_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def fetch(
    request: OutboundRequest, policy: HostPolicy, *, resolver: Resolver | None = None
) -> OutboundResponse:
    """Make the call and read its whole 2xx answer; anything else raises CallError.

    `resolver` defaults to `socket.getaddrinfo`, looked up at each call so gevent's patched
    one is used. Idempotent methods are tried again after a timeout, a failed connection
    or a 502, 503 or 504, `retries` times at most, waiting 0.2 s, 0.4 s, ... (2 s at most).
    """
    first = _first_hop(request)
    call = _Call(request, policy, resolver or socket.getaddrinfo, time.monotonic())
    tries = 1 + request.retries if first.method in IDEMPOTENT else 1
    attempt = 1
    while True:
        try:
            return _attempt(call, first)
        except CallError as error:
            if attempt == tries or not error.retryable:
                error.tries = attempt
                raise
        time.sleep(min(BACKOFF * 2 ** (attempt - 1), 2.0))
        attempt += 1


@dataclass(frozen=True)
class _Call:
    request: OutboundRequest
    policy: HostPolicy
    resolver: Resolver
    started: float


@dataclass(frozen=True)
class _Hop:
    """One request of a call: the first, or one a redirect leads to."""

    method: str
    url: httpx.URL
    headers: Mapping[str, str]  # the creator's; dropped when the host changes
    body: bytes | None
    redirected_from: Origin | None = None

    @property
    def host(self) -> str:
        return self.url.raw_host.decode("ascii")

    def error(
        self,
        kind: CallErrorKind,
        detail: str,
        *,
        status: int | None = None,
        response: OutboundResponse | None = None,
    ) -> CallError:
        if self.redirected_from is not None:
            detail += f" (redirected from {self.redirected_from})"
        return CallError(kind, detail, self.method, self.host, status=status, response=response)

    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        defaults = {**DEFAULT_HEADERS, "Accept-Encoding": "gzip"}
        if self.body is not None:
            defaults["Content-Type"] = "application/json"
        given = {name.lower() for name in self.headers}
        headers = [(n, v) for n, v in defaults.items() if n.lower() not in given]
        return [
            (name.encode(), value.encode()) for name, value in [*headers, *self.headers.items()]
        ]

    def redirect(self, status: int, location: str) -> _Hop:
        """The request a redirect asks for: 303 (and 301 or 302 after POST) turns into GET."""
        try:
            url = self.url.join(location)
        except httpx.InvalidURL:
            raise self.error(
                "status", f"answered HTTP {status} with an invalid Location", status=status
            ) from None
        problem = _url_problem(url)
        if problem is not None:
            detail = f"answered HTTP {status}, a redirect to a URL that cannot be called: {problem}"
            raise self.error("status", detail, status=status)
        method = self.method
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
        # Headers may hold keys meant for this origin: they follow a redirect to the same
        # scheme, host and port only (another port may be another program).
        kept = (url.scheme, url.raw_host, url.port) == (
            self.url.scheme,
            self.url.raw_host,
            self.url.port,
        )
        return _Hop(
            method,
            url,
            self.headers if kept else {},
            self.body if method == self.method else None,
            Origin.of(self.url),
        )


def _first_hop(request: OutboundRequest) -> _Hop:
    """The request as given, checked: CallError `bad_request` or `refused_host` if wrong."""
    method = request.method.upper()
    try:
        url = httpx.URL(request.url)
    except httpx.InvalidURL as exc:
        raise CallError("bad_request", f"the URL is not valid ({exc})", method, "") from None
    problem = _url_problem(url)
    if problem is not None:
        raise CallError("bad_request", problem, method, url.raw_host.decode("ascii"))
    if request.query:
        url = url.copy_merge_params(dict(request.query))
    hop = _Hop(method, url, {}, None)
    if request.origin is not None and Origin.of(url) != request.origin:
        raise hop.error(
            "refused_host",
            f"the URL calls {Origin.of(url)} once its values are filled in, but it is written "
            f"for {request.origin}; values may fill only its path and query",
        )
    if url.userinfo:
        raise hop.error(
            "bad_request", "the URL has a user name or password; send credentials in a header"
        )
    if method not in METHODS:
        raise hop.error("bad_request", f"unknown method; use one of {', '.join(sorted(METHODS))}")
    return _Hop(method, hop.url, _checked_headers(hop, request.headers), _body(hop, request.body))


def _url_problem(url: httpx.URL) -> str | None:
    if url.scheme not in DEFAULT_PORTS or not url.raw_host:
        return "the URL must start with http:// or https:// and name a host"
    if url.port is not None and not 0 < url.port < 65536:
        return "the URL's port must be between 1 and 65535"
    return None


def _checked_headers(hop: _Hop, headers: Mapping[str, str]) -> dict[str, str]:
    """The creator's headers, checked; an error never shows a value, which may be a key."""
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not TOKEN.fullmatch(name):
            raise hop.error("bad_request", f"{name!r} is not a valid header name")
        if name.lower() in ENGINE_HEADERS:
            raise hop.error("bad_request", f"the {name} header is set by the engine")
        if CONTROL.search(value):
            raise hop.error(
                "bad_request", f"the {name} header's value has a line break or control character"
            )
        checked[name] = value
    return checked


def _body(hop: _Hop, body: object) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body  # bytes: built by the engine (a file upload), its Content-Type given
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise hop.error("bad_request", f"the body cannot be sent as JSON ({exc})") from None


def _attempt(call: _Call, first: _Hop) -> OutboundResponse:
    """One try: the request and its redirects, ending by one deadline."""
    deadline = Deadline(time.monotonic() + call.request.timeout)
    backend = CheckedBackend(call.policy, call.resolver, deadline)
    with httpcore.ConnectionPool(ssl_context=tls_context(), network_backend=backend) as pool:
        hop = first
        for _ in range(call.request.max_redirects + 1):
            answer = _exchange(pool, hop, call)
            if isinstance(answer, OutboundResponse):
                return _checked_status(answer, hop)
            hop = answer
    where = f"{Origin.of(hop.url)}{hop.url.path}"
    detail = f"more than {call.request.max_redirects} redirects (the next one to {where})"
    raise hop.error("too_many_redirects", detail)


def _exchange(pool: httpcore.ConnectionPool, hop: _Hop, call: _Call) -> OutboundResponse | _Hop:
    """Send one request: its answer, or the next hop if it redirects."""
    refusal = call.policy.host_refusal(hop.host)
    if refusal is not None:
        raise hop.error("refused_host", refusal)
    timeout = call.request.timeout
    url = httpcore.URL(
        scheme=hop.url.raw_scheme, host=hop.url.raw_host, port=hop.url.port, target=hop.url.raw_path
    )
    extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
    try:
        with pool.stream(
            hop.method, url, headers=hop.wire_headers(), content=hop.body, extensions=extensions
        ) as answer:
            headers = _headers(answer.headers)
            if answer.status in REDIRECTS and "location" in headers:
                return hop.redirect(answer.status, headers["location"])
            body = _read(answer, headers, hop, call.request.max_bytes)
    except AddressRefused as exc:
        raise hop.error("refused_address", str(exc)) from None
    except httpcore.TimeoutException:
        raise hop.error("timeout", f"no complete answer within {timeout:g} s (timeout)") from None
    except httpcore.ConnectError as exc:
        raise hop.error("connect", f"could not connect ({exc})") from None
    except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
        raise hop.error("connect", f"the connection failed ({exc})") from None
    except httpcore.LocalProtocolError as exc:
        raise hop.error("bad_request", f"the request cannot be sent ({exc})") from None
    elapsed = time.monotonic() - call.started
    log.debug("call %s %s: HTTP %d in %.3f s", hop.method, hop.host, answer.status, elapsed)
    return OutboundResponse(answer.status, headers, body, hop.method, str(hop.url), elapsed)


def _checked_status(response: OutboundResponse, hop: _Hop) -> OutboundResponse:
    if 200 <= response.status < 300:
        return response
    try:
        phrase = f" {http.HTTPStatus(response.status).phrase}"
    except ValueError:
        phrase = ""
    start = " ".join(response.text.split())[:200]
    detail = f"answered HTTP {response.status}{phrase}" + (f": {start}" if start else "")
    raise hop.error("status", detail, status=response.status, response=response)


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _read(answer: httpcore.Response, headers: dict[str, str], hop: _Hop, limit: int) -> bytes:
    """The whole body, decompressed; CallError `too_large` as soon as it passes `limit`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(hop, limit)
    body = bytearray()
    for chunk in _decoded(answer.iter_stream(), headers.get("content-encoding", ""), limit, hop):
        body += chunk
        if len(body) > limit:
            raise _too_large(hop, limit)
    return bytes(body)


def _too_large(hop: _Hop, limit: int) -> CallError:
    return hop.error("too_large", f"the answer is longer than {limit:,} bytes (max_bytes)")


def _decoded(chunks: Iterator[bytes], encoding: str, limit: int, hop: _Hop) -> Iterator[bytes]:
    """gzip or deflate undone a bounded piece at a time, so a small bomb stays small."""
    if encoding.strip().lower() not in ("gzip", "x-gzip", "deflate"):
        yield from chunks
        return
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # | 32: a gzip or a zlib header
    try:
        for chunk in chunks:
            yield inflater.decompress(chunk, limit + 1)
            while inflater.unconsumed_tail:
                yield inflater.decompress(inflater.unconsumed_tail, limit + 1)
    except zlib.error as exc:
        raise hop.error("connect", f"the answer's {encoding} encoding is broken ({exc})") from None
