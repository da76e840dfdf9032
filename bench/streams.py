"""2,000 slow SSE streams open at once on the production server config (2 workers).

`python -m bench.streams [--streams 2000] [--chunks 10] [--interval 0.5]` starts
`bench.serve slow` through engine.server.Server with WEB_CONCURRENCY=2 (our exact gunicorn
options), opens every stream at once from one asyncio client, and prints one JSON object:
errors, connect time and time to first byte (from the request being sent), how long each
stream took (ideal: chunks x interval), how many
were open at the same time, and how the streams spread over the two workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import time
from collections import Counter
from typing import Any

from .loadgen import ResponseParser, percentile
from .procs import free_port, pinned, start_server, stop_server

perf = time.perf_counter
WORKER = re.compile(rb'"worker": (\d+)')


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def one_stream(port: int, chunks: int, timeout: float) -> dict[str, Any]:
    body = b'{"version": "1.2", "type": "query", "query": []}'
    request = (
        f"POST /slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    start = perf()
    result: dict[str, Any] = {"start": start}
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError) as exc:
        result["error"] = f"connect: {exc.__class__.__name__}"
        return result
    sent = perf()
    result["connect"] = sent - start
    try:
        writer.write(request)
        parser = ResponseParser()
        deadline = start + timeout
        while True:
            data = await asyncio.wait_for(reader.read(65536), max(deadline - perf(), 0.001))
            if not data:
                result["error"] = "closed early"
                return result
            result.setdefault("ttfb", perf() - sent)
            if parser.feed(data):
                break
        result["end"] = perf()
        body_bytes = bytes(parser.body)
        texts = body_bytes.count(b"event: text")
        if parser.status != 200 or texts != chunks or b"event: done" not in body_bytes:
            result["error"] = f"bad stream: status {parser.status}, {texts} chunks"
        found = WORKER.search(body_bytes)
        result["worker"] = int(found.group(1)) if found else None
    except (OSError, TimeoutError, ValueError) as exc:
        result["error"] = exc.__class__.__name__
    finally:
        writer.close()
    return result


async def run_streams(port: int, streams: int, chunks: int, timeout: float) -> list[dict[str, Any]]:
    return await asyncio.gather(*(one_stream(port, chunks, timeout) for _ in range(streams)))


def summarise(results: list[dict[str, Any]], wall: float, ideal: float) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    errors = Counter(r["error"] for r in results if "error" in r)
    ttfb = sorted(r["ttfb"] for r in ok)
    took = sorted(r["end"] - r["start"] for r in ok)
    connect = sorted(r["connect"] for r in ok)
    first_end = min((r["end"] for r in ok), default=0.0)
    open_together = sum(1 for r in ok if r["start"] < first_end)
    ms = 1000.0
    return {
        "streams": len(results),
        "completed": len(ok),
        "errors": dict(errors),
        "open_at_once": open_together,
        "connect_p50_ms": round(percentile(connect, 50) * ms, 1),
        "connect_p99_ms": round(percentile(connect, 99) * ms, 1),
        "ttfb_p50_ms": round(percentile(ttfb, 50) * ms, 1),
        "ttfb_p99_ms": round(percentile(ttfb, 99) * ms, 1),
        "ttfb_max_ms": round((ttfb[-1] if ttfb else float("nan")) * ms, 1),
        "stream_ideal_s": ideal,
        "stream_p50_s": round(percentile(took, 50), 3),
        "stream_p99_s": round(percentile(took, 99), 3),
        "stream_max_s": round(took[-1] if took else float("nan"), 3),
        "total_s": round(wall, 2),
        "per_worker": sorted(Counter(r.get("worker") for r in ok).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-cpu", type=int, default=1, help="core for the client")
    args = parser.parse_args()
    fds = raise_fd_limit(args.streams * 2 + 1024)  # the server inherits it too
    port = free_port()
    server = start_server(
        [
            "slow",
            "--workers",
            str(args.workers),
            "--chunks",
            str(args.chunks),
            "--interval",
            str(args.interval),
        ],
        port,
        cpus=None,  # the production layout: both workers may use every core
        ready_path="/slow",
    )
    try:
        pinned(args.client_cpu)
        ideal = args.chunks * args.interval
        timeout = ideal + 30.0
        start = perf()
        results = asyncio.run(run_streams(port, args.streams, args.chunks, timeout))
        wall = perf() - start
    finally:
        stop_server(server)
    summary = summarise(results, wall, ideal)
    summary["fd_limit"] = fds
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
