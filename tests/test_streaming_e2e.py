"""The real server (`python app.py`) relaying models: a fake OpenAI server in this process, and
a bot of the same server called over HTTP through the `poe` provider.

The fake server and the test's client share this process's monotonic clock, so a chunk's
arrival at the client can be compared with the moment the fake server wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from . import _server
from ._poe import query, user
from ._sdk import client as poe_client
from ._sdk import types as poe_types
from ._server import Server, free_port, wait_for
from .fake_llm import FakeLLM, Reply, chunks, wait_until

SHARED_KEY = "S" * 32  # the callers' key, which the callee also uses (see the callee's file)
STREAMER_KEY = "T" * 32
OTHER_KEY = "O" * 32
METADATA = "d-" + "7" * 32


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class RecordingProxy:
    """Forwards POSTs to the server unchanged, streaming the answer back, and records them."""

    target_port: int
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy.requests.append(Recorded(self.path, headers, json.loads(raw)))
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=20)
                forwarded = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request("POST", self.path, raw, forwarded)
                answer = upstream.getresponse()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                while data := answer.read1(65536):
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                upstream.close()
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


BOTS = {
    "streamer.yaml": """\
        access_key: ${STREAMER_KEY}
        model: {provider: openai, name: gpt-e2e, retries: 0, timeout: {total: 20}}
        routes:
          - llm: {system: You stream.}
        """,
    "suggester.yaml": """\
        access_key: ${STREAMER_KEY}
        model: {provider: openai, name: gpt-e2e, retries: 0, timeout: {total: 20}}
        routes:
          - llm: {system: You stream.}
            suggest: {generate: 2}
        """,
    # The callee is called with the caller's key, as Poe's bot API would be: so here it
    # shares it, and refuses everyone else.
    "callee.yaml": """\
        access_key: ${SHARED_KEY}
        routes:
          - reply: "callee heard {{ message }} from {{ user.id }} in {{ conversation.id }}"
        """,
    "caller.yaml": """\
        access_key: ${SHARED_KEY}
        model: {provider: poe, bot: callee, base_url: "SERVER_URL", retries: 0}
        routes:
          - llm: {system: Be nice.}
        """,
    "proxied-caller.yaml": """\
        access_key: ${SHARED_KEY}
        model: {provider: poe, bot: callee, base_url: "PROXY_URL", retries: 0, temperature: 0.4}
        routes:
          - llm: {prompt: "Relayed: {{ message }}"}
        """,
    # Through the proxy, which closes every connection: a refused call leaves the caller's
    # pooled connection open, and an idle keep-alive connection to itself would hold up
    # the server's graceful shutdown for its whole `graceful_timeout`.
    "wrong-key-caller.yaml": """\
        access_key: ${OTHER_KEY}
        model: {provider: poe, bot: callee, base_url: "PROXY_URL", retries: 0}
        routes:
          - llm: {}
        """,
}


@dataclass
class Setup:
    server: Server
    openai: FakeLLM
    proxy: RecordingProxy


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("streaming")
    bots = folder / "bots"
    bots.mkdir()
    port = free_port()
    proxy = RecordingProxy(port)
    for name, text in BOTS.items():
        text = text.replace("SERVER_URL", f"http://127.0.0.1:{port}/")
        text = text.replace("PROXY_URL", proxy.base_url)
        (bots / name).write_text(textwrap.dedent(text), encoding="utf-8")
    fake = FakeLLM("openai").start()
    env = {
        "BOTS_DIR": str(bots),
        "OPENAI_BASE_URL": fake.url,
        "OPENAI_API_KEY": "sk-e2e",
        "ANTHROPIC_API_KEY": "",
        "KEEPALIVE_SECONDS": "1",
        "SHARED_KEY": SHARED_KEY,
        "STREAMER_KEY": STREAMER_KEY,
        "OTHER_KEY": OTHER_KEY,
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_server, "free_port", lambda: port)  # the bots name this port
            server = Server(folder / "server.log", workers=2, **env)
    except BaseException:
        fake.stop()
        proxy.stop()
        raise
    yield Setup(server, fake, proxy)
    code = server.stop()
    fake.stop()
    proxy.stop()
    assert code == 0, server.log()


@contextlib.contextmanager
def no_report_error(server: Server) -> Iterator[None]:
    """fastapi_poe reports every protocol problem it sees back to the bot, which logs it."""
    mark = server.mark()
    yield
    assert "report_error" not in server.log_since(mark), server.log_since(mark)


@dataclass
class Arrival:
    name: str  # event name, or "ping" for a keep-alive comment
    data: dict[str, Any]
    at: float


class SSEReader:
    """Reads the server's stream with http.client, timestamping each block as it completes."""

    def __init__(self, server: Server, bot: str, body: dict[str, Any], key: str) -> None:
        self.connection = server.connect()
        self.connection.request("POST", f"/{bot}", json.dumps(body), server.headers(key))
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        self._buffer = b""

    def __iter__(self) -> Iterator[Arrival]:
        while True:
            while b"\r\n\r\n" not in self._buffer:
                data = self.response.read1(65536)
                if not data:
                    return
                self._buffer += data
            block, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            yield _parse_block(block.decode(), time.monotonic())

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def _parse_block(block: str, at: float) -> Arrival:
    if block.startswith(":"):
        return Arrival("ping", {}, at)
    name_line, data_line = block.split("\r\n")
    return Arrival(
        name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: ")), at
    )


def read_all(setup: Setup, bot: str, text: str, key: str = STREAMER_KEY) -> list[Arrival]:
    reader = SSEReader(setup.server, bot, query(user(text)), key)
    try:
        return list(reader)
    finally:
        reader.close()


# ---------------------------------------------------------------------------- streaming


def test_chunks_are_relayed_one_by_one(setup: Setup) -> None:
    words = ("one ", "two ", "three ", "four ", "five")
    setup.openai.script(chunks(*words, delay=0.3))
    arrivals = read_all(setup, "streamer", "count to five")
    texts = [a for a in arrivals if a.name == "text"]
    assert [a.data["text"] for a in texts] == list(words)
    assert [a.name for a in arrivals][0] == "meta" and arrivals[-1].name == "done"
    assert texts[-1].at - texts[0].at >= 1.0, "the chunks arrived together, not as written"
    sent = setup.openai.requests[-1].sent
    for index in range(len(words) - 1):
        # Chunk i reached the client before the model had even written chunk i+1.
        assert texts[index].at < sent[index + 1], f"chunk {index} was held back"
    request = setup.openai.requests[-1]
    assert request.headers["authorization"] == "Bearer sk-e2e"
    assert request.messages == [
        {"role": "system", "content": "You stream."},
        {"role": "user", "content": "count to five"},
    ]


def test_a_silent_upstream_gets_ping_comments(setup: Setup) -> None:
    setup.openai.script(Reply(chunks=("after a pause",), delay=2.4))
    arrivals = read_all(setup, "streamer", "think first")
    names = [a.name for a in arrivals]
    assert names[0] == "meta" and names[-2:] == ["text", "done"]
    pings = [a for a in arrivals if a.name == "ping"]
    assert 2 <= len(pings) <= 3, names
    assert all(ping.at < arrivals[-2].at for ping in pings)
    gaps = [later.at - earlier.at for earlier, later in zip(pings, pings[1:], strict=False)]
    assert all(0.7 < gap < 1.5 for gap in gaps), gaps


def test_a_client_that_leaves_closes_the_model_call(setup: Setup) -> None:
    """gunicorn notices on its next write (a keep-alive ping); the relay then hangs up too."""
    setup.openai.script(Reply(chunks=("first ", "never sent"), delay=[0, 15]))
    reader = SSEReader(setup.server, "streamer", query(user("go")), STREAMER_KEY)
    for arrival in reader:
        if arrival.name == "text":
            break
    left = time.monotonic()
    reader.close()
    gone = setup.openai.wait_for_disconnect(timeout=6.0)
    assert gone - left < 6.0
    assert not setup.openai.requests[-1].completed


def test_a_client_that_leaves_during_a_silence_closes_the_model_call_at_once(
    setup: Setup,
) -> None:
    """No waiting for a keep-alive write to fail: the server watches the connection."""
    setup.openai.script(Reply(chunks=("late",), delay=8))
    mark = setup.server.mark()
    reader = SSEReader(setup.server, "streamer", query(user("go")), STREAMER_KEY)
    assert next(iter(reader)).name == "meta"
    setup.openai.wait_for_requests(1)
    record = setup.openai.requests[-1]
    left = time.monotonic()
    reader.close()
    gone = setup.openai.wait_for_disconnect(setup.openai.requests.index(record), timeout=3.0)
    assert gone - left < 0.5  # a keep-alive comes every second; two writes notice a close
    wait_for(lambda: "the client went away" in setup.server.log_since(mark), "the log")


# ---------------------------------------------------------------------------- JSON mode


def post_json(setup: Setup, connection: http.client.HTTPConnection, bot: str, text: str) -> None:
    headers = {**setup.server.headers(STREAMER_KEY), "Accept": "application/json"}
    connection.request("POST", f"/{bot}", json.dumps(query(user(text))), headers)


def test_a_json_client_gets_the_whole_model_answer_and_keeps_its_connection(
    setup: Setup,
) -> None:
    setup.openai.script(
        chunks("Hello ", "there", delay=0.05), chunks("Next?\nMore"), chunks("Again")
    )
    connection = setup.server.connect()
    try:
        post_json(setup, connection, "suggester", "hi")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {
            "messages": [{"type": "message", "text": "Hello there"}],
            "suggested_replies": ["Next?", "More"],
            "isFinalResponse": True,
        }
        post_json(setup, connection, "streamer", "again")  # the same connection, kept alive
        response = connection.getresponse()
        assert json.loads(response.read())["messages"] == [{"type": "message", "text": "Again"}]
    finally:
        connection.close()


def test_a_json_client_that_leaves_closes_the_model_call_and_gets_no_suggestions(
    setup: Setup,
) -> None:
    """The answer is gathered before any byte is written, so no failed write would ever
    tell: without the watch, the model ran to its end and the suggestions were asked for."""
    setup.openai.script(Reply(chunks=("first ", "never sent"), delay=[0, 3]))
    before = len(setup.openai.requests)
    mark = setup.server.mark()
    connection = setup.server.connect()
    post_json(setup, connection, "suggester", "go")
    (record,) = setup.openai.wait_for_requests(before + 1)[before:]
    wait_until(lambda: bool(record.sent), "the first chunk", 5.0)
    left = time.monotonic()
    connection.close()
    gone = setup.openai.wait_for_disconnect(before, timeout=2.0)
    assert gone - left < 0.5
    assert not record.completed
    wait_for(lambda: "the client went away" in setup.server.log_since(mark), "the log")
    time.sleep(0.3)
    assert len(setup.openai.requests) == before + 1, "suggestions were asked for nobody"


def test_a_pipelined_request_is_not_taken_for_a_disconnect(setup: Setup) -> None:
    """A request sent before the answer: readable data, so the client is still there."""
    setup.openai.script(chunks("one ", "two", delay=[0, 0.6]), chunks("Next?"), chunks("three"))
    before = len(setup.openai.requests)
    headers = {**setup.server.headers(STREAMER_KEY), "Accept": "application/json"}
    with socket.create_connection(("127.0.0.1", setup.server.port), timeout=10) as client:
        client.sendall(raw_post("/suggester", query(user("first")), headers))
        (record,) = setup.openai.wait_for_requests(before + 1)[before:]
        wait_until(lambda: bool(record.sent), "the first chunk", 5.0)
        client.sendall(raw_post("/streamer", query(user("second")), headers))
        with client.makefile("rb") as replies:
            first, second = read_json_response(replies), read_json_response(replies)
    assert first["messages"] == [{"type": "message", "text": "one two"}]
    assert first["suggested_replies"] == ["Next?"]
    assert second["messages"] == [{"type": "message", "text": "three"}]
    assert record.completed and record.disconnected is None


def raw_post(path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def read_json_response(replies: Any) -> Any:
    status = replies.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    length = 0
    while (line := replies.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return json.loads(replies.read(length))


def test_the_official_client_reads_a_model_answer_without_complaint(setup: Setup) -> None:
    setup.openai.script(chunks("Hello ", "from ", "the model", delay=0.05))
    with no_report_error(setup.server):
        messages = ask(setup, "streamer", [poe_types.ProtocolMessage(role="user", content="hi")])
    assert isinstance(messages[0], poe_types.MetaResponse)
    assert "".join(m.text for m in messages[1:]) == "Hello from the model"


# ---------------------------------------------------------------------------- poe provider


def ask(setup: Setup, bot: str, messages: list[Any], key: str = STREAMER_KEY) -> list[Any]:
    async def collect() -> list[Any]:
        async with httpx.AsyncClient(timeout=20) as session:
            stream = poe_client.get_bot_response(
                messages, bot, key, base_url=setup.server.base_url, session=session
            )
            return [message async for message in stream]

    return asyncio.run(collect())


def forward(setup: Setup, bot: str, text: str) -> str:
    """What a Poe server bot does: stream_request with a full QueryRequest and metadata."""
    request = poe_types.QueryRequest(
        version="1.2",
        type="query",
        query=[poe_types.ProtocolMessage(role="user", content=text)],
        user_id="u-" + "1" * 32,
        conversation_id="c-" + "2" * 32,
        message_id="m-" + "3" * 32,
        metadata=METADATA,
    )

    async def final() -> str:
        async with httpx.AsyncClient(timeout=20) as session:
            return await poe_client.get_final_response(
                request, bot, SHARED_KEY, session=session, base_url=setup.server.base_url
            )

    return asyncio.run(final())


def test_a_bot_calls_another_bot_of_the_same_server(setup: Setup) -> None:
    with no_report_error(setup.server):
        text = forward(setup, "caller", "ping")
    assert text == f"callee heard ping from u-{'1' * 32} in c-{'2' * 32}"


def test_the_callee_gets_the_callers_key_and_the_metadata_token(setup: Setup) -> None:
    setup.proxy.requests.clear()
    with no_report_error(setup.server):
        text = forward(setup, "proxied-caller", "hello")
    assert text == f"callee heard Relayed: hello from u-{'1' * 32} in c-{'2' * 32}"
    (call,) = setup.proxy.requests
    assert call.path == "/callee"
    assert call.headers["authorization"] == f"Bearer {SHARED_KEY}"
    body = call.body
    assert body["metadata"] == METADATA
    assert (body["type"], body["version"]) == ("query", "1.2")
    assert (body["user_id"], body["conversation_id"]) == ("u-" + "1" * 32, "c-" + "2" * 32)
    assert body["temperature"] == 0.4
    assert body["query"] == [{"role": "user", "content": "Relayed: hello"}]


def test_a_callee_that_refuses_the_key_is_a_configuration_error(setup: Setup) -> None:
    setup.proxy.requests.clear()
    mark = setup.server.mark()
    arrivals = read_all(setup, "wrong-key-caller", "hi", key=OTHER_KEY)
    assert [a.name for a in arrivals] == ["meta", "error", "done"]
    assert arrivals[1].data == {
        "allow_retry": False,
        "text": "Sorry, this bot's model is not configured. Its creator has been told.",
    }
    log = setup.server.log_since(mark)
    assert "bot callee: refused a request with a missing or wrong access key" in log
    assert "poe bot callee answered HTTP 401" in log
    (call,) = setup.proxy.requests
    assert call.headers["authorization"] == f"Bearer {OTHER_KEY}"  # its own key, refused


def test_settings_declare_the_called_bot(setup: Setup) -> None:
    status, raw = setup.server.post("/caller", {"version": "1.2", "type": "settings"}, SHARED_KEY)
    assert status == 200
    assert json.loads(raw)["server_bot_dependencies"] == {"callee": 1}
