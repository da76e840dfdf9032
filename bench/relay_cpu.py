"""CPU per relayed chunk, whole engine, three wire formats: `python -m bench.relay_cpu`.

bench/profile_relay.py feeds the engine from memory; this one relays bench/upstream.py over
loopback, so the upstream HTTP client, its socket reads and gevent's switches are counted:

  in-process  `--formats openai,anthropic,poe`: one process under gevent's monkey patching
              (as a gunicorn gevent worker), pinned to core 0, runs the engine's WSGI app
              (`POST /relay`, `/relay-anthropic`, `/relay-poe`: `llm: {}` routes) for
              `--conversations` conversations at once, each 20 chunks 50 ms apart from the
              upstream (pinned to core 1), and reads every answer's SSE bytes. CPU per chunk
              is the process's CPU time (user + system) over the waves ÷ the chunks relayed,
              best of `--rounds` rounds. `--baseline REV` runs the same in a checkout of REV
              (`git archive`) in turn with the work tree, so both are measured in one run.
  servers     `--servers`: the same through real servers on core 0, one worker each: our
              engine (engine.server.Server) and fastapi_poe + AsyncOpenAI on uvicorn
              (bench/serve.py), CPU of each server's processes per chunk, best of the rounds.

Prints a table, then one JSON object (the last line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .procs import REPO, free_port, start_server, stop_server

FORMATS = {"openai": "/relay", "anthropic": "/relay-anthropic", "poe": "/relay-poe"}
CHUNKS = 20
SERVER_CPU, CLIENT_CPU = "0", "1"


def child(args: argparse.Namespace) -> None:
    """One measurement in this process (started by `main` with `--child`)."""
    from gevent import monkey

    monkey.patch_all()
    import cProfile
    import io
    import pstats

    import gevent

    from engine.settings import Settings
    from engine.web import create_app

    from .serve import ACCESS_KEY, KEY_VAR, UPSTREAM_KEY, llm_bot_dir

    os.environ.setdefault("BENCH_KEY", UPSTREAM_KEY)
    os.environ.setdefault(KEY_VAR, ACCESS_KEY)
    folder = Path(tempfile.mkdtemp(prefix="relay-cpu-"))
    bots = llm_bot_dir(args.upstream_port, folder)
    settings = Settings(bots_dir=bots, state_dir=folder / "state", log_level="warning")
    app = create_app(settings=settings)
    body = json.dumps(
        {
            "version": "1.2",
            "type": "query",
            "query": [{"role": "user", "content": "Tell me a story."}],
            "user_id": "u-bench",
            "conversation_id": "c-bench",
            "message_id": "m-bench",
        }
    ).encode()
    path = FORMATS[args.format]

    def conversation() -> int:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_ACCEPT": "text/event-stream",
            "HTTP_AUTHORIZATION": f"Bearer {ACCESS_KEY}",
            "wsgi.input": io.BytesIO(body),
        }
        answer = b"".join(app(environ, _ignore_start))
        assert answer.endswith(b"event: done\r\ndata: {}\r\n\r\n"), answer[-300:]
        return answer.count(b"event: text")

    def wave() -> int:
        jobs = [gevent.spawn(conversation) for _ in range(args.conversations)]
        gevent.joinall(jobs, raise_error=True)
        return sum(job.value for job in jobs)

    wave()  # warm-up: imports, the SDK's client, the connection pool
    best = float("inf")
    profiler = cProfile.Profile() if args.profile else None
    for _ in range(args.rounds):
        if profiler:
            profiler.enable()
        start = time.process_time()
        chunks = sum(wave() for _ in range(args.waves))
        assert chunks == args.waves * args.conversations * CHUNKS, chunks
        best = min(best, (time.process_time() - start) / chunks * 1e6)
        if profiler:
            profiler.disable()
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    print(json.dumps({"format": args.format, "us_per_chunk": round(best, 1)}))


def _ignore_start(
    status: str, headers: list[tuple[str, str]], *_: Any
) -> Callable[[bytes], object]:
    """WSGI's start_response, for an answer read only from its body."""
    return lambda _data: None


def _checkout(rev: str) -> Path:
    """The tree at `rev`, extracted beside the work tree's bench (no git state changes)."""
    folder = Path(tempfile.mkdtemp(prefix="relay-cpu-base-"))
    archive = subprocess.run(
        ["git", "archive", rev, "engine", "bench"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    # The measuring code is the work tree's (the baseline's bench may lack the formats).
    subprocess.run(["rm", "-rf", str(folder / "bench")], check=True)
    subprocess.run(["cp", "-r", str(REPO / "bench"), str(folder / "bench")], check=True)
    return folder


def _run_child(tree: Path, fmt: str, port: int, args: argparse.Namespace) -> float:
    command = [
        "taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.relay_cpu", "--child",
        "--format", fmt, "--upstream-port", str(port), "--rounds", "1",
        "--conversations", str(args.conversations), "--waves", str(args.waves),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{fmt} in {tree} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["us_per_chunk"])


def in_process(args: argparse.Namespace, port: int) -> dict[str, Any]:
    trees = {"now": REPO}
    if args.baseline:
        trees = {"before": _checkout(args.baseline), **trees}
    best: dict[str, dict[str, float]] = {name: {} for name in trees}
    for _ in range(args.rounds):  # alternating, so both see the same machine
        for name, tree in trees.items():
            for fmt in args.formats.split(","):
                us = _run_child(tree, fmt, port, args)
                best[name][fmt] = min(best[name].get(fmt, us), us)
    return best


def servers(args: argparse.Namespace, upstream_port: int) -> dict[str, float]:
    from .llm_streams import ENGINE, FASTAPI, cpu_per_chunk, measure, wait_idle

    best: dict[str, float] = {}
    for target, name in ((ENGINE, "llm-engine"), (FASTAPI, "llm-fastapi")):
        server = start_server(
            [name, "--workers", "1", "--upstream-port", str(upstream_port)],
            free_port(),
            cpus=SERVER_CPU,
            log_name=f"relay-cpu-{name}",
        )
        try:
            for round_ in range(args.rounds + 1):  # the first warms up
                row = measure(
                    target, server.port, upstream_port, server, text="Tell me a story.",
                    streams=args.conversations * args.waves, concurrency=args.conversations,
                    timeout=60,
                )  # fmt: skip
                assert row["completed"] == row["streams"], row["errors"]
                if round_:
                    us = cpu_per_chunk(row)
                    best[target.name] = min(best.get(target.name, us), us)
                wait_idle(server)
        finally:
            stop_server(server)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="openai,anthropic,poe")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=100, help="open at once")
    parser.add_argument("--waves", type=int, default=3, help="conversations per round ÷ the above")
    parser.add_argument("--baseline", help="a git revision to measure in turn with the work tree")
    parser.add_argument("--servers", action="store_true", help="engine and fastapi_poe servers")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--format", default="openai", help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    upstream = start_server(["upstream"], free_port(), cpus=CLIENT_CPU, log_name="upstream")
    result: dict[str, Any] = {}
    try:
        if args.servers:
            result["servers"] = servers(args, upstream.port)
        else:
            result["in_process"] = in_process(args, upstream.port)
    finally:
        stop_server(upstream)
    for name, row in result.get("in_process", {}).items():
        cells = ", ".join(f"{fmt} {us:.1f} µs" for fmt, us in row.items())
        print(f"in-process, {name}: {cells} per chunk")
    if "servers" in result:
        row = result["servers"]
        ratio = row["fastapi"] / row["engine"]
        print(f"servers: engine {row['engine']:.0f} µs, fastapi_poe {row['fastapi']:.0f} µs per")
        print(f"chunk: fastapi_poe ÷ engine = {ratio:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
