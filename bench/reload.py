"""Hot reload in a folder of 1,000 bots: from a file's save to the first answer with its new text.

`python -m bench.reload [--bots 1000] [-n 20]` writes bench/load_bots.py's 1,000 generated
bots into a temp folder, serves them as `python -m engine play` does (one worker, watching
the folder), then N times rewrites one file with a new fallback reply and polls that bot
every 5 ms over HTTP (a new connection each time, as a browser or Poe would) until an answer
shows the new text. Prints one JSON object: the median, p90 and max in milliseconds.

A save is seen by the watcher, which sends SIGHUP to the master; the master loads the one
changed file (a stat of each of the 1,000 others), and gunicorn forks a new worker.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load_bots import write_bots

REPO = Path(__file__).resolve().parent.parent
WATCH = """\
from gevent import monkey; monkey.patch_all()
import logging
from engine.server import Server
from engine.settings import Settings
from engine.web import create_app
settings = Settings()
logging.basicConfig(level="WARNING")
logging.getLogger("engine.server").setLevel("INFO")
Server(create_app(settings=settings, keep_going=True), settings, watch=True).run()
"""
BOT = "bot-0500"  # has an access key (every even bot does)
KEY = "k" * 32
POLL = 0.005
# Seconds between saves: the old worker of the last reload has exited (it checks once a
# second), so each save is timed on its own, as a creator saving now and then would see.
SPACING = 1.5
FALLBACK = "I can help with"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("-n", type=int, default=20, help="edits timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        folder = Path(tmp) / "bots"
        folder.mkdir()
        write_bots(folder, args.bots)
        print(json.dumps(measure(folder, args.bots, args.n)))


def measure(folder: Path, bots: int, edits: int) -> dict[str, object]:
    port = _free_port()
    env = os.environ | {f"BOT_{i:04d}_KEY": KEY for i in range(0, bots, 2)}
    env |= {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BOTS_DIR": str(folder),
        "WEB_CONCURRENCY": "1",
        "STATE_DIR": str(folder.parent / "state"),
    }
    log = folder.parent / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", WATCH], cwd=REPO, env=env, stdout=out, stderr=out
        )
        try:
            started = time.perf_counter()
            _wait(lambda: FALLBACK in _ask(port), 120)
            start_seconds = time.perf_counter() - started
            path = folder / f"{BOT}.yaml"
            original = path.read_text(encoding="utf-8")
            times = [_time_edit(port, path, original, index) for index in range(edits)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    times.sort()
    return {
        "bots": bots,
        "edits": edits,
        "start_seconds": round(start_seconds, 2),
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
        "max_ms": round(times[-1], 1),
    }


def _time_edit(port: int, path: Path, original: str, index: int) -> float:
    """Milliseconds from the write to the first answer showing the new reply."""
    marker = f"Version {index}:"
    text = original.replace(f"      {FALLBACK}", f"      {marker} {FALLBACK}")
    time.sleep(SPACING)  # apart, as saves are: each one is its own reload
    written = time.perf_counter()
    path.write_text(text, encoding="utf-8")
    _wait(lambda: marker in _ask(port), 10)
    return (time.perf_counter() - written) * 1000


def _ask(port: int) -> str:
    body = {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": "hello there", "content_type": "text/markdown"}],
        "user_id": "u-bench",
        "conversation_id": "c-bench",
        "message_id": "m-bench",
    }
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", f"/{BOT}", json.dumps(body), headers)
        return connection.getresponse().read().decode()
    except OSError:
        return ""
    finally:
        connection.close()


def _wait(check: object, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not check():  # type: ignore[operator]
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(POLL)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
