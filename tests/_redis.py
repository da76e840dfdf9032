"""A throwaway redis-server on a free loopback port, for the tests of limits and memory.

The `redis_server` fixture (tests/conftest.py) starts one per test and stops it after.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._server import free_port, wait_for

REDIS_SERVER = shutil.which("redis-server")
MISSING_REDIS = (
    "redis-server is not installed (apt-get install -y redis-server, as the README's "
    "test command does)"
)
# On a developer's machine a missing redis-server skips these tests; in CI, where the
# README's test command installs it, its absence is a failure, never a silent green.
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None and not os.environ.get("CI"), reason=MISSING_REDIS
)


class RedisServer:
    """A throwaway redis-server on a free loopback port, saving nothing to disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, f"redis-server on port {self.port}", 10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A started RedisServer, stopped afterwards; skipped (failed in CI) when not installed."""
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING_REDIS)
        pytest.skip(MISSING_REDIS)
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
