"""Local stand-ins for OpenAI's and Anthropic's streaming APIs, scripted request by request.

`FakeLLM("openai")` answers `POST /v1/chat/completions` with chat-completion chunks then
`data: [DONE]`; `FakeLLM("anthropic")` answers `POST /v1/messages` with the messages event
sequence; `FakeLLM("poe")` answers `POST /fake-bot` as a Poe server bot does (`meta`, `text`
events, `done`). Each listens on 127.0.0.1 (a free port) in a background thread, records every
request exactly as it arrived, and plays one `Reply` per request: chunks with delays, an HTTP
error, a hang before the first byte, an invalid JSON line, a connection cut mid-stream or a
body that ends cleanly without the stream's end marker. While a reply is being played the
server watches its socket, so it records the moment the client went away.

Responses use HTTP/1.1 chunked encoding, as the real APIs do, so a cut connection is an
incomplete body to the client rather than a normal end; an `unfinished` reply is the other
kind of early end, a body delimited by the connection closing, which the client cannot tell
from a whole one except by the missing end marker.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["openai", "anthropic", "poe"]
POE_BOT = "fake-bot"  # the bot name a `poe` model calls on this server
PATHS: dict[str, str] = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "poe": f"/{POE_BOT}",
}
# Longest any scripted wait lasts; a test that needs longer is a broken test.
MAX_WAIT = 30.0


@dataclass(frozen=True)
class Reply:
    """What the server does with one request.

    `hang`: seconds before any byte of the response (the SDK's `create` blocks meanwhile).
    `delay`: seconds before each chunk (one number, or one per chunk).
    `malformed`: an invalid JSON `data:` line after the chunks, then the normal end.
    `cut`: the connection is dropped after the chunks, without the stream's end.
    `unfinished`: the body ends after the chunks without the stream's end marker (`[DONE]`,
    `message_stop`, `done`), the connection closing as an EOF-delimited body ends: no
    framing tells the client that anything is missing.
    `error_event`: an error sent inside the 200 stream after the chunks (OpenAI: a data
    line with `error`; Anthropic: an `error` event with `overloaded_error`; Poe: an `error`
    event with `allow_retry`).
    """

    chunks: Sequence[str] = ("Hello", " world")
    delay: float | Sequence[float] = 0.0
    status: int = 200
    hang: float = 0.0
    malformed: bool = False
    cut: bool = False
    unfinished: bool = False
    error_event: bool = False
    message: str = "scripted failure"

    def delay_before(self, index: int) -> float:
        if isinstance(self.delay, int | float):
            return float(self.delay)
        return float(self.delay[index]) if index < len(self.delay) else 0.0


def chunks(*texts: str, delay: float | Sequence[float] = 0.0) -> Reply:
    return Reply(chunks=texts, delay=delay)


def status(code: int, message: str = "scripted failure") -> Reply:
    return Reply(chunks=(), status=code, message=message)


def hang(seconds: float = MAX_WAIT) -> Reply:
    """No answer at all until `seconds` pass, the client leaves or the server stops."""
    return Reply(hang=seconds)


@dataclass
class Recorded:
    """One request as the server saw it, and what became of its answer."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    started: float  # time.monotonic()
    sent: list[float] = field(default_factory=list)  # when each chunk was written
    completed: bool = False  # the whole scripted reply was written
    disconnected: float | None = None  # when the client went away before the end

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


class ClientGone(Exception):
    """The client closed the connection before the reply was over."""


class FakeLLM:
    """One fake provider API; use as a context manager, or call `start` and `stop`."""

    def __init__(self, kind: Kind, default: Reply | None = None) -> None:
        self.kind: Kind = kind
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends every hang and delay now
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The model's `base_url`: OpenAI's includes `/v1`, Anthropic's does not, Poe's
        ends with the slash the bot's name follows."""
        root = f"http://127.0.0.1:{self.port}"
        return root + {"openai": "/v1", "anthropic": "", "poe": "/"}[self.kind]

    # ------------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> FakeLLM:
        """Replies for the next requests, in order; then `default` for every other one."""
        with self._lock:
            self._script.extend(replies)
        return self

    def next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        wait_until(lambda: len(self.requests) >= count, f"{count} request(s)", timeout)
        return self.requests

    def wait_for_disconnect(self, index: int = -1, timeout: float = 3.0) -> float:
        """When request `index`'s client went away; fails after `timeout` seconds."""
        record = self.requests[index]
        wait_until(lambda: record.disconnected is not None, "the client to disconnect", timeout)
        assert record.disconnected is not None
        return record.disconnected

    # ------------------------------------------------------------------ wire format

    def stream_events(self, reply: Reply, body: dict[str, Any]) -> Iterator[Part]:
        """The response body: bytes to write, and delays (seconds) to wait before them."""
        model = str(body.get("model", "model"))
        if self.kind == "openai":
            yield from _openai_events(reply, model)
        elif self.kind == "anthropic":
            yield from _anthropic_events(reply, model)
        else:
            yield from _poe_events(reply)

    def error_body(self, reply: Reply) -> dict[str, Any]:
        if self.kind == "openai":
            return {"error": {"message": reply.message, "type": "scripted", "code": None}}
        if self.kind == "poe":
            return {"text": reply.message}
        return {"type": "error", "error": {"type": "api_error", "message": reply.message}}


@dataclass(frozen=True)
class _TextChunk:
    """Bytes carrying answer text: the server notes when each one was written."""

    data: bytes


Part = bytes | float | _TextChunk


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def _openai_events(reply: Reply, model: str) -> Iterator[Part]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    for index, text in enumerate(reply.chunks):
        yield reply.delay_before(index)
        yield _TextChunk(chunk({"content": text}))
    if reply.malformed:
        yield b'data: {"id": "chatcmpl-fake", "choices": [\n\n'
    if reply.error_event:
        yield _sse({"error": {"message": reply.message, "type": "server_error", "code": None}})
        return
    if reply.cut or reply.unfinished:
        return
    yield chunk({}, "stop")
    yield _sse("[DONE]")


def _anthropic_events(reply: Reply, model: str) -> Iterator[Part]:
    usage = {"input_tokens": 10, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    yield _sse({"type": "message_start", "message": message}, "message_start")
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield _sse(start, "content_block_start")
    yield _sse({"type": "ping"}, "ping")
    for index, text in enumerate(reply.chunks):
        yield reply.delay_before(index)
        delta = {"type": "content_block_delta", "index": 0}
        text_delta = {"delta": {"type": "text_delta", "text": text}}
        yield _TextChunk(_sse(delta | text_delta, "content_block_delta"))
    if reply.malformed:
        yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta":\n\n'
    if reply.error_event:
        error = {"type": "overloaded_error", "message": reply.message}
        yield _sse({"type": "error", "error": error}, "error")
        return
    if reply.cut or reply.unfinished:
        return
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    yield _sse(
        {"type": "message_delta", "delta": stop, "usage": {"output_tokens": 5}}, "message_delta"
    )
    yield _sse({"type": "message_stop"}, "message_stop")


def _poe_events(reply: Reply) -> Iterator[Part]:
    meta = {"content_type": "text/markdown", "suggested_replies": False}
    yield _sse(meta, "meta")
    for index, text in enumerate(reply.chunks):
        yield reply.delay_before(index)
        yield _TextChunk(_sse({"text": text}, "text"))
    if reply.malformed:
        yield b'event: text\ndata: {"text": \n\n'
    if reply.error_event:
        yield _sse({"text": reply.message, "allow_retry": True}, "error")
    if reply.cut or reply.unfinished:
        return
    yield _sse({}, "done")


# ---------------------------------------------------------------------------- HTTP handling


def _handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # keep pytest's output clean

        def do_POST(self) -> None:
            try:
                self._answer()
            except ClientGone:
                pass
            except OSError:  # the client vanished while we wrote; recorded where possible
                pass
            self.close_connection = True

        def _answer(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_raw": raw.decode(errors="replace")}
            record = Recorded(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                started=time.monotonic(),
            )
            fake.requests.append(record)
            reply = fake.next_reply()
            try:
                self._play(record, reply)
            except ClientGone:
                record.disconnected = time.monotonic()
                raise

        def _play(self, record: Recorded, reply: Reply) -> None:
            if self.path != PATHS[fake.kind]:
                reply = Reply(chunks=(), status=404, message=f"no route {self.path}")
            self._wait(reply.hang)
            if reply.status != 200:
                payload = json.dumps(fake.error_body(reply)).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self._write(payload)
                record.completed = True
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            if not reply.unfinished:  # else the body ends where the connection does
                self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for part in fake.stream_events(reply, record.body):
                if isinstance(part, float):
                    self._wait(part)
                    continue
                data = part.data if isinstance(part, _TextChunk) else part
                if not reply.unfinished:
                    data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
                self._write(data)
                if isinstance(part, _TextChunk):
                    record.sent.append(time.monotonic())
            if reply.unfinished:
                record.completed = True
                return  # the server closes the connection: a clean end of the body
            if reply.cut:
                # Leave without the terminating chunk: the body is visibly incomplete.
                self.connection.shutdown(socket.SHUT_RDWR)
                record.completed = True
                return
            self._write(b"0\r\n\r\n")
            record.completed = True

        def _write(self, data: bytes) -> None:
            if self._gone():
                raise ClientGone
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                raise ClientGone from None

        def _wait(self, seconds: float) -> None:
            """Sleep, watching the socket: a client that leaves ends the wait at once."""
            deadline = time.monotonic() + min(seconds, MAX_WAIT)
            while (left := deadline - time.monotonic()) > 0:
                if fake._stopping.is_set():
                    raise ClientGone
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.01))
                if readable and self._gone():
                    raise ClientGone

        def _gone(self) -> bool:
            """EOF or a reset on a connection that has nothing more to send us."""
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
            except OSError:
                return True

    return Handler


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
