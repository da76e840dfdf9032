"""Start, check and stop benchmark processes: loopback only, pinned, always bounded in time."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST = "127.0.0.1"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    log_file: IO[bytes]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def pinned(cpu: int | None) -> None:
    """Pin this process (the load generator) to one core."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus is not None else []


def start_server(
    args: list[str],
    port: int,
    cpus: str | None = "0",
    ready_path: str = "/",
    timeout: float = 30.0,
    log_name: str | None = None,
) -> Server:
    """`python -m bench.serve ARGS --port PORT` pinned to `cpus`, once it answers HTTP."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"{log_name or args[0]}-{port}.log"
    log_file = log.open("wb")
    command = [*_taskset(cpus), sys.executable, "-m", "bench.serve", *args, "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process, port, log, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _answers(port, ready_path):
            if "--workers" in args:  # let every worker bind its own SO_REUSEPORT socket
                time.sleep(1.5)
            return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server {' '.join(args)} did not start; see {log}")


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status > 0
    except OSError:
        return False
    finally:
        connection.close()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`: gunicorn's workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def stop_server(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM the server's own process group (gunicorn drains), SIGKILL if it lingers."""
    pgid = server.process.pid  # start_new_session: the group is ours alone
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            server.process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    server.log_file.close()


def run_json(command: list[str], cpus: str | None = "1", timeout: float = 120.0) -> Any:
    """Run a bench module pinned to `cpus` and parse the JSON object it prints last."""
    completed = subprocess.run(
        [*_taskset(cpus), sys.executable, *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])
