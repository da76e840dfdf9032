"""Every benchmark in one bounded run (about 5.5 minutes): `python -m bench.run [--only ...]`.

Servers run pinned to core 0 with one worker; the load generator runs pinned to core 1.
Prints Markdown tables (paste them into bench/README.md) and writes the raw numbers to
bench/results/ (git-ignored). `--only llm_streams,profile_relay` runs just those steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import llm_streams as llm
from .limits import redis_url
from .procs import RESULTS, free_port, run_json, start_server, stop_server
from .serve import ACCESS_KEY

SERVER_CPU, CLIENT_CPU = "0", "1"
PACKAGES = ("gunicorn", "gevent", "flask", "fastapi-poe", "uvicorn", "openai", "google-re2")
QUERY = {
    "version": "1.2",
    "type": "query",
    "query": [{"role": "user", "content": "I want my money back", "content_type": "text/markdown"}],
    "user_id": "u-bench",
    "conversation_id": "c-bench",
    "message_id": "m-bench",
}
SETTINGS = {"version": "1.2", "type": "settings"}
AUTH = f"Authorization: Bearer {ACCESS_KEY}"


def load(port: int, path: str, body: dict[str, Any], expect: str, args: argparse.Namespace) -> Any:
    command = [
        "-m",
        "bench.loadgen",
        "--port",
        str(port),
        "--path",
        path,
        "--body",
        json.dumps(body),
        "--expect",
        expect,
        "--header",
        AUTH,
        "--connections",
        str(args.connections),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    ]
    return run_json(command, cpus=CLIENT_CPU, timeout=args.duration + args.warmup + 60)


def wrk(port: int, path: str, body: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """wrk's own latency distribution (whole response), as a check on our client."""
    if shutil.which("wrk") is None:
        return {}
    RESULTS.mkdir(parents=True, exist_ok=True)
    script = RESULTS / "post.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = [[{json.dumps(body)}]]\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {ACCESS_KEY}'\n"
    )
    command = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{args.connections}"]
    command += [f"-d{int(args.duration)}s", "--latency", "-s", str(script)]
    command += [f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + 30, check=False
    ).stdout
    result: dict[str, Any] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.strip().startswith(("50%", "99%")):
            result[f"wrk_p{parts[0][:2]}_ms"] = _ms(parts[1])
        elif line.startswith("Requests/sec:"):
            result["wrk_rps"] = float(parts[1])
        elif "timeout" in line and "Socket errors" in line:
            result["wrk_timeouts"] = int(line.rsplit("timeout", 1)[1].strip())
    return result


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * factor, 2)
    return float("nan")


def serve(target: str, *extra: str) -> Any:
    return start_server([target, *extra], free_port(), cpus=SERVER_CPU)


def throughput_table(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """(a) fastapi_poe echo, (b) Flask echo, (c) engine FAQ turn, (d) engine settings."""
    runs = [
        ("a", "fastapi_poe echo bot, uvicorn 1 worker", "fastapi", "/", QUERY, "money back"),
        ("b", "hand-written Flask SSE echo, our gunicorn config", "flask", "/echo", QUERY, "done"),
    ]
    for key, label, target, path, body, expect in runs:
        server = serve(target)
        try:
            results[key] = {"label": label, **load(server.port, path, body, expect, args)}
        finally:
            stop_server(server)
    server = serve("engine")
    try:
        results["c"] = {
            "label": "our engine, rule-based FAQ turn (bench/bots/faq.yaml)",
            **load(server.port, "/faq", QUERY, "5-7 days", args),
        }
        results["d"] = {
            "label": "our engine, settings request",
            **load(server.port, "/faq", SETTINGS, "introduction_message", args),
        }
    finally:
        stop_server(server)


def fairness_table(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The keep-alive p99 before (gunicorn's gevent worker) and after (ours)."""
    for key, target, path, expect in (
        ("flask", "flask", "/echo", "done"),
        ("engine", "engine", "/faq", "5-7 days"),
    ):
        for worker in ("stock", "ours"):
            server = serve(target, "--worker-class", worker)
            try:
                row = load(server.port, path, QUERY, expect, args)
                if key == "flask":
                    row |= wrk(server.port, path, QUERY, args)
                results[f"{key}-{worker}"] = row
            finally:
                stop_server(server)


def ceiling(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """How fast the load generator can go against a server that does no work."""
    server = serve("canned")
    try:
        results["ceiling"] = load(server.port, "/", QUERY, "canned", args)
    finally:
        stop_server(server)


def streams(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """bench.streams: its server uses both cores (production layout), its client core 1."""
    command = ["-m", "bench.streams", "--streams", str(args.streams)]
    results["streams"] = run_json(command, cpus=None, timeout=120)


def load_bots(args: argparse.Namespace, results: dict[str, Any]) -> None:
    command = ["-m", "bench.load_bots", "--bots", str(args.bots)]
    # Not pinned: loading a folder uses every core, as the server and `validate` do.
    results["load_bots"] = run_json(command, cpus=None, timeout=120)


def profile_turn(args: argparse.Namespace, results: dict[str, Any]) -> None:
    results["profile_turn"] = run_json(["-m", "bench.profile_turn"], cpus=CLIENT_CPU, timeout=120)


def regex(args: argparse.Namespace, results: dict[str, Any]) -> None:
    results["regex"] = run_json(["-m", "bench.regex"], cpus=CLIENT_CPU, timeout=120)


def flows(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """In-process (bench.flows), then through servers (bench.turn_cpu's `default` and
    `flow`, each one worker on core 0, loaded from core 1): the throughput a worker keeps."""
    results["flows"] = run_json(["-m", "bench.flows"], cpus=CLIENT_CPU, timeout=120)
    served = ["-m", "bench.turn_cpu", "--rounds", "3", "--duration", "1", "default", "flow"]
    results["flows"]["served"] = run_json(served, cpus=None, timeout=120)


def limits(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """bench.limits: in-process costs pinned to core 1; its contended rows start their own
    processes, and a redis-server when one is installed."""
    command = ["-m", "bench.limits", "-n", "1000", "--rounds", "5"]  # about 30 s
    results["limits"] = run_json(command, cpus=CLIENT_CPU, timeout=240)


def limits_server(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The FAQ turn through the server, as row (c): plain, then with three limits counted in
    the SQLite file and in Redis (pinned to the load generator's core)."""
    rows: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp,
        redis_url(Path(tmp), CLIENT_CPU) as url,
    ):
        runs: list[tuple[str, tuple[str, ...]]] = [
            ("plain", ()),
            ("limits, SQLite file", ("--limited",)),
        ]
        if url is not None:
            runs.append(("limits, Redis", ("--limited", "--redis-url", url)))
        for name, extra in runs:
            server = serve("engine", *extra)
            try:
                rows[name] = load(server.port, "/faq", QUERY, "5-7 days", args)
            finally:
                stop_server(server)
    results["limits_server"] = rows


def observe(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The FAQ turn through the server (row c) with request lines and metrics off, then on
    with text lines, then on with JSON lines; rounds alternate the three, and each ratio is
    to the `off` row of its own round (the machine's load drifts between rounds)."""
    rounds: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        row: dict[str, Any] = {}
        for observed in ("off", "text", "json"):
            server = serve("engine", "--observed", observed)
            try:
                row[observed] = load(server.port, "/faq", QUERY, "5-7 days", args)
            finally:
                stop_server(server)
        for observed in ("text", "json"):
            row[f"{observed}_ratio"] = round(row[observed]["rps"] / row["off"]["rps"], 3)
        rounds.append(row)
    results["observe"] = rounds


def llm_streams(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """bench.llm_streams: it pins its own processes (relay core 0 or both, client core 1)."""
    command = ["-m", "bench.llm_streams", "--streams", str(args.streams)]
    results["llm_streams"] = run_json(command, cpus=None, timeout=240)


def profile_relay(args: argparse.Namespace, results: dict[str, Any]) -> None:
    results["profile_relay"] = run_json(["-m", "bench.profile_relay"], cpus=CLIENT_CPU, timeout=60)


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines: list[str] = []
    if all(key in results for key in "abcd"):
        lines += _throughput_lines(results, args)
    if "engine-ours" in results:
        lines += _fairness_lines(results)
    if "ceiling" in results and all(key in results for key in "abcd"):
        top = results["ceiling"]
        lines += [
            "",
            f"Load generator ceiling (raw asyncio server, no work): {top['rps']:,.0f} req/s at "
            f"{top['client_cpu']:.0%} of its core — "
            f"{top['rps'] / max(results[k]['rps'] for k in 'abcd'):.1f}× the fastest row above.",
        ]
    if "streams" in results:
        s = results["streams"]
        lines += [
            "",
            f"Streams (production config, 2 workers): {s['streams']:,} SSE streams of "
            f"{s['stream_ideal_s']:g} s, {s['open_at_once']:,} open at once, "
            f"{s['completed']:,} complete, errors {s['errors'] or 0}; connect p50/p99 "
            f"{s['connect_p50_ms']}/{s['connect_p99_ms']} ms, TTFB p50/p99 "
            f"{s['ttfb_p50_ms']}/{s['ttfb_p99_ms']} ms, stream p50/p99 "
            f"{s['stream_p50_s']}/{s['stream_p99_s']} s, all done in {s['total_s']} s; "
            f"per worker {s['per_worker']}.",
        ]
    if "load_bots" in results:
        bots = results["load_bots"]
        lines += [
            "",
            f"Loading {bots['bots']:,} bots ({bots['mb_of_yaml']} MB of YAML, "
            f"{bots['jinja_templates']:,} Jinja templates): {bots['seconds']} s on "
            f"{bots['processes']} processes ({bots['ms_per_bot']} ms/bot), "
            f"{bots['one_process_seconds']} s on one (checking templates "
            f"{bots['template_check_seconds']} s of it); max RSS {bots['max_rss_mb']} MB "
            f"(+{bots['rss_growth_mb']} MB while loading; loading processes "
            f"{bots['child_max_rss_mb']} MB), errors {bots['errors']}. Deferred to first "
            f"renders: {bots['first_render_build_seconds']} s to generate every template's code.",
        ]
    if "profile_turn" in results:
        turn = results["profile_turn"]
        cost = ", ".join(f"{name} {us:g} µs" for name, us in turn["us_per_request"].items())
        areas = ", ".join(
            f"{name} {pct:g}%" for name, pct in list(turn["engine_app_profile_percent"].items())[:6]
        )
        lines += [
            "",
            f"In-process cost per request (no sockets): {cost}.",
            f"Engine app profile by package: {areas}.",
        ]
    if "regex" in results:
        lines += _regex_lines(results["regex"])
    if "flows" in results:
        lines += _flows_lines(results["flows"])
    if "limits" in results:
        lines += _limits_lines(results["limits"])
    if "limits_server" in results:
        lines += _limits_server_lines(results["limits_server"])
    if "observe" in results:
        lines += _observe_lines(results["observe"])
    if "llm_streams" in results:
        lines += ["", "Model streaming (bench.llm_streams):", ""]
        lines.append(llm.tables(results["llm_streams"]))
    if "profile_relay" in results:
        relay = results["profile_relay"]
        cost = ", ".join(f"{name} {us:g} µs" for name, us in relay["us_per_chunk"].items())
        lines += ["", f"CPU per relayed chunk, in-process (bench.profile_relay): {cost}."]
    table = "\n".join(lines).strip("\n")
    print(table)
    return table


def _throughput_lines(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    base = results["a"]
    lines = [
        f"{args.connections} keep-alive connections, {args.duration:g} s per row after "
        f"{args.warmup:g} s warm-up; server on core {SERVER_CPU} (1 worker), "
        f"load generator on core {CLIENT_CPU}.",
        "",
        "| | server | req/s | × (a) | TTFB p50 ms | × (a) | TTFB p99 ms | × (a) | errors "
        "| client CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in "abcd":
        row = results[key]
        lines.append(
            f"| ({key}) | {row['label']} | {row['rps']:,.0f} | {row['rps'] / base['rps']:.2f} "
            f"| {row['ttfb_p50_ms']:.1f} | {row['ttfb_p50_ms'] / base['ttfb_p50_ms']:.2f} "
            f"| {row['ttfb_p99_ms']:.1f} | {row['ttfb_p99_ms'] / base['ttfb_p99_ms']:.2f} "
            f"| {sum(row['errors'].values())} | {row['client_cpu']:.0%} |"
        )
    c, b = results["c"], results["b"]
    lines += [
        "",
        f"Targets: (c) ≥ 1.5× (a) req/s: **{c['rps'] / base['rps']:.2f}×**; "
        f"(c) ≥ 0.8× (b) req/s: **{c['rps'] / b['rps']:.2f}×**.",
    ]
    return lines


def _observe_lines(rounds: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "| round | off req/s | text lines + metrics req/s | × off | JSON lines + metrics req/s "
        "| × off | p99 off / text / JSON ms |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for number, row in enumerate(rounds, 1):
        off, text, json_row = row["off"], row["text"], row["json"]
        lines.append(
            f"| {number} | {off['rps']:,.0f} | {text['rps']:,.0f} | {row['text_ratio']:.2f} × "
            f"| {json_row['rps']:,.0f} | {row['json_ratio']:.2f} × | {off['ttfb_p99_ms']} / "
            f"{text['ttfb_p99_ms']} / {json_row['ttfb_p99_ms']} |"
        )
    return lines


def _regex_lines(regex: dict[str, Any]) -> list[str]:
    turns = ", ".join(
        f"{name} {row['re2_us']:g} vs {row['python_re_us']:g} µs (**{row['ratio']:.2f}×**)"
        for name, row in regex["turn_us"].items()
    )
    python_re = ", ".join(f"{name} {ms:g} ms" for name, ms in regex["python_re_ms"].items())
    slow = ", ".join(f"{name} {ms:g} ms" for name, ms in regex["large_program_ms"].items())
    return [
        "",
        f"Regular expressions on RE2 (bench.regex), per rule-based turn, RE2 vs Python's re "
        f"(turns/s ratio, target ≥ 0.95): {turns}.",
        f"Slowest single match of a hostile message on RE2 (target < 10 ms): "
        f"**{regex['hostile_worst_ms']:g} ms**; Python's re on '(a+)+$': {python_re}.",
        f"Slow end of linear (a long counted repetition): {slow}.",
    ]


def _flows_lines(flows: dict[str, Any]) -> list[str]:
    turns = ", ".join(f"{name} {us:g} µs" for name, us in flows["turn_us"].items())
    ratios = ", ".join(f"{name} **{ratio:.2f}×**" for name, ratio in flows["ratio"].items())
    state = flows["state_us"]
    lines = [
        "",
        f"Flow turns (bench.flows), in-process: {turns}; turns/s ratios (target: flow ≥ 0.8× "
        f"the plain faq turn): {ratios}; state encode {state['encode']:g} µs, decode "
        f"{state['decode']:g} µs.",
    ]
    served = flows.get("served")
    if served:
        cpu, ratio = served["cpu_us"], served["cpu_ratio"]["flow"]
        lines.append(
            f"Through the server (bench.turn_cpu default flow, the worker's CPU per request): "
            f"flow {cpu['flow']:g} µs, plain faq turn {cpu['default']:g} µs: flow / plain "
            f"**{ratio:.2f}×** by CPU, {served['rps_ratio']['flow']:.2f}× by req/s."
        )
    return lines


def _limits_lines(limits: dict[str, Any]) -> list[str]:
    turn = limits["turn_us"]
    rows = [
        f"| {store} | {row['limits']:g} | **{ratio['limits']:.2f}×** "
        f"| {row['limits + remembered vars']:g} | **{ratio['limits + remembered vars']:.2f}×** "
        f"| {limits['hit_us'][store]['hit_allowed_us']:g} |"
        for (store, row), ratio in zip(
            limits["limited_turn_us"].items(), limits["limited_turn_ratio"].values(), strict=True
        )
    ]
    lag = limits["contended_us"]
    lags = ", ".join(
        f"{mode} p99 {max(p['lag_p99_ms'] for p in procs):g} ms"
        for mode, procs in lag.items()
        if "loop lag" in mode
    )
    return [
        "",
        f"Limits and remembered vars (bench.limits), per rule-based turn; a plain turn: "
        f"{turn:g} µs. Redis: {limits['redis']}.",
        "",
        "| store | limited turn µs | × plain | + recall µs | × plain | one hit µs |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Two gevent processes hitting one key: event-loop lag {lags}.",
    ]


def _limits_server_lines(rows: dict[str, Any]) -> list[str]:
    plain = rows["plain"]
    lines = [
        "",
        "FAQ turn through the server with three limits (core 0, 1 worker; Redis on core 1):",
        "",
        "| turn | req/s | × plain | TTFB p50 ms | TTFB p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['rps']:,.0f} | **{row['rps'] / plain['rps']:.2f}×** "
            f"| {row['ttfb_p50_ms']:.1f} | {row['ttfb_p99_ms']:.1f} "
            f"| {sum(row['errors'].values())} |"
        )
    return lines


def _fairness_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Keep-alive fairness, before (gunicorn's `gevent` worker) and after "
        "(`engine.worker.FairGeventWorker`):",
        "",
        "| app | worker | req/s | TTFB p50 ms | TTFB p99 ms | TTFB max ms "
        "| wrk p50 ms | wrk p99 ms | wrk timeouts |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for app in ("flask", "engine"):
        for worker in ("stock", "ours"):
            row = results[f"{app}-{worker}"]
            name = "gunicorn gevent" if worker == "stock" else "FairGeventWorker"
            lines.append(
                f"| {app} | {name} | {row['rps']:,.0f} | {row['ttfb_p50_ms']:.1f} "
                f"| {row['ttfb_p99_ms']:.1f} | {row['ttfb_max_ms']:.1f} "
                f"| {row.get('wrk_p50_ms', '–')} | {row.get('wrk_p99_ms', '–')} "
                f"| {row.get('wrk_timeouts', '–' if 'wrk_rps' not in row else 0)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load row")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="observe: off/text/json rounds")
    parser.add_argument(
        "--only", default="", help=f"comma-separated steps to run, of: {', '.join(STEPS)}"
    )
    args = parser.parse_args()
    only = [name for name in args.only.split(",") if name]
    if unknown := [name for name in only if name not in STEPS]:
        parser.error(f"unknown step {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    # A SIGTERM (bench/run.sh's `timeout`) unwinds the `finally` blocks that stop servers.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        sys.exit("needs 2 cores and taskset (util-linux)")
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            **{p: version(p) for p in PACKAGES},
        }
    }
    for key, (name, step) in STEPS.items():
        if only and key not in only:
            continue
        print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
        step(args, results)
    results["seconds"] = round(time.monotonic() - started, 1)
    print(f"[{results['seconds']:5.0f} s] done\n", file=sys.stderr)
    table = print_tables(results, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "latest.md").write_text(table + "\n")
    print(f"\nmachine: {json.dumps(results['machine'])}; total {results['seconds']} s")


STEPS: dict[str, tuple[str, Callable[[argparse.Namespace, dict[str, Any]], None]]] = {
    "ceiling": ("load generator ceiling", ceiling),
    "throughput": ("throughput table", throughput_table),
    "fairness": ("keep-alive fairness", fairness_table),
    "streams": ("2,000 slow streams", streams),
    "load_bots": ("load 1,000 bots", load_bots),
    "profile_turn": ("where a FAQ turn's time goes", profile_turn),
    "regex": ("regular expressions: RE2's cost per turn, hostile messages", regex),
    "flows": ("flow turns: verifying and signing the state, against plain turns", flows),
    "limits": ("rate limits and remembered vars: cost per turn, per store", limits),
    "limits_server": ("the FAQ turn through the server with limits, per store", limits_server),
    "observe": ("request lines and metrics: a FAQ turn's cost, off vs text vs JSON", observe),
    "llm_streams": ("model streaming: engine vs fastapi_poe relaying a model", llm_streams),
    "profile_relay": ("where a relayed chunk's CPU goes", profile_relay),
}


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
