"""First byte with 5,000 conversations opened at once on the production config (issue 13).

`python -m bench.first_byte [--conversations 5000] [--runs 3]` writes a bot whose model is
`scripted` (20 words, `delay: 0.05`, so 20 chunks 50 ms apart, about 1 s) with one
`llm: {}` route, serves it with engine.server.Server and WEB_CONCURRENCY=2 (our exact
gunicorn options, both cores: the production layout), and opens every conversation at
once, each a real Poe query with the bot's access key, from one asyncio client pinned to
core 1 (fd limit raised, inherited by the server). Per conversation: connect time, time to
the first byte (the `meta` event; from the request being written, and from the connect
starting), time to the last byte, the 20 chunks and `done` checked, errors. Per worker:
RSS idle (after a warm-up) and at its peak during the burst, sampled every 50 ms with the
number of conversations open at that moment, for memory per open conversation.

A fresh server per run. Prints one JSON line per run and a summary line; `--profile DIR`
runs the workers under cProfile (bench/serve.py `--profile`), which slows them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import select
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .llm_streams import session_cpu, wait_idle
from .loadgen import percentile
from .procs import HOST, RESULTS, Server, children, free_port, pinned, start_server, stop_server
from .serve import ACCESS_KEY
from .streams import raise_fd_limit

CLIENT_CPU = 1
WORDS = 20
BOT = """\
# Written by bench/first_byte.py: a model that streams {words} words {delay} s apart.
description: Streams a scripted reply word by word, like a model.
access_key: ${{BENCH_ACCESS_KEY}}
model:
  provider: scripted
  delay: {delay}
  replies:
    - {reply}
routes:
  - llm: {{}}
"""
STORY = (
    "Once upon a time a small hero set out at dawn with a lantern and a question "
    "that grew into a map home"
)
END = b"\r\n0\r\n\r\n"
TEXT_EVENT = re.compile(
    rb"event: text\r\ndata: (\{.*?\})\r\n"
)  # the last chunk of a chunked HTTP/1.1 answer
now = time.perf_counter


def reply_of(words: int) -> str:
    story = STORY.split()
    return " ".join((story * (words // len(story) + 1))[:words])


def bot_dir(words: int, delay: float) -> Path:
    folder = RESULTS / "first-byte-bots"
    folder.mkdir(parents=True, exist_ok=True)
    bot = BOT.format(words=words, delay=delay, reply=reply_of(words))
    (folder / "scripted.yaml").write_text(bot)
    return folder


def query(port: int) -> bytes:
    body = json.dumps(
        {
            "version": "1.2",
            "type": "query",
            "query": [
                {"role": "user", "content": "Tell me a story.", "content_type": "text/markdown"}
            ],
            "user_id": "u-bench",
            "conversation_id": "c-bench",
            "message_id": "m-bench",
        }
    ).encode()
    return (
        f"POST /scripted HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {ACCESS_KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Counts:
    """Conversations open now (connected, answer not complete): what RSS is divided by."""

    open: int = 0


# The kernel's receive time of the bytes read (SO_TIMESTAMPNS, CLOCK_REALTIME): a first byte
# is timed when it reached the client's socket, however busy the client was at that moment.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)


class Conversation:
    """One query on one connection: times (wall clock, seconds) and the bytes received."""

    __slots__ = ("sock", "start", "sent", "first", "end", "buffer", "error", "events")

    def __init__(self, sock: socket.socket, start: float) -> None:
        self.sock, self.start = sock, start
        self.sent = self.first = self.end = 0.0
        self.buffer = bytearray()
        self.error = ""
        self.events = 0

    def check(self, reply: str) -> str:
        answer = bytes(self.buffer)
        if not answer.startswith(b"HTTP/1.1 200"):
            return f"status {answer[9:12].decode(errors='replace')}"
        body = answer.split(b"\r\n\r\n", 1)[1]
        if not body.split(b"\r\n", 1)[-1].startswith(b"event: meta"):  # after the chunk size
            return "first event not meta"
        if b"event: error" in answer:
            return "error event"
        if b"event: done" not in answer:
            return "no done event"
        texts = [json.loads(data)["text"] for data in TEXT_EVENT.findall(answer)]
        self.events = len(texts)
        return "" if "".join(texts) == reply else f"wrong text: {''.join(texts)[:60]!r}"


def _received_at(ancillary: list[tuple[int, int, bytes]], default: float) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", data)
            return float(seconds + nanoseconds * 1e-9)
    return default


def burst(port: int, n: int, reply: str, counts: Counts, timeout: float) -> list[Conversation]:
    """Open `n` connections at once, each sending the query as soon as it is connected, and
    read every answer to its end: one epoll loop, no asyncio (a cheaper client, so the
    numbers are the server's)."""
    request = query(port)
    poller = select.epoll()
    open_: dict[int, Conversation] = {}
    everyone = []
    clock = time.time
    for _ in range(n):
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        conversation = Conversation(sock, clock())
        everyone.append(conversation)
        sock.connect_ex((HOST, port))
        open_[sock.fileno()] = conversation
        poller.register(sock.fileno(), select.EPOLLOUT)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        for fd, _mask in poller.poll(0.5):
            conversation = open_[fd]
            sock = conversation.sock
            if not conversation.sent:
                problem = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if problem:
                    _end(conversation, f"connect: {os.strerror(problem)}", poller, open_, counts)
                    continue
                sock.send(request)  # a few hundred bytes: the empty buffer takes them
                conversation.sent = clock()
                counts.open += 1
                poller.modify(fd, select.EPOLLIN)
                continue
            try:
                data, ancillary, _flags, _address = sock.recvmsg(262144, _ANCILLARY)
            except OSError as exc:
                _end(conversation, f"closed early: {exc.__class__.__name__}", poller, open_, counts)
                continue
            if not data:
                _end(conversation, "closed early: EOF", poller, open_, counts)
                continue
            at = _received_at(ancillary, clock())
            if not conversation.first:
                conversation.first = at
            conversation.buffer += data
            if conversation.buffer.endswith(END):
                conversation.end = at
                _end(conversation, "", poller, open_, counts)
    for conversation in list(open_.values()):
        _end(conversation, "timeout", poller, open_, counts)
    poller.close()
    # Each answer is checked once all have ended: checking them as they ended took the
    # CPU (JSON of every text event, 0.5 s in all) from the server on the cores they share.
    for conversation in everyone:
        if conversation.end and not conversation.error:
            conversation.error = conversation.check(reply)
    return everyone


def _end(
    conversation: Conversation,
    error: str,
    poller: select.epoll,
    open_: dict[int, Conversation],
    counts: Counts,
) -> None:
    if conversation.sent:
        counts.open -= 1
    fd = conversation.sock.fileno()
    poller.unregister(fd)
    del open_[fd]
    conversation.error = error
    conversation.sock.close()


def worker_pids(server: Server) -> list[int]:
    """The gunicorn workers: the children of the arbiter (`bench.serve` itself)."""
    return sorted(children(server.process.pid))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """RSS of each worker every `every` s, with the client's count of open conversations."""

    def __init__(self, pids: list[int], counts: Counts, every: float = 0.05) -> None:
        self.pids, self.counts, self.every = pids, counts, every
        self.peak = dict.fromkeys(pids, 0)
        self.peak_total = 0
        self.open_at_peak = 0
        self.most_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                sizes = {pid: rss_kib(pid) for pid in self.pids}
            except OSError:
                continue
            opened = self.counts.open
            self.most_open = max(self.most_open, opened)
            for pid, size in sizes.items():
                self.peak[pid] = max(self.peak[pid], size)
            if sum(sizes.values()) > self.peak_total:
                self.peak_total, self.open_at_peak = sum(sizes.values()), opened

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def machine_busy() -> float:
    """CPU seconds every core has spent busy since boot (/proc/stat), to tell what other
    programs took during a run: a shared machine's numbers mean little without it."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pcts(values: list[float], name: str) -> dict[str, float]:
    values.sort()
    return {
        f"{name}_p50": round(percentile(values, 50) * 1000, 1),
        f"{name}_p99": round(percentile(values, 99) * 1000, 1),
        f"{name}_max": round((values[-1] if values else float("nan")) * 1000, 1),
    }


def one_run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    port = free_port()
    extra = ["--profile", str(args.profile)] if args.profile else []
    server = start_server(
        ["engine", "--workers", str(args.workers), "--bots", str(folder), *extra],
        port,
        cpus="0,1" if args.workers > 1 else "0",  # explicit: this process is pinned
        ready_path="/healthz",
        log_name="first-byte",
    )
    try:
        counts = Counts()
        warm = burst(port, 100, reply_of(args.words), counts, 30.0)  # imports, templates
        warm_errors = Counter(c.error for c in warm if c.error)
        wait_idle(server)
        pids = worker_pids(server)
        idle = {pid: rss_kib(pid) for pid in pids}
        load = os.getloadavg()
        cpu0, busy0 = session_cpu(server.process.pid), machine_busy()
        sampler = RssSampler(pids, counts)
        start = now()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        gc.disable()  # the client's collections would pause its reading
        try:
            results = burst(port, args.conversations, reply_of(args.words), counts, args.timeout)
        finally:
            gc.enable()
        used = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = used.ru_utime - usage.ru_utime + used.ru_stime - usage.ru_stime
        wall = now() - start
        sampler.stop()
        cpu = session_cpu(server.process.pid) - cpu0
        busy = machine_busy() - busy0
    finally:
        stop_server(server)
    ok = [c for c in results if not c.error]
    grown = sampler.peak_total - sum(idle.values())
    return {
        "conversations": len(results),
        "completed": len(ok),
        "errors": dict(Counter(c.error for c in results if c.error)),
        "warm_errors": dict(warm_errors),
        **pcts([c.sent - c.start for c in ok], "connect_ms"),
        **pcts([c.first - c.sent for c in ok], "meta_ms"),
        **pcts([c.first - c.start for c in ok], "meta_from_connect_ms"),
        **pcts([c.end - c.sent for c in ok], "done_ms"),
        "meta_over_1s": sum(1 for c in ok if c.first - c.sent > 1.0),
        "text_events_mean": round(sum(c.events for c in ok) / max(len(ok), 1), 1),
        "wall_s": round(wall, 2),
        "server_cpu_s": round(cpu, 2),
        "client_cpu_s": round(client_cpu, 2),
        "others_cpu_s": round(busy - cpu - client_cpu, 2),
        "most_open": sampler.most_open,
        "rss_idle_mib": [round(idle[p] / 1024, 1) for p in pids],
        "rss_peak_mib": [round(sampler.peak[p] / 1024, 1) for p in pids],
        "open_at_peak": sampler.open_at_peak,
        "kib_per_open_conversation": round(grown / max(sampler.most_open, 1), 1),
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--words", type=int, default=WORDS)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per conversation")
    parser.add_argument("--profile", type=Path, help="cProfile each worker into DIR")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores")
    fds = raise_fd_limit(args.conversations * 2 + 1024)
    folder = bot_dir(args.words, args.delay)
    pinned(CLIENT_CPU)
    rows = []
    for index in range(args.runs):
        row = one_run(args, folder)
        row["run"], row["fd_limit"] = index + 1, fds
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ("meta_ms_p50", "meta_ms_p99", "meta_ms_max", "done_ms_p99", "kib_per_open_conversation")
    summary: dict[str, Any] = {key: [row[key] for row in rows] for key in keys}
    summary["errors"] = [sum(row["errors"].values()) for row in rows]
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
