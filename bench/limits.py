"""Rate limits and remembered vars: the cost per turn, against a plain rule-based turn.

`python -m bench.limits` prints one JSON object (Redis rows need `redis-server` on PATH; it
is started on a free loopback port and stopped at the end):

* `turn_us`: µs per rule-based turn in-process (parse the request body, run bench/bots'
  faq bot, encode its SSE events: bench.regex's turn), the baseline of every ratio.
* `hit_us`: µs per `Limiter.hit` on each store, allowed and refused; `three_limits_us` is
  `hit_all` over a turn's usual three limits (per user per minute, per user per day, the
  whole bot per day), one store round trip; `three_hits_us` is the same three as three
  `hit`s, three round trips (what `hit_all` cost before it batched them); `remember_us` and
  `recall_us` are one var kept and a user's vars read.
* `limited_turn_us`: µs per turn of the same faq bot with `limits:` (those three limits)
  through `run()` with a Limiter on each store, and with `remember:` as well (one recall
  per turn); `limited_turn_ratio`: each of those / `turn_us` (1.0 = free).
* `contended_us`: two fresh processes, monkey-patched by gevent as the server's workers are,
  hitting one key at once. `saturated`: 8 greenlets each, back to back: the mean µs per hit
  (wall time over hits). `loop lag`: 4 greenlets each doing a hit and 100 µs of other work
  in turn, and a ticker greenlet timing how late its 1 ms sleeps wake, i.e. how long the
  worker's event loop was held (on SQLite, by waits for the other process's writes).
  `loop lag, SQLite's lock only` turns off `engine.store._WriteLock`, whose waits yield to
  other greenlets, leaving SQLite's busy handler, which sleeps 1 ms and up holding the loop.

Each measurement keeps its best of `--rounds`, measured in the same run as the turn.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.compiled import CompiledBot
from engine.limits import Limiter
from engine.loader import load_paths, load_text
from engine.protocol import sse
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_body, parse_query
from engine.runtime import run
from engine.store import Store

from .procs import REPO, RESULTS, free_port
from .regex import SHORT, body, per_turn_us, turn
from .serve import ACCESS_KEY, BENCH, KEY_VAR

# A turn's usual three limits, set high enough that every hit in the run is allowed.
THREE = [
    ("1000000/minute", ("faq", "messages", "user", "u1")),
    ("100000000/day", ("faq", "messages", "user", "u1")),
    ("1000000000/day", ("faq", "messages", "everyone")),
]

FLAT = [(limit, *keys) for limit, keys in THREE]

# The same three limits written in the bot, and a remembered var.
LIMITED = """
limits:
  messages: [1000000/minute, 100000000/day]
  bot: {messages: 1000000000/day}
"""
REMEMBERED = "remember: {vars: [language], days: 1}\n"

MODES = ("saturated", "loop lag", "loop lag, SQLite's lock only")
HAMMER = r"""
import json, sys, time
from gevent import monkey
monkey.patch_all()
import gevent
from pathlib import Path
from engine.limits import Limiter

url, state_dir, hits, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
limiter = Limiter.from_url(url or None, state_dir=state_dir)
if mode.endswith("SQLite's lock only"):  # what _WriteLock replaced, for comparison
    limiter.store.backend._writers = None
hit = lambda: limiter.hit("1000000000/day", "hammer", "u")
hit()
lags, running = [], True

def saturate(count):
    for _ in range(count):
        hit()

def busy(count):  # a worker's request: a hit, 100 µs of other work, then the next
    for _ in range(count):
        hit()
        until = time.perf_counter() + 100e-6
        while time.perf_counter() < until:
            pass
        gevent.sleep(0)

def ticker():  # how late a 1 ms timer fires: how long the event loop was held
    while running:
        start = time.perf_counter()
        gevent.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)

print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
if mode == "saturated":
    gevent.joinall([gevent.spawn(saturate, hits // 8) for _ in range(8)])
    print(json.dumps({"mean_us": round((time.perf_counter() - start) / hits * 1e6, 1)}))
else:
    tick = gevent.spawn(ticker)
    gevent.joinall([gevent.spawn(busy, hits // 4) for _ in range(4)])
    running = False
    tick.join()
    lags.sort()
    ms = lambda seconds: round(seconds * 1e3, 2)
    n = len(lags)
    print(json.dumps({"lag_p50_ms": ms(lags[n // 2]), "lag_p99_ms": ms(lags[n * 99 // 100]),
                      "lag_max_ms": ms(lags[-1])}))
"""


def best_us(call: Callable[[], Any], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        best = min(best, per_turn_us(call, n))
    return round(best, 2)


@contextmanager
def redis_url(folder: Path, cpus: str | None = None) -> Iterator[str | None]:
    """A redis-server on a free loopback port (pinned to `cpus`), or None when it is not
    installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    pinned = ["taskset", "-c", cpus] if cpus else []
    command = [*pinned, binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not Store.from_url(url).storage.check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer")
            time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def store_costs(store: Store, n: int, rounds: int) -> dict[str, float]:
    limiter = Limiter(store)
    for limit, keys in THREE:  # the refused row: a limit of 1, used up once
        limiter.clear(limit, *keys)
    limiter.hit("1/day", "faq", "refused")
    return {
        "hit_allowed_us": best_us(lambda: limiter.hit("1000000000/day", "faq", "u1"), n, rounds),
        "hit_refused_us": best_us(lambda: limiter.hit("1/day", "faq", "refused"), n, rounds),
        "three_limits_us": best_us(lambda: limiter.hit_all(THREE), n // 3, rounds),
        "three_hits_us": best_us(lambda: [limiter.hit(*check) for check in FLAT], n // 3, rounds),
        "remember_us": best_us(
            lambda: store.remember("faq", "u1", "language", "pt-BR", 86400), n, rounds
        ),
        "recall_us": best_us(lambda: store.recall("faq", "u1"), n, rounds),
    }


def faq_with(extra: str) -> CompiledBot:
    """bench/bots' faq bot with `extra` top-level keys added."""
    text = (BENCH / "bots" / "faq.yaml").read_text(encoding="utf-8") + extra
    bot, problems = load_text(text, "faq.yaml", {KEY_VAR: ACCESS_KEY})
    assert bot is not None, problems
    return bot


def limited_bot_dir(port: int) -> Path:
    """A fresh bots folder (under bench/results/) holding the faq bot with three limits, for
    `bench.serve engine --limited`; its STATE_DIR is `state/` inside it."""
    folder = RESULTS / "limited-bots" / str(port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    faq = (BENCH / "bots" / "faq.yaml").read_text(encoding="utf-8")
    (folder / "faq.yaml").write_text(faq + LIMITED, encoding="utf-8")
    return folder


def limited_turn(bot: CompiledBot, data: bytes, limiter: Limiter) -> Callable[[], bytes]:
    """bench.regex's turn, with the bot's limits counted (and its vars recalled)."""

    def call() -> bytes:
        query = parse_query(parse_body(data))
        events = run(bot, query, limiter=limiter)
        return b"".join(sse.encode(event) for event in guarded(events, bot.name))

    return call


def limited_turns(stores: dict[str, Store], n: int, rounds: int) -> dict[str, dict[str, float]]:
    data = body(SHORT)
    bots = {"limits": faq_with(LIMITED), "limits + remembered vars": faq_with(LIMITED + REMEMBERED)}
    rows: dict[str, dict[str, float]] = {}
    for name, store in stores.items():
        limiter = Limiter(store)
        store.remember("faq", "u", "language", "pt-BR", 86400)  # bench.regex's user is "u"
        for kind, bot in bots.items():
            call = limited_turn(bot, data, limiter)
            assert b"5-7 days" in call(), "the limited turn did not answer"
            rows.setdefault(name, {})[kind] = best_us(call, n, rounds)
    return rows


def contended(url: str | None, state_dir: Path, hits: int, mode: str) -> list[dict[str, float]]:
    """Two gevent processes hit one key together: µs per hit in each."""
    command = [sys.executable, "-c", HAMMER, url or "", str(state_dir), str(hits), mode]
    processes = [
        subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    return [json.loads(out) for out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    faq = load_paths([BENCH / "bots"], env={KEY_VAR: ACCESS_KEY}).bots["faq"]
    turn_us = best_us(turn(faq, body(SHORT)), args.n, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp, redis_url(Path(tmp)) as url:
        stores = {"sqlite file (default)": Store.from_url(None, state_dir=Path(tmp))}
        stores["sqlite in-process (memory://)"] = Store.from_url("memory://")
        if url is not None:
            stores["redis (loopback)"] = Store.from_url(url)
        for store in stores.values():
            store.prepare()
        costs = {name: store_costs(store, args.n, args.rounds) for name, store in stores.items()}
        limited = limited_turns(stores, args.n, args.rounds)
        together: dict[str, Any] = {}
        for mode in MODES:
            together[f"sqlite file, {mode}"] = contended(None, Path(tmp), args.n * 2, mode)
            if url is not None and "SQLite" not in mode:
                together[f"redis, {mode}"] = contended(url, Path(tmp), args.n * 2, mode)
    result = {
        "turn_us": turn_us,
        "hit_us": costs,
        "limited_turn_us": limited,
        "limited_turn_ratio": {
            name: {kind: round(us / turn_us, 2) for kind, us in row.items()}
            for name, row in limited.items()
        },
        "contended_us": together,
        "redis": "measured" if url is not None else "skipped: redis-server is not installed",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
