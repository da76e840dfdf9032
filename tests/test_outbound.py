"""engine.outbound: one call to an outside API, against local servers on 127.0.0.1 only.

An autouse guard replaces `socket.create_connection`: it records every address connected
to and refuses any that is not loopback, so even a broken check cannot reach out. Names
other than `localhost` resolve through `FakeDNS`, which also records what it was asked.
"""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jinja2
import jmespath
import pytest

from engine.outbound import (
    CallError,
    HostPolicy,
    Origin,
    OutboundRequest,
    OutboundResponse,
    fetch,
    quote_value,
    template_origin,
)
from engine.outbound import call as call_module

from .conftest import run_python

ORDER = {"order": {"id": "AB123456", "status": "shipped"}, "items": [{"sku": "X1"}]}
LOOPBACK = HostPolicy.from_entries(["127.0.0.1"])


class Handler(BaseHTTPRequestHandler):
    """Each path answers one way; `/echo...` answers with what it received."""

    protocol_version = "HTTP/1.1"
    server: Upstream

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.server.hits[url.path + "?" + url.query] += 1
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a timeout or a cap
            self._answer(url.path, query, body, self.server.hits[url.path + "?" + url.query])

    def _answer(self, path: str, query: dict[str, str], body: bytes, hit: int) -> None:
        if path == "/json":
            self._send(200, json.dumps(ORDER).encode())
        elif path.startswith("/echo"):
            seen = {"method": self.command, "path": path, "query": query, "body": body.decode()}
            self._send(200, json.dumps(seen | {"headers": dict(self.headers)}).encode())
        elif path == "/slow":
            time.sleep(float(query.get("s", "1")))
            self._send(200, b"{}")
        elif path == "/drip":
            self._drip()
        elif path == "/status":
            self._send(int(query["code"]), b'{"error": "boom"}')
        elif path == "/flaky":
            self._send(503 if hit == 1 else 200, b'{"try": %d}' % hit)
        elif path == "/big":
            self._send(200, b"x" * 5000)
        elif path == "/endless":
            self._endless()
        elif path == "/bomb":  # 3 MB that gzip makes 3 KB
            self._send(200, gzip.compress(b"0" * 3_000_000), {"Content-Encoding": "gzip"})
        elif path == "/gzip":
            self._send(200, gzip.compress(query["text"].encode()), {"Content-Encoding": "gzip"})
        elif path == "/redirect":
            self._send(int(query.get("code", "302")), b"", {"Location": query["to"]})
        elif path == "/loop":
            self._send(302, b"", {"Location": "/loop"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self) -> None:
        """A byte every 50 ms for 2 s: each read is quick, the whole answer is not."""
        self.send_response(200)
        self.send_header("Content-Length", "40")
        self.end_headers()
        for _ in range(40):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def _endless(self) -> None:
        """Chunks without Content-Length for as long as the client reads them."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n")


class Upstream(ThreadingHTTPServer):
    """The local API; `hits` counts requests by path and query."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: Counter[str] = Counter()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a TLS handshake the client refused, in the certificate test


def _serve(server: Upstream) -> Iterator[Upstream]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    yield from _serve(Upstream())


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address connected to; anything but loopback is refused before connecting."""
    made: list[str] = []
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(f"test guard: {address[0]} is not loopback")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setattr(call_module, "BACKOFF", 0.01)
    return made


class FakeDNS:
    """Answers names from a table, as socket.getaddrinfo would; records the names asked."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): found for name, found in answers.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in self.answers[host]
        ]


def _get(url: str, policy: HostPolicy = LOOPBACK, **options: Any) -> OutboundResponse:
    resolver = options.pop("resolver", None)
    return fetch(
        OutboundRequest(options.pop("method", "GET"), url, **options), policy, resolver=resolver
    )


def _error(call: Callable[[], object]) -> CallError:
    with pytest.raises(CallError) as caught:
        call()
    return caught.value


# --- answers ---------------------------------------------------------------------------


def test_json_answer_and_extraction(upstream: Upstream) -> None:
    response = _get(upstream.url("/json"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert jmespath.search("order.status", response.json()) == "shipped"
    assert jmespath.search("items[0].sku", response.json()) == "X1"
    assert response.url == upstream.url("/json")
    assert 0 < response.elapsed < 1


def test_query_headers_and_json_body_are_sent(upstream: Upstream) -> None:
    response = _get(
        upstream.url("/echo?a=1"),
        method="post",
        query={"q": "fish & chips", "lang": "pt-BR"},
        headers={"Authorization": "Bearer k", "X-Trace": "7"},
        body={"text": "olá", "n": [1, 2]},
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["query"] == {"a": "1", "q": "fish & chips", "lang": "pt-BR"}
    assert json.loads(seen["body"]) == {"text": "olá", "n": [1, 2]}
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["authorization"] == "Bearer k"
    assert headers["x-trace"] == "7"
    assert headers["content-type"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{upstream.port}"
    assert headers["accept"] == "application/json"


def test_gzip_answers_are_decompressed(upstream: Upstream) -> None:
    text = json.dumps(ORDER)
    assert _get(upstream.url("/gzip?text=" + urllib.parse.quote(text))).json() == ORDER


def test_empty_json_body_is_none_and_text_keeps_bad_bytes(upstream: Upstream) -> None:
    response = _get(upstream.url("/gzip?text="))
    assert response.json() is None
    assert OutboundResponse(200, {}, b"ol\xe1", "GET", "http://h/", 0).text == "ol\ufffd"
    latin = {"content-type": "text/plain; charset=latin-1"}
    assert OutboundResponse(200, latin, b"ol\xe1", "GET", "http://h/", 0).text == "olá"


def test_an_answer_that_is_not_json(upstream: Upstream) -> None:
    response = _get(upstream.url("/gzip?text=hello"))
    assert response.text == "hello"
    error = _error(response.json)
    assert error.kind == "bad_json"
    assert str(error) == (
        "GET 127.0.0.1: the answer is not JSON (Expecting value: line 1 column 1 (char 0); "
        "it starts with 'hello')"
    )
    deep = OutboundResponse(200, {}, b"[" * 100_000, "GET", "http://h/", 0)
    assert str(_error(deep.json)) == "GET h: the answer is not JSON (it is nested too deeply)"


# --- failures and retries ----------------------------------------------------------------


def test_timeout(upstream: Upstream) -> None:
    started = time.monotonic()
    error = _error(lambda: _get(upstream.url("/slow?s=1"), timeout=0.2, retries=0))
    assert error.kind == "timeout"
    assert str(error) == "GET 127.0.0.1: no complete answer within 0.2 s (timeout)"
    assert time.monotonic() - started < 0.6


def test_timeout_covers_the_whole_answer_not_each_read(upstream: Upstream) -> None:
    started = time.monotonic()
    error = _error(lambda: _get(upstream.url("/drip"), timeout=0.3, retries=0))
    assert error.kind == "timeout"
    assert 0.3 <= time.monotonic() - started < 0.6


def test_timeouts_are_retried_for_get(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/slow?s=0.5&n=1"), timeout=0.1, retries=2))
    assert str(error) == "GET 127.0.0.1: no complete answer within 0.1 s (timeout) (after 3 tries)"
    assert upstream.hits["/slow?s=0.5&n=1"] == 3


def test_status_500_is_an_error_with_the_answer_and_is_not_retried(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/status?code=500")))
    assert error.kind == "status"
    assert error.status == 500
    assert str(error) == 'GET 127.0.0.1: answered HTTP 500 Internal Server Error: {"error": "boom"}'
    assert error.response is not None and error.response.json() == {"error": "boom"}
    assert upstream.hits["/status?code=500"] == 1


def test_503_then_200_is_retried_for_get(upstream: Upstream) -> None:
    response = _get(upstream.url("/flaky?get"))
    assert response.json() == {"try": 2}
    assert upstream.hits["/flaky?get"] == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_503_is_never_retried_for_post_or_patch(upstream: Upstream, method: str) -> None:
    path = f"/flaky?{method}"
    error = _error(lambda: _get(upstream.url(path), method=method, body={}))
    assert str(error) == f'{method} 127.0.0.1: answered HTTP 503 Service Unavailable: {{"try": 1}}'
    assert upstream.hits[path] == 1


def test_retries_end_with_the_last_answer(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/status?code=503"), method="PUT", retries=1))
    assert str(error) == (
        'PUT 127.0.0.1: answered HTTP 503 Service Unavailable: {"error": "boom"} (after 2 tries)'
    )
    assert (error.tries, upstream.hits["/status?code=503"]) == (2, 2)


def test_a_refused_connection_is_retried_then_reported(upstream: Upstream) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
        error = _error(lambda: _get(url, retries=1))
    assert error.kind == "connect"
    assert str(error) == (
        "GET 127.0.0.1: could not connect ([Errno 111] Connection refused) (after 2 tries)"
    )


def test_an_unknown_name_is_a_connect_error(upstream: Upstream) -> None:
    policy = HostPolicy.from_entries(["api.example.com"])
    error = _error(lambda: _get("http://api.example.com/", policy, resolver=FakeDNS(), retries=0))
    assert str(error) == (
        "GET api.example.com: could not connect (cannot resolve api.example.com: "
        "[Errno -2] Name or service not known)"
    )


# --- the size cap ------------------------------------------------------------------------


def test_a_body_over_the_cap_by_its_content_length(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/big"), max_bytes=1000))
    assert error.kind == "too_large"
    assert str(error) == "GET 127.0.0.1: the answer is longer than 1,000 bytes (max_bytes)"
    assert len(_get(upstream.url("/big"), max_bytes=5000).body) == 5000


def test_a_chunked_body_without_length_is_cut_at_the_cap(upstream: Upstream) -> None:
    started = time.monotonic()
    error = _error(lambda: _get(upstream.url("/endless"), max_bytes=100_000))
    assert str(error) == "GET 127.0.0.1: the answer is longer than 100,000 bytes (max_bytes)"
    assert time.monotonic() - started < 1


def test_the_cap_counts_decompressed_bytes(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/bomb")))
    assert str(error) == "GET 127.0.0.1: the answer is longer than 1,048,576 bytes (max_bytes)"


# --- hosts and addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "refusal"),
    [
        (["10.0.0.1"], "10.0.0.1, a private address, called only when listed (add 10.0.0.1"),
        (
            ["169.254.169.254"],
            "169.254.169.254, a link-local address, called only when listed (add 169.254.169.254",
        ),
        (["::1"], "::1, a loopback address, called only when listed (add ::1"),
        (
            ["::ffff:127.0.0.1"],
            "::ffff:127.0.0.1 (127.0.0.1), a loopback address, called only "
            "when listed (add 127.0.0.1",
        ),
        (
            ["64:ff9b::a9fe:a9fe"],
            "64:ff9b::a9fe:a9fe (169.254.169.254), a link-local address, "
            "called only when listed (add 169.254.169.254",
        ),
        (["0.0.0.0"], "0.0.0.0, an unspecified address, called only when listed (add 0.0.0.0"),
        (["224.0.0.1"], "224.0.0.1, a multicast address, called only when listed (add 224.0.0.1"),
        (
            ["100.64.0.1"],
            "100.64.0.1, a non-public address, called only when listed (add 100.64.0.1",
        ),
        (
            ["8.8.8.8", "10.1.2.3"],
            "10.1.2.3, a private address, called only when listed (add 10.1.2.3",
        ),
    ],
)
def test_private_answers_are_refused_without_connecting(
    answers: list[str], refusal: str, connections: list[str]
) -> None:
    policy = HostPolicy.from_entries(["api.example.com"])
    error = _error(
        lambda: _get("http://api.example.com/", policy, resolver=FakeDNS(api_example_com=answers))
    )
    assert error.kind == "refused_address"
    assert str(error) == (
        f"GET api.example.com: 'api.example.com' resolves to {refusal} to allow_hosts if you "
        "trust it)"
    )
    assert connections == []


def test_the_guard_keeps_tests_on_loopback(connections: list[str]) -> None:
    with pytest.raises(OSError, match="^test guard: 10.0.0.1 is not loopback$"):
        socket.create_connection(("10.0.0.1", 80))
    assert connections == ["10.0.0.1"]


def test_public_answers_are_connected_to_as_resolved(connections: list[str]) -> None:
    policy = HostPolicy.from_entries(["api.example.com"])
    dns = FakeDNS(api_example_com=["2001:4860:4860::8888", "64:ff9b::808:808", "8.8.8.8"])
    error = _error(lambda: _get("http://api.example.com/", policy, resolver=dns, retries=0))
    assert error.kind == "connect"  # the guard refused each one, in the resolver's order
    assert connections == ["2001:4860:4860::8888", "64:ff9b::808:808", "8.8.8.8"]


def test_a_listed_address_lets_a_name_reach_it_with_its_own_host_header(
    upstream: Upstream, connections: list[str]
) -> None:
    policy = HostPolicy.from_entries(["api.example.com", "127.0.0.1"])
    dns = FakeDNS(api_example_com=["127.0.0.1"])
    seen = _get(upstream.url("/echo", "api.example.com"), policy, resolver=dns).json()
    assert seen["headers"]["Host"] == f"api.example.com:{upstream.port}"
    assert (dns.asked, connections) == (["api.example.com"], ["127.0.0.1"])


def test_listed_localhost_reaches_loopback_through_the_real_resolver(upstream: Upstream) -> None:
    policy = HostPolicy.from_entries(["localhost"])
    assert _get(upstream.url("/json", "localhost"), policy).json() == ORDER


def test_listed_localhost_does_not_open_loopback_to_other_names(connections: list[str]) -> None:
    policy = HostPolicy.from_entries(["localhost", "api.example.com"])
    dns = FakeDNS(api_example_com=["127.0.0.1"])
    error = _error(lambda: _get("http://api.example.com/", policy, resolver=dns))
    assert error.kind == "refused_address"
    assert connections == []


@pytest.mark.parametrize(
    ("host", "refusal"),
    [
        ("evil.example.com", "'evil.example.com' is not in allow_hosts (add it to call it)"),
        ("localhost", "'localhost' is not in allow_hosts (add it to call it)"),
        ("10.0.0.1", "10.0.0.1 is not in allow_hosts (add it to call it)"),
        ("[::1]", "::1 is not in allow_hosts (add it to call it)"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is not in allow_hosts (add it to call it)"),
        (
            "2130706433",
            "'2130706433' is an IPv4 address in an unusual spelling; write it as four "
            "decimal numbers, like 127.0.0.1, and list it in allow_hosts",
        ),
        (
            "0x7f.1",
            "'0x7f.1' is an IPv4 address in an unusual spelling; write it as four "
            "decimal numbers, like 127.0.0.1, and list it in allow_hosts",
        ),
        (
            "127.1",
            "'127.1' is an IPv4 address in an unusual spelling; write it as four "
            "decimal numbers, like 127.0.0.1, and list it in allow_hosts",
        ),
        (
            "017700000001",
            "'017700000001' is an IPv4 address in an unusual spelling; write it "
            "as four decimal numbers, like 127.0.0.1, and list it in allow_hosts",
        ),
    ],
)
def test_hosts_not_listed_are_refused_before_resolving(
    host: str, refusal: str, connections: list[str]
) -> None:
    dns = FakeDNS()
    error = _error(lambda: _get(f"http://{host}:8080/x", LOOPBACK, resolver=dns))
    assert error.kind == "refused_host"
    assert str(error) == f"GET {host.strip('[]')}: {refusal}"
    assert (dns.asked, connections) == ([], [])


def test_wildcards_match_names_under_a_domain_only() -> None:
    policy = HostPolicy.from_entries(["*.Example.com", "API.other.org.", "[::1]"])
    assert policy.host_refusal("a.example.com") is None
    assert policy.host_refusal("a.b.example.com") is None
    assert policy.host_refusal("api.other.org") is None
    assert policy.host_refusal("::1") is None
    assert (
        policy.host_refusal("example.com")
        == "'example.com' is not in allow_hosts (add it to call it)"
    )
    assert policy.host_refusal("badexample.com") is not None
    assert policy.host_refusal("www.other.org") is not None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "https://api.example.com",
            "'https://api.example.com' is not a host name; write a name "
            "like api.example.com, a wildcard like *.example.com or an address like 127.0.0.1 "
            "(no scheme, port or path)",
        ),
        (
            "api.example.com:8080",
            "'api.example.com:8080' is not a host name; write a name like "
            "api.example.com, a wildcard like *.example.com or an address like 127.0.0.1 (no "
            "scheme, port or path)",
        ),
        (
            "*",
            "'*' is not a host name; write a name like api.example.com, a wildcard like "
            "*.example.com or an address like 127.0.0.1 (no scheme, port or path)",
        ),
        (
            "*.com",
            "'*.com' matches every name under a top-level domain; name the site, like "
            "*.example.com",
        ),
        (
            "127.1",
            "'127.1' is an IPv4 address in an unusual spelling; write it as four decimal "
            "numbers, like 127.0.0.1",
        ),
    ],
)
def test_bad_allow_hosts_entries(entry: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        HostPolicy.from_entries(["ok.example.com", entry])
    assert str(caught.value) == f"allow_hosts: {message}"


# --- redirects ---------------------------------------------------------------------------


def test_a_redirect_to_a_refused_address(upstream: Upstream, connections: list[str]) -> None:
    policy = HostPolicy.from_entries(["127.0.0.1", "internal.example.com"])
    dns = FakeDNS(internal_example_com=["10.0.0.5"])
    to = urllib.parse.quote("http://internal.example.com/secrets")
    error = _error(lambda: _get(upstream.url(f"/redirect?to={to}"), policy, resolver=dns))
    assert error.kind == "refused_address"
    assert str(error) == (
        "GET internal.example.com: 'internal.example.com' resolves to 10.0.0.5, a private "
        "address, called only when listed (add 10.0.0.5 to allow_hosts if you trust it) "
        f"(redirected from http://127.0.0.1:{upstream.port})"
    )
    assert connections == ["127.0.0.1"]


@pytest.mark.parametrize(
    "to",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/json",
        "http://evil.example.com/",
    ],
)
def test_a_redirect_to_a_host_not_listed(
    upstream: Upstream, to: str, connections: list[str]
) -> None:
    target = to.format(port=upstream.port)
    error = _error(lambda: _get(upstream.url("/redirect?to=" + urllib.parse.quote(target))))
    assert error.kind == "refused_host"
    assert str(error).endswith(f"(redirected from http://127.0.0.1:{upstream.port})")
    assert connections == ["127.0.0.1"]


def test_a_redirect_to_an_allowed_host_is_followed_without_the_headers(upstream: Upstream) -> None:
    policy = HostPolicy.from_entries(["127.0.0.1", "api.example.com"])
    dns = FakeDNS(api_example_com=["127.0.0.1"])
    to = urllib.parse.quote(upstream.url("/echo", "api.example.com"))
    response = _get(
        upstream.url(f"/redirect?to={to}"), policy, resolver=dns, headers={"X-Key": "secret"}
    )
    seen = response.json()
    assert seen["headers"]["Host"] == f"api.example.com:{upstream.port}"
    assert "X-Key" not in seen["headers"]
    assert response.url == upstream.url("/echo", "api.example.com")


def test_a_redirect_on_the_same_host_keeps_the_headers(upstream: Upstream) -> None:
    seen = _get(upstream.url("/redirect?to=/echo"), headers={"X-Key": "secret"}).json()
    assert seen["headers"]["X-Key"] == "secret"


def test_a_redirect_to_another_port_of_the_same_host_drops_the_headers(
    upstream: Upstream,
) -> None:
    """Another port may be another program: the creator's keys stay with their origin."""
    for other in _serve(Upstream()):
        to = urllib.parse.quote(other.url("/echo"))
        seen = _get(upstream.url(f"/redirect?to={to}"), headers={"X-Key": "secret"}).json()
        assert "X-Key" not in seen["headers"]


@pytest.mark.parametrize(
    ("code", "method", "body"), [(303, "GET", ""), (302, "GET", ""), (307, "POST", '{"a":1}')]
)
def test_redirect_methods(upstream: Upstream, code: int, method: str, body: str) -> None:
    url = upstream.url(f"/redirect?to=/echo&code={code}")
    seen = _get(url, method="POST", body={"a": 1}).json()
    assert (seen["method"], seen["body"].replace(" ", "")) == (method, body)


def test_too_many_redirects(upstream: Upstream) -> None:
    error = _error(lambda: _get(upstream.url("/loop")))
    assert error.kind == "too_many_redirects"
    assert str(error) == (
        f"GET 127.0.0.1: more than 3 redirects (the next one to http://127.0.0.1:{upstream.port}"
        f"/loop) (redirected from http://127.0.0.1:{upstream.port})"
    )
    assert upstream.hits["/loop?"] >= 4
    error = _error(lambda: _get(upstream.url("/redirect?to=/json"), max_redirects=0))
    assert error.kind == "too_many_redirects"


# --- URLs a message cannot move ----------------------------------------------------------

INJECTIONS = [
    "x@evil.com/",
    "evil.com#",
    "../",
    "..",
    ".",
    "%2F..%2Fadmin",
    "\\@evil.com",
    "//evil.com/x",
    "?admin=1#",
    "@evil.com:80",
    "a b&c=d",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_a_message_cannot_change_the_host_or_leave_its_place(
    upstream: Upstream, value: str, connections: list[str]
) -> None:
    template = f"http://127.0.0.1:{upstream.port}/echo/{{{{ v }}}}?q={{{{ v }}}}"
    url = jinja2.Environment(finalize=quote_value).from_string(template).render(v=value)
    dns = FakeDNS()
    request = OutboundRequest("GET", url, origin=template_origin(template))
    seen = fetch(request, LOOPBACK, resolver=dns).json()
    assert seen["headers"]["Host"] == f"127.0.0.1:{upstream.port}"
    assert seen["path"] == "/echo/" + quote_value(value)
    assert seen["query"] == {"q": value}
    assert (dns.asked, connections) == ([], ["127.0.0.1"])


@pytest.mark.parametrize(
    ("url", "moved"),
    [
        ("http://127.0.0.1:8080@evil.com/orders/1", "http://evil.com"),
        ("http://evil.com/orders/1", "http://evil.com"),
        ("https://127.0.0.1:8080/orders/1", "https://127.0.0.1:8080"),
        ("http://127.0.0.1:9090/orders/1", "http://127.0.0.1:9090"),
    ],
)
def test_a_rendered_url_whose_origin_moved_is_refused(
    url: str, moved: str, connections: list[str]
) -> None:
    request = OutboundRequest(
        "GET", url, origin=template_origin("http://127.0.0.1:8080/o/{{ id }}")
    )
    error = _error(lambda: fetch(request, LOOPBACK))
    assert error.kind == "refused_host"
    assert str(error).endswith(
        f": the URL calls {moved} once its values are filled in, but it is written for "
        "http://127.0.0.1:8080; values may fill only its path and query"
    )
    assert connections == []


@pytest.mark.parametrize(
    ("template", "origin"),
    [
        ("https://API.example.com/orders/{{ id }}", Origin("https", "api.example.com", 443)),
        ("http://127.0.0.1:8080?q={{ message }}", Origin("http", "127.0.0.1", 8080)),
        ("http://[::1]/#{{ x }}", Origin("http", "::1", 80)),
        ("https://api.example.com", Origin("https", "api.example.com", 443)),
    ],
)
def test_template_origin(template: str, origin: Origin) -> None:
    assert template_origin(template) == origin


HOST_WRITTEN = (
    "write the URL's scheme and host without templates, ending the host with '/', like "
    "https://api.example.com/orders/{{ vars.order_id }}"
)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://{{ site }}/x", HOST_WRITTEN),
        ("https://api.example.com{{ path }}", HOST_WRITTEN),
        ("https://api.example.com:{{ port }}/", HOST_WRITTEN),
        ("https://api.example.com\\{{ x }}", HOST_WRITTEN),
        ("{{ base }}/orders", HOST_WRITTEN),
        ("api.example.com/orders", HOST_WRITTEN),
        (
            "ftp://api.example.com/{{ f }}",
            "the URL must start with http:// or https://, not ftp://",
        ),
        (
            "https://u:p@api.example.com/",
            "the URL has a user name or password; send credentials in a header",
        ),
        (
            "https://api.example.com\\@evil.com/",
            "the URL has a user name or password; send credentials in a header",
        ),
    ],
)
def test_template_origin_refuses_templates_that_could_move_it(template: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        template_origin(template)
    assert str(caught.value) == message


def test_quote_value() -> None:
    assert quote_value("AB 12/3?#&=@\\%") == "AB%2012%2F3%3F%23%26%3D%40%5C%25"
    assert quote_value("..") == "%2E%2E"
    assert quote_value("a.b") == "a.b"
    assert quote_value(42) == "42"
    assert quote_value("") == ""


# --- requests that cannot be sent --------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"url": "ftp://127.0.0.1/"},
            "GET 127.0.0.1: the URL must start with http:// or https:// and name a host",
        ),
        (
            {"url": "http://u:p@127.0.0.1/"},
            "GET 127.0.0.1: the URL has a user name or password; send credentials in a header",
        ),
        (
            {"method": "TRACE"},
            "TRACE 127.0.0.1: unknown method; use one of DELETE, GET, HEAD, "
            "OPTIONS, PATCH, POST, PUT",
        ),
        (
            {"headers": {"X-Key": "secret\r\nX-Admin: 1"}},
            "GET 127.0.0.1: the X-Key header's value has a line break or control character",
        ),
        ({"headers": {"Host": "evil.com"}}, "GET 127.0.0.1: the Host header is set by the engine"),
        ({"headers": {"Bad Name": "1"}}, "GET 127.0.0.1: 'Bad Name' is not a valid header name"),
        (
            {"body": {"n": float("nan")}},
            "GET 127.0.0.1: the body cannot be sent as JSON (Out of "
            "range float values are not JSON compliant)",
        ),
        (
            {"url": "http://127.0.0.1:99999/"},
            "GET 127.0.0.1: the URL's port must be between 1 and 65535",
        ),
        (
            {"url": "http://a\x00b/"},
            "GET: the URL is not valid (Invalid non-printable ASCII "
            "character in URL, '\\x00' at position 8.)",
        ),
    ],
)
def test_requests_that_cannot_be_sent(
    options: dict[str, Any], message: str, connections: list[str]
) -> None:
    request = OutboundRequest(
        options.pop("method", "GET"), options.pop("url", "http://127.0.0.1/"), **options
    )
    error = _error(lambda: fetch(request, LOOPBACK))
    assert error.kind == "bad_request"
    assert str(error) == message
    assert connections == []


def test_out_of_range_options_are_a_wiring_mistake() -> None:
    with pytest.raises(ValueError, match="^timeout must be above 0, got 0$"):
        OutboundRequest("GET", "http://127.0.0.1/", timeout=0)


# --- TLS, proxies, logs, gevent ----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, Path]]:
    """The local API over TLS, with a certificate for api.example.com only."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=api.example.com",
            "-addext",
            "subjectAltName=DNS:api.example.com",
        ],
        check=True,
        capture_output=True,
    )
    server = Upstream()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    for served in _serve(server):
        yield served, cert


def test_tls_checks_the_certificate_against_the_url_host_not_the_address(
    tls_upstream: tuple[Upstream, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_upstream
    monkeypatch.setattr(call_module, "tls_context", lambda: ssl.create_default_context(cafile=cert))
    policy = HostPolicy.from_entries(["api.example.com", "other.example.com", "127.0.0.1"])
    dns = FakeDNS(api_example_com=["127.0.0.1"], other_example_com=["127.0.0.1"])
    url = f"https://api.example.com:{server.port}/json"
    assert _get(url, policy, resolver=dns).json() == ORDER
    other = f"https://other.example.com:{server.port}/json"
    error = _error(lambda: _get(other, policy, resolver=dns, retries=0))
    assert error.kind == "connect"
    assert "certificate verify failed: Hostname mismatch" in str(error)


def test_proxy_variables_are_ignored(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert _get(upstream.url("/json")).json() == ORDER


def test_secrets_in_headers_and_query_are_never_logged(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = upstream.url("/status?code=401")
    error = _error(
        lambda: _get(url, query={"key": "QSECRET"}, headers={"Authorization": "HSECRET"})
    )
    assert "SECRET" not in str(error)
    assert caplog.records
    assert "SECRET" not in caplog.text


GEVENT_PROBE = """
from gevent import monkey
monkey.patch_all()
import sys, time, gevent
from engine.outbound import HostPolicy, OutboundRequest, fetch
policy = HostPolicy.from_entries(["localhost"])
url = f"http://localhost:{sys.argv[1]}/slow?s=0.4&g="
started = time.monotonic()
jobs = [gevent.spawn(fetch, OutboundRequest("GET", url + str(n)), policy) for n in range(5)]
gevent.joinall(jobs, raise_error=True)
print(round(time.monotonic() - started, 2))
"""


def test_calls_are_cooperative_under_gevent(upstream: Upstream) -> None:
    result = run_python(GEVENT_PROBE, str(upstream.port))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1.2  # five 0.4 s answers at once, not one after another
