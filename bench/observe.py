"""Request lines and metrics: their CPU per FAQ turn, in-process, against both off.

`python -m bench.observe [-n 2000] [--rounds 7] [--batch 10]` prints one JSON object: µs
per FAQ turn (bench/bots' faq bot, "I want my money back") through the whole app
(`create_app`'s WSGI callable: the Poe endpoint, the runtime, the SSE bytes, the request
line and the counts) with the lines and metrics off (LOG_LEVEL=warning, METRICS=false),
with text lines and metrics, and with JSON lines and metrics, each line written to a file
as the server writes standard error; `ratio` is off ÷ each (1.0 = free; the throughput a
core keeps). The modes alternate within each round and each keeps its best round, so a
shared machine's load drifts into all of them alike. With `--batch N` (default 10) the
lines and counts of N turns are written together (`engine.web.poe.batched`), as the server
writes those of one turn of its event loop: one write for the lines, one metric write per
counter; `--batch 1` writes each turn's at once, the pessimistic bound. The counts are
this process's (prometheus_client's single-process values; the server's write to memory-
mapped files, a little dearer per write, which batching divides)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.logs import configure
from engine.settings import Settings
from engine.web import create_app
from engine.web.poe import batched

from .serve import ACCESS_KEY, BENCH, KEY_VAR

BODY = json.dumps(
    {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": "I want my money back"}],
        "user_id": "u-bench",
        "conversation_id": "c-bench",
        "message_id": "m-bench",
    }
).encode()
MODES: dict[str, dict[str, Any]] = {
    "off": {"log_level": "warning", "metrics": False},
    "metrics": {"log_level": "warning", "metrics": True},
    "text": {"log_level": "info", "metrics": True, "log_format": "text"},
    "json": {"log_level": "info", "metrics": True, "log_format": "json"},
}


def turn_in(mode: str) -> tuple[Settings, Callable[[], None]]:
    settings = Settings(bots_dir=BENCH / "bots", state_dir=Path(tempfile.mkdtemp()), **MODES[mode])
    app = create_app(settings=settings, env={KEY_VAR: ACCESS_KEY}).wsgi_app
    auth = f"Bearer {ACCESS_KEY}"

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/faq",
            "CONTENT_LENGTH": str(len(BODY)),
            "HTTP_AUTHORIZATION": auth,
            "wsgi.input": io.BytesIO(BODY),
        }
        body = app(environ, _start_response)
        assert b"5-7 days" in b"".join(body)

    return settings, call


def _start_response(status: str, headers: list[tuple[str, str]], *info: Any) -> Any:
    return None


def per_turn_us(
    settings: Settings, call: Callable[[], None], n: int, log_file: Any, batch: int = 1
) -> float:
    configure(settings, environ={}, stream=log_file)  # the mode's format and level
    call()
    start = time.process_time()
    for _ in range(n // batch):
        if batch == 1:
            call()
            continue
        with batched():
            for _ in range(batch):
                call()
    return (time.process_time() - start) / (n // batch * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=10, help="turns whose lines leave together")
    args = parser.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log_file:
        turns = {mode: turn_in(mode) for mode in MODES}
        for _ in range(args.rounds):
            for mode, (settings, call) in turns.items():
                us = per_turn_us(settings, call, args.n, log_file, args.batch)
                best[mode] = min(best.get(mode, us), us)
    logging.getLogger().handlers.clear()
    result = {
        "batch": args.batch,
        "turn_us": {mode: round(us, 1) for mode, us in best.items()},
        "ratio": {mode: round(best["off"] / best[mode], 3) for mode in MODES if mode != "off"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
