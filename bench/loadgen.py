"""A keep-alive HTTP/1.1 load generator measuring time to first byte, in one asyncio process.

`python -m bench.loadgen --port 8001 --path /echo --body '{...}' --connections 64 --duration 10`
prints one JSON object: requests/s, TTFB and full-response percentiles, errors, and the
client's own CPU use (if that nears 100% of one core, the client is the bottleneck).

Each connection sends a request, waits for the whole response, and sends the next one at
once (closed loop, no pipelining), as a busy Poe backend would over pooled connections.
Bounded twice: it stops after `--duration` seconds or `--max-requests` answers, whichever
comes first, and gives up `--grace` seconds after that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass, field
from typing import Any

perf = time.perf_counter


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class Stats:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    recording: bool = False
    stop: bool = False
    budget: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class ResponseParser:
    """Just enough HTTP/1.1 response parsing: status, Content-Length or chunked bodies."""

    __slots__ = ("buf", "status", "length", "chunked", "body_start", "pos", "body")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.status = 0
        self.length = -1
        self.chunked = False
        self.body_start = -1
        self.pos = 0
        self.body = bytearray()

    def feed(self, data: bytes) -> bool:
        """Add bytes; True once the response is complete."""
        self.buf += data
        if self.body_start < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            self.status = int(head[0].split(" ", 2)[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
            self.body_start = self.pos = end + 4
        if self.chunked:
            return self._chunks()
        if self.length >= 0:
            if len(self.buf) - self.body_start >= self.length:
                self.body = self.buf[self.body_start : self.body_start + self.length]
                return True
            return False
        raise ValueError("response without Content-Length or chunked encoding")

    def _chunks(self) -> bool:
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", self.pos)
            if eol < 0:
                return False
            size = int(bytes(buf[self.pos : eol]).split(b";", 1)[0], 16)
            if size == 0:
                return buf.find(b"\r\n", eol + 2) >= 0  # the final CRLF (no trailers expected)
            start, end = eol + 2, eol + 2 + size
            if len(buf) < end + 2:
                return False
            self.body += buf[start:end]
            self.pos = end + 2


class Connection(asyncio.Protocol):
    def __init__(self, request: bytes, expect: bytes, stats: Stats, done: asyncio.Future[None]):
        self.request, self.expect, self.stats, self.done = request, expect, stats, done
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.t0 = 0.0
        self.first = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        if self.stats.stop:
            self.finish()
            return
        self.parser = ResponseParser()
        self.first = 0.0
        self.t0 = perf()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = perf()
        if not self.first:
            self.first = now
        try:
            complete = self.parser.feed(data)
        except ValueError:
            self.stats.error("bad response")
            self.finish()
            return
        if not complete:
            return
        stats = self.stats
        if self.parser.status != 200:
            stats.error(f"status {self.parser.status}")
        elif self.expect not in self.parser.body:
            stats.error("unexpected body")
        elif stats.recording:
            stats.ttfb.append(self.first - self.t0)
            stats.total.append(now - self.t0)
            stats.budget -= 1
            if stats.budget <= 0:
                stats.stop = True
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if not self.stats.stop:
                self.stats.error("connection closed")
            self.done.set_result(None)

    def finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_load(
    *,
    host: str,
    port: int,
    path: str,
    body: bytes,
    expect: bytes,
    headers: dict[str, str],
    connections: int,
    duration: float,
    warmup: float,
    max_requests: int,
    grace: float = 10.0,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = Stats(budget=max_requests)
    request = build_request(host, port, path, body, headers)
    futures: list[asyncio.Future[None]] = []
    protocols: list[Connection] = []

    async def open_one() -> None:
        done: asyncio.Future[None] = loop.create_future()
        futures.append(done)
        try:
            _, protocol = await loop.create_connection(
                lambda: Connection(request, expect, stats, done), host, port
            )
            protocols.append(protocol)
        except OSError as exc:
            stats.error(f"connect: {exc.__class__.__name__}")
            done.set_result(None)

    await asyncio.gather(*(open_one() for _ in range(connections)))
    await asyncio.sleep(warmup)
    stats.recording = True
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), perf()
    deadline = wall0 + duration
    while perf() < deadline and not stats.stop and not all(f.done() for f in futures):
        await asyncio.sleep(0.05)  # stops early if every connection has failed
    stats.recording = False
    stats.stop = True
    wall = perf() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        await asyncio.wait_for(asyncio.gather(*futures), grace)
    except TimeoutError:
        stats.error("did not finish in the grace period")
    for protocol in protocols:
        protocol.finish()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    ttfb, total = sorted(stats.ttfb), sorted(stats.total)
    ms = 1000.0
    return {
        "requests": len(ttfb),
        "seconds": round(wall, 3),
        "rps": round(len(ttfb) / max(wall, 1e-9), 1),
        "ttfb_p50_ms": round(percentile(ttfb, 50) * ms, 3),
        "ttfb_p99_ms": round(percentile(ttfb, 99) * ms, 3),
        "ttfb_max_ms": round((ttfb[-1] if ttfb else float("nan")) * ms, 3),
        "total_p50_ms": round(percentile(total, 50) * ms, 3),
        "total_p99_ms": round(percentile(total, 99) * ms, 3),
        "errors": stats.errors,
        "client_cpu": round(cpu / max(wall, 1e-9), 3),
        "connections": connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--body", default="{}")
    parser.add_argument("--expect", default="", help="bytes every response body must contain")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark only talks to loopback")
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(
        run_load(
            host=args.host,
            port=args.port,
            path=args.path,
            body=args.body.encode(),
            expect=args.expect.encode(),
            headers=headers,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            max_requests=args.max_requests,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
