"""Model streaming: what relaying an OpenAI-compatible model costs, our engine vs fastapi_poe.

`python -m bench.llm_streams [--streams 2000]` starts `bench.upstream` (a local
OpenAI-compatible model: 20 chunks 50 ms apart, each chunk's text carrying the
time.monotonic_ns() it was written) and, in turn, each relay:

  llm-engine   our engine (engine.server.Server, our gunicorn options) serving a bot file with
               `model: {provider: openai, name: bench, base_url: http://127.0.0.1:<upstream>/v1,
               api_key: ${BENCH_KEY}}` and an `llm: {}` route
  llm-fastapi  a minimal fastapi_poe bot: openai.AsyncOpenAI(base_url=...), stream=True, one
               PartialResponse per chunk, on uvicorn (bench/serve.py: fastapi_relay_app)

and measures, from one asyncio client (one connection per conversation):

  latency  per relayed chunk: client arrival time minus the upstream's send time (one
           clock), one conversation at a time and 20 at a time; also straight from the
           upstream with no relay, the floor of the measurement (1 worker only)
  slow     a model that waits 3 s before its first byte: when the first byte (for the engine
           the `meta` event) and the first text reach the client (1 worker only)
  burst    N conversations (2,000) opened at once: completed, errors, time to first byte,
           total time, chunk latency, CPU

1 worker: the relay on core 0, upstream and client on core 1 (both relays the same).
2 workers: the production layout, relay processes on both cores, upstream and client still
pinned to core 1; plus the engine with `max_accept` forced (`--max-accept`, a bench-only
patch: 100 if engine/worker.py leaves gunicorn's 1 in place, else 1; see bench/README.md).
Prints Markdown tables, then one JSON object (the last line).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loadgen import ResponseParser, percentile
from .procs import HOST, Server, free_port, pinned, start_server, stop_server
from .serve import ACCESS_KEY, engine_sets_max_accept
from .streams import raise_fd_limit

SERVER_CPU, CLIENT_CPU = "0", 1
CHUNKS, INTERVAL = 20, 0.05  # bench/upstream.py's defaults
MARK = re.compile(rb"\[t=(\d+)\]")
now_ns = time.monotonic_ns


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    path: str
    kind: str  # "poe" (an SSE answer in Poe's protocol) or "openai" (the upstream itself)


ENGINE = Target("engine", "our engine (gunicorn + gevent, `llm: {}` route)", "/relay", "poe")
FASTAPI = Target("fastapi", "fastapi_poe + AsyncOpenAI (uvicorn)", "/", "poe")
DIRECT = Target("direct", "no relay: client reads the upstream itself", "/v1/chat/completions", "")


def request_bytes(target: Target, port: int, text: str) -> bytes:
    body: dict[str, Any]
    if target.kind == "poe":
        body = {
            "version": "1.2",
            "type": "query",
            "query": [{"role": "user", "content": text, "content_type": "text/markdown"}],
            "user_id": "u-bench",
            "conversation_id": "c-bench",
            "message_id": "m-bench",
        }
        auth = f"Authorization: Bearer {ACCESS_KEY}\r\n"
    else:
        body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": text}]}
        auth = ""
    data = json.dumps(body).encode()
    return (
        f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{auth}"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


@dataclass
class Result:
    start: int = 0
    sent: int = 0
    first: int = 0
    meta: int = 0
    first_text: int = 0
    end: int = 0
    latencies: list[int] = field(default_factory=list)
    error: str = ""


class StreamClient(asyncio.Protocol):
    """One conversation: send the query, timestamp every chunk marker as it arrives."""

    def __init__(self, request: bytes, kind: str, chunks: int, done: asyncio.Future[None]):
        self.request, self.kind, self.chunks, self.done = request, kind, chunks, done
        self.result = Result(start=now_ns())
        self.parser = ResponseParser()
        self.scan = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.result.sent = now_ns()
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = now_ns()
        result = self.result
        if not result.first:
            result.first = now
        try:
            complete = self.parser.feed(data)
        except ValueError:
            self.finish("bad response")
            return
        raw = self.parser.buf
        for match in MARK.finditer(raw, self.scan):
            result.latencies.append(now - int(match.group(1)))
            self.scan = match.end()
            if not result.first_text:
                result.first_text = now
        if not result.meta and not result.first_text and b"event: meta" in raw:
            result.meta = now
        if complete:
            result.end = now
            self.finish(self.check())

    def check(self) -> str:
        body = bytes(self.parser.body)
        if self.parser.status != 200:
            return f"status {self.parser.status}"
        if len(self.result.latencies) != self.chunks:
            return f"{len(self.result.latencies)} of {self.chunks} chunks"
        if self.kind == "poe" and (b"event: done" not in body or b"event: error" in body):
            return "no done event" if b"event: error" not in body else "error event"
        if self.kind != "poe" and b"data: [DONE]" not in body:
            return "no [DONE]"
        return ""

    def finish(self, error: str) -> None:
        if self.done.done():
            return
        self.result.error = error
        if self.transport is not None:
            self.transport.close()
        self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(f"closed early: {exc.__class__.__name__ if exc else 'EOF'}")


async def one(port: int, request: bytes, kind: str, chunks: int, timeout: float) -> Result:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    client = StreamClient(request, kind, chunks, done)
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: client, HOST, port), min(timeout, 30.0)
        )
        await asyncio.wait_for(done, timeout)
    except (OSError, TimeoutError) as exc:
        client.finish(f"{exc.__class__.__name__}")
    return client.result


async def run_streams(
    port: int,
    request: bytes,
    kind: str,
    streams: int,
    concurrency: int,
    chunks: int,
    timeout: float,
    spread: float = 0.0,
) -> list[Result]:
    """`streams` conversations, `concurrency` at a time; the first wave's starts spread evenly
    over `spread` seconds (then each new one takes a finished one's place, keeping the phase),
    so chunks of different conversations do not all arrive in the same millisecond."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(index: int) -> Result:
        if spread and index < concurrency:
            await asyncio.sleep(index * spread / concurrency)
        async with gate:
            return await one(port, request, kind, chunks, timeout)

    return await asyncio.gather(*(gated(i) for i in range(streams)))


def _get_json(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of every live process in a session: a server's tree."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after "pid (comm)": state ppid pgrp session ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def session_pids(sid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    count += 1
            except OSError:
                continue
    return count


def wait_idle(server: Server, limit: float = 15.0) -> None:
    """Wait until the server's processes stop using CPU (workers imported and warmed)."""
    deadline = time.monotonic() + limit
    last = session_cpu(server.process.pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        cpu = session_cpu(server.process.pid)
        if cpu - last < 0.03:
            return
        last = cpu


def summarise(results: list[Result], wall: float) -> dict[str, Any]:
    ok = [r for r in results if not r.error]
    ms = 1e-6

    def pcts(values: list[float], name: str, digits: int = 1) -> dict[str, float]:
        values.sort()
        return {
            f"{name}_p50": round(percentile(values, 50), digits),
            f"{name}_p99": round(percentile(values, 99), digits),
            f"{name}_max": round(values[-1] if values else float("nan"), digits),
        }

    first_end = min((r.end for r in ok), default=0)
    latencies = [lat * 1e-3 for r in ok for lat in r.latencies]  # µs
    out: dict[str, Any] = {
        "streams": len(results),
        "completed": len(ok),
        "errors": dict(Counter(r.error for r in results if r.error)),
        "open_at_once": sum(1 for r in results if r.start < first_end),
        "chunks": len(latencies),
        **pcts([(r.first - r.sent) * ms for r in ok], "ttfb_ms"),
        **pcts([(r.first_text - r.sent) * ms for r in ok], "first_text_ms"),
        **pcts([(r.end - r.sent) * ms for r in ok], "total_ms"),
        **pcts(latencies, "chunk_us", 0),
        "wall_s": round(wall, 2),
    }
    metas = [(r.meta - r.sent) * ms for r in ok if r.meta]
    if metas:
        out.update(pcts(metas, "meta_ms"))
    return out


class AcceptQueues:
    """Samples the kernel's accept queue of the server's listening sockets (one per worker
    with reuse_port): connections the client has opened that no worker has accepted yet.

    /proc/net/tcp lists listening sockets first, and for them `rx_queue` is the accept
    queue's length; reading stops at the first socket that is not listening, so a sample
    costs a few hundred microseconds even with thousands of connections open.
    """

    def __init__(self, port: int, every: float = 0.1) -> None:
        self.port, self.every = port, every
        self.most = 0
        self.last_waiting = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()
        self._thread.start()

    def _sample(self) -> int:
        waiting = 0
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    break
                if int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                    waiting += int(fields[4].split(":")[1], 16)
        return waiting

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            waiting = self._sample()
            self.most = max(self.most, waiting)
            if waiting:
                self.last_waiting = time.perf_counter() - self._start

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"accept_queue_most": self.most, "accept_queue_until_s": round(self.last_waiting, 2)}


def measure(
    target: Target,
    port: int,
    upstream_port: int,
    server: Server | None,
    *,
    text: str,
    streams: int,
    concurrency: int,
    timeout: float,
    spread: float = 0.0,
    chunks: int = CHUNKS,
) -> dict[str, Any]:
    """One phase: the client's, the upstream's and the relay's CPU around a batch of streams."""
    request = request_bytes(target, port, text)
    up0 = _get_json(upstream_port, "/stats/reset")
    server0 = session_cpu(server.process.pid) if server else 0.0
    queues = AcceptQueues(port) if server else None
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    results = asyncio.run(
        run_streams(port, request, target.kind, streams, concurrency, chunks, timeout, spread)
    )
    wall = time.perf_counter() - wall0
    accept = queues.stop() if queues else {}
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server1 = session_cpu(server.process.pid) if server else 0.0
    up1 = _get_json(upstream_port, "/stats")
    row = summarise(results, wall)
    client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    row |= {
        "client_cpu": round(client_cpu / wall, 3),
        "upstream_cpu": round((up1["cpu_s"] - up0["cpu_s"]) / wall, 3),
        "server_cpu": round((server1 - server0) / wall, 3),
        "upstream_started": up1["started"] - up0["started"],
        "upstream_cut_off": up1["cut_off"] - up0["cut_off"],
        "upstream_max_open": up1["max_open"],
        **accept,
    }
    return row


def run_target(
    target: Target,
    workers: int,
    upstream_port: int,
    args: argparse.Namespace,
    max_accept: int | None = None,
) -> dict[str, Any]:
    name = "llm-engine" if target is ENGINE else "llm-fastapi"
    cpus = SERVER_CPU if workers == 1 else "0,1"  # explicit: this process is pinned
    extra = ["--profile", str(args.profile)] if args.profile and target is ENGINE else []
    if max_accept:
        extra += ["--max-accept", str(max_accept)]
    if args.pool_limit:
        extra += ["--pool-limit", str(args.pool_limit)]
    server = start_server(
        [name, "--workers", str(workers), "--upstream-port", str(upstream_port), *extra],
        free_port(),
        cpus=cpus,
        log_name=f"{name}-{workers}w",
    )
    rows: dict[str, Any] = {"processes": session_pids(server.process.pid)}
    if max_accept:
        rows["max_accept"] = max_accept
    try:
        # Warm-up: imports (openai on the first call), connection pools, every worker.
        measure(
            target, server.port, upstream_port, server, text="warm chunks=2", chunks=2,
            streams=40 * workers, concurrency=20 * workers, timeout=30,
        )  # fmt: skip
        wait_idle(server)
        if workers == 1 and not args.burst_only:
            rows |= latency_rows(target, server.port, upstream_port, server)
            rows["slow"] = measure(
                target, server.port, upstream_port, server,
                text="Tell me a story. first_delay=3", streams=20, concurrency=20, timeout=30,
            )  # fmt: skip
        if workers == 1 and args.pool_check:
            wait_idle(server)
            rows["pool"] = measure(
                target, server.port, upstream_port, server,
                text="Tell me a story. first_delay=3 chunks=2", chunks=2,
                streams=args.streams, concurrency=args.streams, timeout=args.timeout,
            )  # fmt: skip
        wait_idle(server)
        rows["burst"] = measure(
            target, server.port, upstream_port, server, text="Tell me a story.",
            streams=args.streams, concurrency=args.streams, timeout=args.timeout,
        )  # fmt: skip
    finally:
        stop_server(server)
    rows["log_tail"] = server.log.read_text(errors="replace")[-1500:]
    return rows


def latency_rows(
    target: Target, port: int, upstream_port: int, server: Server | None
) -> dict[str, Any]:
    """One conversation at a time (3 in turn), then 40 conversations 20 at a time."""
    text = "Tell me a story."
    return {
        "single": measure(
            target, port, upstream_port, server, text=text, streams=3, concurrency=1, timeout=30
        ),
        "latency": measure(
            target,
            port,
            upstream_port,
            server,
            text=text,
            streams=40,
            concurrency=20,
            timeout=30,
            spread=INTERVAL,
        ),  # fmt: skip
    }


def cpu_per_chunk(row: dict[str, Any]) -> float:
    """The relay's CPU (all its processes) per relayed chunk, in µs, request costs included."""
    return float(row["server_cpu"] * row["wall_s"] / max(row["chunks"], 1) * 1e6)


RELAYS = [
    ("engine", 1, ENGINE.label),
    ("fastapi", 1, FASTAPI.label),
    ("engine", 2, ENGINE.label + ", production config"),
    ("engine-accept", 2, ENGINE.label + ", max_accept forced to {max_accept} (bench-only)"),
    ("fastapi", 2, FASTAPI.label),
]


def _accepting(row: dict[str, Any]) -> str:
    if not row.get("accept_queue_most"):
        return "0"
    return f"{row['accept_queue_most']:,} (until {row['accept_queue_until_s']:g} s)"


def tables(result: dict[str, Any]) -> str:
    """The Markdown tables of one run (bench/README.md quotes them)."""
    e1, f1 = result["engine-1w"], result["fastapi-1w"]
    lines = [
        "Latency added per relayed chunk = client arrival − upstream send time of that chunk "
        "(one clock). Relay on core 0 (1 worker), upstream and client on core 1. *1 at a "
        "time*: 3 conversations in turn; *20 at a time*: 40 conversations, starts spread "
        "over 50 ms.",
        "",
        "| relay | load | chunks | chunk p50 ms | chunk p99 ms | chunk max ms | TTFB p50 ms "
        "| total p50 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in (
        (DIRECT.label, result["direct"]),
        (ENGINE.label, e1),
        (FASTAPI.label, f1),
    ):
        for key, load in (("single", "1 at a time"), ("latency", "20 at a time")):
            row = rows[key]
            lines.append(
                f"| {label} | {load} | {row['chunks']:,} | {row['chunk_us_p50'] / 1000:.2f} "
                f"| {row['chunk_us_p99'] / 1000:.2f} | {row['chunk_us_max'] / 1000:.2f} "
                f"| {row['ttfb_ms_p50']:.1f} | {row['total_ms_p50']:.0f} "
                f"| {sum(row['errors'].values())} |"
            )
    lines += [
        "",
        "Slow model (waits 3 s before its first byte), 20 conversations at once, 1 worker:",
        "",
        "| relay | first byte p50 / p99 ms | `meta` p50 / p99 ms | first text p50 / p99 ms "
        "| errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in ((ENGINE.label, e1["slow"]), (FASTAPI.label, f1["slow"])):
        meta = "none sent"
        if "meta_ms_p50" in row:
            meta = f"{row['meta_ms_p50']:.1f} / {row['meta_ms_p99']:.1f}"
        lines.append(
            f"| {label} | {row['ttfb_ms_p50']:.1f} / {row['ttfb_ms_p99']:.1f} | {meta} "
            f"| {row['first_text_ms_p50']:,.0f} / {row['first_text_ms_p99']:,.0f} "
            f"| {sum(row['errors'].values())} |"
        )
    n = e1["burst"]["streams"]
    lines += [
        "",
        f"{n:,} conversations opened at once, each 20 chunks × 50 ms (1.0 s at best). 1 worker: "
        "relay on core 0, upstream + client on core 1. 2 workers: relay on both cores "
        "(production layout), upstream + client pinned to core 1.",
        "",
        "| relay | workers | completed | errors | TTFB p50 / p99 ms | total p50 / p99 s "
        "| chunk p50 / p99 ms | most upstream calls open | most waiting to be accepted "
        "| all done s | relay CPU | CPU µs per chunk | client + upstream CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, workers, label in RELAYS:
        if f"{key}-{workers}w" not in result:
            continue
        row = result[f"{key}-{workers}w"]["burst"]
        label = label.replace("{max_accept}", str(result[f"{key}-{workers}w"].get("max_accept")))
        lines.append(
            f"| {label} | {workers} | {row['completed']:,} | {sum(row['errors'].values())} "
            f"| {row['ttfb_ms_p50']:,.0f} / {row['ttfb_ms_p99']:,.0f} "
            f"| {row['total_ms_p50'] / 1000:.2f} / {row['total_ms_p99'] / 1000:.2f} "
            f"| {row['chunk_us_p50'] / 1000:,.0f} / {row['chunk_us_p99'] / 1000:,.0f} "
            f"| {row['upstream_max_open']:,} | {_accepting(row)} "
            f"| {row['wall_s']:.2f} | {row['server_cpu']:.0%} "
            f"| {cpu_per_chunk(row):.0f} | {row['client_cpu']:.0%} + {row['upstream_cpu']:.0%} |"
        )
    lines += [
        "",
        "| target: every stream completes, p99 TTFB engine ÷ fastapi_poe < 0.5 | workers "
        "| completed | errors | ratio | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, workers, label in RELAYS:
        if not key.startswith("engine") or f"{key}-{workers}w" not in result:
            continue
        e, f = result[f"{key}-{workers}w"]["burst"], result[f"fastapi-{workers}w"]["burst"]
        label = label.replace("{max_accept}", str(result[f"{key}-{workers}w"].get("max_accept")))
        ratio = e["ttfb_ms_p99"] / f["ttfb_ms_p99"] if f["ttfb_ms_p99"] else float("nan")
        errors = sum(e["errors"].values())
        met = ratio < 0.5 and e["completed"] == e["streams"] and not errors
        lines.append(
            f"| {label} | {workers} | {e['completed']:,} / {e['streams']:,} | {errors} "
            f"| {ratio:.2f} | {'yes' if met else '**no**'} |"
        )
    for key, rows in result.items():
        if isinstance(rows, dict) and rows.get("burst", {}).get("errors"):
            lines.append(f"\n{key} burst errors: {rows['burst']['errors']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000, help="conversations in the burst")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per conversation")
    parser.add_argument("--workers", default="1,2", help="worker counts to run: 1, 2 or 1,2")
    parser.add_argument("--burst-only", action="store_true", help="skip latency and slow rows")
    parser.add_argument("--only", choices=["engine", "fastapi"], help="one relay only")
    parser.add_argument(
        "--max-accept",
        type=int,
        default=-1,
        help="the extra 2-worker engine row: connections each worker accepts per event-loop "
        "turn, forced (gunicorn sets 1 with several workers, gevent's default is 100); "
        "default: 100, or 1 if engine/worker.py already changes it; 0 skips the row",
    )
    parser.add_argument(
        "--pool-check",
        action="store_true",
        help="1 worker: also a burst of slow, short answers (3 s wait, 2 chunks): how many "
        "model calls one worker holds open at once",
    )
    parser.add_argument("--pool-limit", type=int, help="the openai SDK's connections per client")
    parser.add_argument("--profile", type=Path, help="cProfile the engine's workers into DIR")
    args = parser.parse_args()
    if args.max_accept < 0:  # the row shows the setting production does not use
        args.max_accept = 1 if engine_sets_max_accept() else 100
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores")
    # Each relay holds a client and an upstream connection per conversation; the servers
    # inherit the limit.
    fds = raise_fd_limit(args.streams * 3 + 4096)
    started = time.monotonic()
    upstream = start_server(["upstream"], free_port(), cpus=str(CLIENT_CPU), log_name="upstream")
    result: dict[str, Any] = {"fd_limit": fds}
    try:
        pinned(CLIENT_CPU)
        if not args.burst_only:
            result["direct"] = latency_rows(DIRECT, upstream.port, upstream.port, None)
        for workers in (int(w) for w in args.workers.split(",")):
            runs = [(ENGINE, None), (FASTAPI, None)]
            if workers > 1 and args.max_accept:
                runs.insert(1, (ENGINE, args.max_accept))
            for target, max_accept in runs:
                if args.only and target.name != args.only:
                    continue
                key = target.name + ("-accept" if max_accept else "")
                print(f"  {key}, {workers} worker(s) ...", file=sys.stderr, flush=True)
                result[f"{key}-{workers}w"] = run_target(
                    target, workers, upstream.port, args, max_accept
                )
        result["upstream_totals"] = _get_json(upstream.port, "/stats")
    finally:
        stop_server(upstream)
    result["seconds"] = round(time.monotonic() - started, 1)
    try:
        print(tables(result))
    except Exception as exc:  # a partial run (--only, --workers): the JSON has it all
        print(f"no tables: {exc!r}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
