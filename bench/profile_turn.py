"""Where one rule-based turn spends its time, in-process: `python -m bench.profile_turn`.

Times the WSGI apps directly (same request as bench.run's row (c)), then groups a cProfile
of the engine app by package, so the cost of each layer is visible without a server.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response
from werkzeug.test import create_environ

from engine.loader import load_paths
from engine.protocol import sse
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_body, parse_query
from engine.runtime import run
from engine.settings import Settings
from engine.web import create_app
from engine.web.poe import batched

from .serve import ACCESS_KEY, BENCH, KEY_VAR, flask_echo_app

BODY = json.dumps(
    {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": "I want my money back"}],
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }
).encode()
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def caller(app: WsgiApp, path: str) -> Callable[[], bytes]:
    base = create_environ(
        path,
        method="POST",
        data=BODY,
        headers={
            "Authorization": f"Bearer {ACCESS_KEY}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        },
    )

    def call() -> bytes:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(BODY)
        answer = app(environ, lambda *_: None)
        try:
            return b"".join(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()

    return call


def apps() -> dict[str, Callable[[], bytes]]:
    bot = load_paths([BENCH / "bots"]).bots["faq"]

    def core_only(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The engine's work with no framework: parse, run the bot, encode SSE."""
        length = int(environ["CONTENT_LENGTH"])
        query = parse_query(parse_body(environ["wsgi.input"].read(length)))
        start_response("200 OK", [("Content-Type", sse.CONTENT_TYPE)])
        return [sse.encode(event) for event in guarded(run(bot, query), bot.name)]

    empty = Flask("empty")
    empty.add_url_rule("/faq", "faq", lambda: Response(b"", 200), methods=["POST"])
    engine = create_app(settings=Settings(bots_dir=BENCH / "bots"))
    return {
        "engine app, FAQ turn (row c)": caller(engine, "/faq"),
        "Flask echo app (row b)": caller(flask_echo_app(), "/echo"),
        "empty Flask route": caller(empty, "/faq"),
        "engine core only, raw WSGI": caller(core_only, "/faq"),
    }


def timings(calls: dict[str, Callable[[], bytes]], n: int, rounds: int = 5) -> dict[str, float]:
    """CPU µs per request of each app, the apps alternated in each round, best round each.
    The engine's request counts are written per 10 requests (`batched`), as the server
    writes those of a turn of its event loop (bench/observe.py)."""
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        for _ in range(n // 10):
            call()
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.process_time()
            for _ in range(n // 10):
                with batched():
                    for _ in range(10):
                        call()
            best[name] = min(best[name], (time.process_time() - start) / (n // 10 * 10))
    return {name: round(seconds * 1e6, 1) for name, seconds in best.items()}


AREAS = (
    ("engine/web", "engine.web"),
    ("engine/runtime", "engine.runtime"),
    ("engine/protocol", "engine.protocol"),
    ("engine/templates", "engine.templates"),
    ("engine/expressions", "engine.expressions"),
    ("site-packages/flask", "flask"),
    ("site-packages/werkzeug", "werkzeug"),
    ("site-packages/jinja2", "jinja2"),
    ("site-packages/jmespath", "jmespath"),
    ("site-packages/pydantic", "pydantic"),
    ("/json/", "json (stdlib)"),
)


def by_area(call: Callable[[], bytes], n: int) -> dict[str, float]:
    """cProfile's own time per function, summed by package (profiling inflates all of it)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, _) in stats.items():
        path = filename.replace(os.sep, "/")
        area = next((name for marker, name in AREAS if marker.replace(".", "/") in path), None)
        if area is None:
            area = "C builtins (all layers)" if path == "~" else "stdlib, other"
            area = "other" if "site-packages" in path else area
        totals[area] += own
    whole = sum(totals.values())
    return {k: round(100 * v / whole, 1) for k, v in sorted(totals.items(), key=lambda i: -i[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    os.environ.setdefault(KEY_VAR, ACCESS_KEY)
    logging.disable(logging.WARNING)
    calls = apps()
    result: dict[str, Any] = {"us_per_request": timings(calls, args.n)}
    us = result["us_per_request"]
    result["engine_vs_flask_echo"] = round(
        us["Flask echo app (row b)"] / us["engine app, FAQ turn (row c)"], 3
    )
    result["engine_app_profile_percent"] = by_area(calls["engine app, FAQ turn (row c)"], args.n)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
