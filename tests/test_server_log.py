"""What `python app.py` tells its operator: where it serves which bots, one line per request,
and why it cannot start when its port is taken (issue 8.7)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine.loader import load_paths

from ._poe import query, user
from ._server import Server, wait_for
from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY, REPO

SLOW_BOT = """\
    access_key: ${SLOW_ACCESS_KEY}
    model: {provider: scripted, replies: ["one two three four five six"], delay: 1}
    routes: [{llm: {}}]
    """


def test_start_up_names_the_address_and_the_bots(tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log", workers=1)
    try:
        log = server.log()
    finally:
        server.stop()
    url = f"http://127.0.0.1:{server.port}"
    assert "Listening at:  (" not in log  # gunicorn's line, which had no address
    assert re.search(rf"\[INFO\] Listening at: {re.escape(url)} \(\d+\)$", log, re.MULTILINE)
    names = ", ".join(sorted(load_paths([BOTS_DIR], EXAMPLE_ENV).bots))
    assert f" INFO engine.server: serving {len(names.split(', '))} bots on {url}: {names}\n" in log


def test_each_request_leaves_one_line(tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log", workers=1)
    try:
        mark = server.mark()
        status, _ = server.post("/hello", query(user("nobody reads this")))
        assert status == 200
        wait_for(lambda: "bot hello: query" in server.log_since(mark), "the request line")
        status, _ = server.post("/hello", {"version": "1.2", "type": "settings"}, key="wrong")
        assert status == 401
        wait_for(lambda: "bot hello: request 401" in server.log_since(mark), "the 401 line")
        logged = server.log_since(mark)
    finally:
        server.stop()
    lines = [line for line in logged.splitlines() if "engine.requests" in line]
    assert len(lines) == 2, logged
    ending = r" in \d+\.\d ms$"
    assert re.search(r" INFO engine.requests: bot hello: query 200 answered" + ending, lines[0])
    assert re.search(
        r": bot hello: request 401 refused: missing or wrong access key" + ending, lines[1]
    )
    assert "nobody reads this" not in logged and KEY not in logged


def test_a_client_that_leaves_is_logged_as_such(tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    bots.mkdir()
    (bots / "slow.yaml").write_text(textwrap.dedent(SLOW_BOT), encoding="utf-8")
    server = Server(tmp_path / "server.log", workers=1, BOTS_DIR=str(bots), SLOW_ACCESS_KEY=KEY)
    try:
        mark = server.mark()
        connection = server.connect()
        connection.request("POST", "/slow", json.dumps(query(user("hi"))), server.headers())
        response = connection.getresponse()
        assert response.read1(100).startswith(b"event: meta")  # the answer is under way
        connection.close()  # and its reader leaves
        wait_for(lambda: "bot slow: query" in server.log_since(mark), "the request line")
        logged = server.log_since(mark)
    finally:
        server.stop()
    assert re.search(
        r"engine.requests: bot slow: query 200 client left in \d+\.\d ms$", logged, re.M
    )


def _app(env: dict[str, str]) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "BOTS_DIR")}
    return subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=clean | {"PYTHONUNBUFFERED": "1"} | env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_port_in_use_stops_the_start_at_once() -> None:
    """It used to boot workers that each failed to bind and were replaced, forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        app = _app({"PORT": str(port)})
        try:
            _, stderr = app.communicate(timeout=30)
        finally:
            app.kill()
            app.communicate()
    assert app.returncode == 1
    assert time.monotonic() - started < 15
    assert stderr.decode().splitlines()[-2:] == [
        "not starting:",
        f"cannot bind 127.0.0.1:{port}: address already in use (another server is running "
        "there; stop it or set PORT)",
    ]


def test_port_zero_serves_every_worker_on_one_port(tmp_path: Path) -> None:
    app = _app({"PORT": "0", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "info"})
    assert app.stderr is not None
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while b"engine.server: serving" not in seen and time.monotonic() < deadline:
            seen += app.stderr.readline()
        match = re.search(rb"serving \d+ bots on http://127\.0\.0\.1:(\d+)", seen)
        assert match is not None, seen.decode()
        port = int(match[1])
        wait_for(lambda: _listeners(port) == 2, "both workers to listen on the port", 20)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        app.terminate()
        app.communicate(timeout=30)


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1] == local and row.split()[3] == "0A")
