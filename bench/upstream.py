"""A local OpenAI-compatible model for the streaming benchmark: `python -m bench.upstream --port N`.

`POST /v1/chat/completions` with `"stream": true` answers in OpenAI's chat-completions
streaming wire format (`data: {chunk json}` lines, then `data: [DONE]`, HTTP/1.1 chunked,
keep-alive): `--chunks` text chunks (20) `--interval` seconds apart (0.05). `POST
/v1/messages` answers the same in Anthropic's messages stream, `POST /poe/<bot>` in Poe's
bot query protocol (`meta`, `text` events, `done`). Every chunk's
text carries the moment it was written, `[t=<time.monotonic_ns()>]`: CLOCK_MONOTONIC is one
clock for every process on a Linux machine, so a client can tell how long each chunk took to
reach it through the server under test.

The last user message may change one answer: `first_delay=3` waits 3 s before anything
(status line and headers included) is sent, as a slow model does; `chunks=N` sends N chunks.

A raw asyncio protocol with one timer per open answer, no framework: it holds thousands of
streams at a few microseconds per chunk. `GET /stats` answers how many answers were started,
completed, cut off by the caller, how many were open at most at once (since the last
`GET /stats/reset`), and this process's CPU seconds. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import time
from typing import Any

HOST = "127.0.0.1"
DIRECTIVE = re.compile(r"\b(first_delay|chunks)=(\d+(?:\.\d+)?)")
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
# One chunk of the stream, split around the text (the id and created are fixed).
_CHUNK = (
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    '"model":"bench","choices":[{"index":0,"delta":{"content":"TEXT"},"finish_reason":null}]}'
)
CHUNK_BEFORE, CHUNK_AFTER = (part.encode() for part in _CHUNK.split("TEXT"))
FINISH = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
END = b"%x\r\n%s\r\n0\r\n\r\n" % (len(FINISH), FINISH)


def _sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


class WireFormat:
    """How one API frames a streamed answer: what comes before the first chunk, each
    chunk around its text, and the end (every chunk is one HTTP/1.1 chunked frame)."""

    def __init__(self, before: bytes, chunk: str, finish: bytes) -> None:
        self.before = before
        self.chunk_before, self.chunk_after = (part.encode() for part in chunk.split("TEXT"))
        self.end = b"%x\r\n%s\r\n0\r\n\r\n" % (len(finish), finish)


OPENAI = WireFormat(b"", "data: " + _CHUNK + "\n\n", FINISH)
# Anthropic's messages stream (`POST /v1/messages`), as its API sends it.
ANTHROPIC = WireFormat(
    _sse(
        "message_start",
        '{"type":"message_start","message":{"id":"msg_bench","type":"message","role":'
        '"assistant","model":"bench","content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":10,"output_tokens":1}}}',
    )
    + _sse(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    "event: content_block_delta\ndata: "
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"TEXT"}}\n\n',
    _sse("content_block_stop", '{"type":"content_block_stop","index":0}')
    + _sse(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"output_tokens":20}}',
    )
    + _sse("message_stop", '{"type":"message_stop"}'),
)
# Poe's bot query protocol (`POST /poe/<bot>`), as another Poe bot answers it.
POE = WireFormat(
    b'event: meta\r\ndata: {"content_type": "text/markdown", "suggested_replies": false}\r\n\r\n',
    'event: text\r\ndata: {"text": "TEXT"}\r\n\r\n',
    b"event: done\r\ndata: {}\r\n\r\n",
)


class Stats:
    started = completed = cut_off = open_now = max_open = 0
    bad_requests = 0


def _frame(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _reply(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\n\r\n"
        + body
    )


class Upstream(asyncio.Protocol):
    """One connection: requests in turn (keep-alive), one streamed answer at a time."""

    def __init__(self, chunks: int, interval: float, stats: Stats) -> None:
        self.default_chunks, self.interval, self.stats = chunks, interval, stats
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.streaming = False
        self.wire = OPENAI

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.streaming:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        method, path = (head[0].split(" ") + ["", ""])[:2]
        assert self.transport is not None
        if method == "POST" and path.endswith("/chat/completions"):
            self._start(body, OPENAI)
        elif method == "POST" and path.endswith("/v1/messages"):
            self._start(body, ANTHROPIC)
        elif method == "POST" and path.startswith("/poe/"):
            self._start(body, POE)
        elif method == "GET" and path in ("/stats", "/stats/reset"):
            self.transport.write(_reply("200 OK", json.dumps(self._stats()).encode()))
            if path == "/stats/reset":  # a new phase: count the most open from now on
                self.stats.max_open = self.stats.open_now
            self._next_request()
        else:
            self.transport.write(_reply("200 OK", b"bench upstream\n", b"text/plain"))
            self._next_request()

    def _stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = self.stats
        return {
            "started": stats.started,
            "completed": stats.completed,
            "cut_off": stats.cut_off,
            "open": stats.open_now,
            "max_open": stats.max_open,
            "bad_requests": stats.bad_requests,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        }

    def _start(self, body: bytes, wire: WireFormat) -> None:
        assert self.transport is not None
        try:
            request = json.loads(body)
            if wire is POE:
                assert request["type"] == "query" and request["query"]
                last = str(request["query"][-1].get("content", ""))
            else:
                assert request.get("stream") is True and request["messages"]
                last = str(request["messages"][-1].get("content", ""))
        except (ValueError, AssertionError, KeyError, TypeError, AttributeError):
            self.stats.bad_requests += 1
            self.transport.write(_reply("400 Bad Request", b'{"error": {"message": "bad"}}'))
            self._next_request()
            return
        options = {name: float(value) for name, value in DIRECTIVE.findall(last)}
        self.chunks = int(options.get("chunks", self.default_chunks))
        self.wire = wire
        self.sent = 0
        self.streaming = True
        stats = self.stats
        stats.started += 1
        stats.open_now += 1
        stats.max_open = max(stats.max_open, stats.open_now)
        # Absolute times from the request's arrival, so timer delays do not add up.
        self.start = self.loop.time() + options.get("first_delay", 0.0)
        self.timer = self.loop.call_at(self.start, self._send)

    def _send(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        index = self.sent
        wire = self.wire
        text = b"tok%d [t=%d] " % (index, time.monotonic_ns())
        data = _frame(wire.chunk_before + text + wire.chunk_after)
        if index == 0:
            data = HEAD + (_frame(wire.before) if wire.before else b"") + data
        self.sent = index + 1
        if self.sent >= self.chunks:
            transport.write(data + wire.end)
            self.timer = None
            self.streaming = False
            self.stats.completed += 1
            self.stats.open_now -= 1
            self._next_request()
            return
        transport.write(data)
        self.timer = self.loop.call_at(self.start + self.sent * self.interval, self._send)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.streaming:
            self.streaming = False
            self.stats.cut_off += 1
            self.stats.open_now -= 1


def serve(port: int, chunks: int, interval: float) -> None:
    stats = Stats()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Upstream(chunks, interval, stats), HOST, port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    serve(args.port, args.chunks, args.interval)


if __name__ == "__main__":
    main()
