"""The real server (`python app.py`) as a subprocess on 127.0.0.1, for end-to-end tests.

Its log (gunicorn's and the engine's, both on stderr) goes to a file the tests read. Linux
/proc tells which worker process holds a given client connection.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .conftest import BOTS_DIR, KEY, REPO

ACCESS_KEYS = ("ACME_HELP_ACCESS_KEY", "IMAGE_STUDIO_ACCESS_KEY", "HELLO_ACCESS_KEY")
SERVER_VARS = (
    "HOST",
    "PORT",
    "BOTS_DIR",
    "MAX_BODY_BYTES",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "REDIS_URL",
    "STATE_DIR",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `check` every 20 ms until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Server:
    """One `python app.py` process serving the example bots with every access key set to KEY."""

    def __init__(self, log_path: Path, workers: int = 2, **env: str) -> None:
        """`env` overrides the server's variables. Its STATE_DIR (limits and remembered
        vars) is a folder of its own beside its log unless `env` names one to share."""
        self.port = free_port()
        self.state_dir = Path(env.get("STATE_DIR") or log_path.with_name(f"{log_path.stem}-state"))
        self.log_path = log_path
        self.workers = workers
        environ = {k: v for k, v in os.environ.items() if k not in SERVER_VARS + ACCESS_KEYS}
        environ |= {name: KEY for name in ACCESS_KEYS}
        environ |= {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "BOTS_DIR": str(BOTS_DIR),  # the example bots only
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **env,
            "STATE_DIR": str(self.state_dir),
        }
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._ready, f"the server on port {self.port} to answer /healthz", 20)
        except BaseException:
            self.stop()
            raise

    @property
    def base_url(self) -> str:
        """For fastapi_poe: it appends the bot name, so the trailing slash matters."""
        return f"http://127.0.0.1:{self.port}/"

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{self.log()}")
        if len(self.worker_pids()) < self.workers:
            return False
        try:
            status, _ = self.get("/healthz")
        except OSError:
            return False
        return status == 200

    # ------------------------------------------------------------------ log

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mark(self) -> int:
        """Where the log ends now; pass it to `log_since`."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ HTTP

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def get(self, path: str) -> tuple[int, bytes]:
        connection = self.connect()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post(self, path: str, body: dict[str, Any], key: str = KEY) -> tuple[int, bytes]:
        connection = self.connect()
        try:
            connection.request("POST", path, json.dumps(body), self.headers(key))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    @staticmethod
    def headers(key: str = KEY, length: int | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if length is not None:
            headers["Content-Length"] = str(length)
        return headers

    # ------------------------------------------------------------------ processes

    def worker_pids(self) -> set[int]:
        """The gunicorn workers: the processes whose parent is the server."""
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended while we looked
            if int(fields[1]) == self.process.pid:
                children.add(int(stat.parent.name))
        return children

    def owner_of(self, connection: http.client.HTTPConnection) -> int | None:
        """The worker whose socket is the server side of this client connection, if any yet."""
        assert connection.sock is not None
        inode = _server_side_inode(self.port, connection.sock.getsockname()[1])
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in self.worker_pids():
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        return None  # still in the accept queue

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; kill only if the graceful shutdown hangs."""
        if self.process.poll() is None:
            self.terminate()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        finally:
            self._log.close()
        return code


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    """From /proc/net/tcp: the socket local to the server port, remote to the client port."""
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[9])
    return None
