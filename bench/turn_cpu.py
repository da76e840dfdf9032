"""The worker's CPU per request through real servers, for turns too close to tell by req/s.

`python -m bench.turn_cpu [--rounds 7] [--duration 2] [MODE ...]` starts one server per
mode at once (each one worker on core 0, as row (c)): `off` (request lines and metrics
off), `default` (row (c): metrics on, lines off), `text` and `json` (lines at INFO and
metrics), `flask` (row (b), the bare Flask SSE echo), `flow` (bench/flows.py's flow turn on
the default config: its state verified and signed again). Each round loads every server in
turn for `--duration` seconds (100 keep-alive connections from core 1) and reads the
worker's CPU time from /proc before and after: CPU per request counts only what the
worker itself spent, so other processes on a shared core change it far less than they
change req/s. Prints one JSON object: per mode the median CPU per request and req/s, and
the median over rounds of each round's ratio to the first mode (`off` ÷ mode for CPU,
mode ÷ `off` for req/s: 1.0 = free, the throughput a core keeps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .flows import served_flow
from .procs import Server, children, free_port, run_json, start_server, stop_server
from .run import AUTH, QUERY
from .serve import ACCESS_KEY, KEY_VAR


@dataclass(frozen=True)
class Target:
    """A server (bench.serve's arguments), the path loaded, what every answer holds, and
    the query sent."""

    server: list[str]
    path: str
    expect: str
    query: dict[str, Any] = field(default_factory=lambda: QUERY)


FAQ = ("/faq", "5-7 days")
MODES = ("off", "default", "text", "json", "flask", "flow")


def target(mode: str) -> Target:
    if mode == "flask":
        return Target(["flask"], "/echo", "done")
    if mode == "flow":
        env = dict(os.environ)  # what the server's environment will be
        env.setdefault(KEY_VAR, ACCESS_KEY)
        folder, query = served_flow(env)
        return Target(["engine", "--bots", str(folder)], "/booking", "nights in Rome", query)
    observed = [] if mode == "default" else ["--observed", mode]
    return Target(["engine", *observed], *FAQ)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of `pids`, from /proc."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def one_load(server: Server, workers: list[int], aim: Target, seconds: float) -> Any:
    before = cpu_seconds(workers)
    command = ["-m", "bench.loadgen", "--port", str(server.port), "--path", aim.path]
    command += ["--body", json.dumps(aim.query), "--expect", aim.expect, "--header", AUTH]
    command += ["--connections", "100", "--duration", str(seconds), "--warmup", "0"]
    result = run_json(command, cpus="1", timeout=seconds + 60)
    spent = cpu_seconds(workers) - before
    if result["errors"] or not result["requests"]:
        raise RuntimeError(f"{aim.path}: {result['errors'] or 'no answers'}")
    return spent / result["requests"] * 1e6, result["rps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", help=f"of {', '.join(MODES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    modes: list[str] = args.modes or list(MODES)
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    aims = {mode: target(mode) for mode in modes}
    servers: dict[str, tuple[Server, list[int]]] = {}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    rps: dict[str, list[float]] = {mode: [] for mode in modes}
    loads = []
    try:
        for mode in modes:
            server = start_server(aims[mode].server, free_port(), cpus="0")
            time.sleep(0.3)  # the worker forked and serving
            servers[mode] = (server, children(server.process.pid))
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for mode, (server, workers) in servers.items():
                us, rate = one_load(server, workers, aims[mode], args.duration)
                cpu[mode].append(us)
                rps[mode].append(rate)
    finally:
        for server, _ in servers.values():
            stop_server(server)
    first, rounds = modes[0], range(args.rounds)
    result = {
        "load_average": [round(load, 2) for load in loads],
        "cpu_us": {mode: round(statistics.median(cpu[mode]), 1) for mode in modes},
        "rps": {mode: round(statistics.median(rps[mode])) for mode in modes},
        "cpu_ratio": {
            mode: round(statistics.median(cpu[first][i] / cpu[mode][i] for i in rounds), 3)
            for mode in modes
        },
        "rps_ratio": {
            mode: round(statistics.median(rps[mode][i] / rps[first][i] for i in rounds), 3)
            for mode in modes
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
