"""A local stand-in for Poe's own endpoints (settings sync, file uploads) on 127.0.0.1.

It records every request it receives and answers each path with what the test set, so a
test sees exactly what the engine sent and how it handles each of Poe's answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, tuple[str | None, str | None, bytes]]:
        """A multipart body's parts: name -> (file name, content type, bytes)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        assert message.is_multipart(), self.headers["content-type"]
        parts: dict[str, tuple[str | None, str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            content_type = part.get("content-type")
            data = part.get_payload(decode=True)
            assert isinstance(name, str) and isinstance(data, bytes)
            parts[name] = (
                part.get_filename(),
                None if content_type is None else str(content_type),
                data,
            )
        return parts


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=dict)  # JSON, or bytes sent as they are


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.answers: dict[str, Answer] = {}  # by path prefix; the longest match answers
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def answer(self, prefix: str, status: int = 200, body: Any = None) -> None:
        self.answers[prefix] = Answer(status, {} if body is None else body)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.answers.clear()

    def answer_for(self, path: str) -> Answer:
        matches = [prefix for prefix in self.answers if path.startswith(prefix)]
        return self.answers[max(matches, key=len)] if matches else Answer()


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.lock:
            self.server.received.append(Received("POST", self.path, headers, body))
        answer = self.server.answer_for(self.path)
        data = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
