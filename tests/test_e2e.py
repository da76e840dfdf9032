"""The real server (`python app.py`: gunicorn + gevent) driven by Poe's own client, fastapi_poe.

fastapi_poe's client POSTs a `report_error` back to a bot whose stream breaks the
protocol; the engine logs each one as `bot <name>: report_error ...`. So "no line with
report_error in the server log" means the official client found nothing to complain about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._poe import parse_sse, query, user
from ._sdk import client as poe_client
from ._sdk import types as poe_types
from ._server import Server, wait_for
from .conftest import KEY

Message = poe_types.ProtocolMessage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # LOAD_JOBS=2: the bots every test here talks to were loaded by two processes, one of
    # them forked from the gevent-patched master, and sent back pickled.
    running = Server(tmp_path_factory.mktemp("e2e") / "server.log", workers=2, LOAD_JOBS="2")
    yield running
    code = running.stop()
    assert code == 0, running.log()
    assert "loading process failed" not in running.log()


@contextlib.contextmanager
def no_report_error(server: Server) -> Iterator[None]:
    """Fails if anything the block did made a client report a protocol error."""
    mark = server.mark()
    yield
    sent = server.log_since(mark)
    assert "report_error" not in sent, sent


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as session:
        yield session


def ask(server: Server, bot: str, messages: list[Message]) -> list[Any]:
    """Everything fastapi_poe's `get_bot_response` yields for one conversation."""

    async def collect() -> list[Any]:
        async with _session() as session:
            stream = poe_client.get_bot_response(
                messages, bot, KEY, base_url=server.base_url, session=session
            )
            return [message async for message in stream]

    return asyncio.run(collect())


def answer_text(messages: list[Any]) -> str:
    return "".join(
        m.text for m in messages if isinstance(m, poe_types.PartialResponse) and not _is_extra(m)
    )


def suggestions(messages: list[Any]) -> list[str]:
    return [m.text for m in messages if getattr(m, "is_suggested_reply", False)]


def _is_extra(message: Any) -> bool:
    return bool(message.is_suggested_reply) or isinstance(message, poe_types.MetaResponse)


def _user(text: str, **fields: Any) -> Message:
    return Message(role="user", content=text, **fields)


# ---------------------------------------------------------------------------- every bot


def test_hello_answers_through_the_official_client(server: Server) -> None:
    with no_report_error(server):
        messages = ask(server, "hello", [_user("hi")])
    assert isinstance(messages[0], poe_types.MetaResponse)
    assert answer_text(messages) == "Hello! You said: hi"
    assert suggestions(messages) == ["Hi again"]


def test_hello_reads_the_whole_conversation(server: Server) -> None:
    history = [
        Message(role="system", content="be brief"),
        _user("one"),
        Message(role="bot", content="Hello! You said: one"),
        _user("two — ünïcode\nsecond line"),
    ]
    with no_report_error(server):
        messages = ask(server, "hello", history)
    assert answer_text(messages) == "Hello again! You said: two — ünïcode\nsecond line"
    assert suggestions(messages) == ["Goodbye"]


def test_hello_counts_turns_of_a_repeated_message(server: Server) -> None:
    """The client sends no ids, so the two "hi" messages are identical on the wire."""
    history = [_user("hi"), Message(role="bot", content="Hello! You said: hi"), _user("hi")]
    with no_report_error(server):
        messages = ask(server, "hello", history)
    assert answer_text(messages) == "Hello again! You said: hi"


DEFAULT_SUGGESTIONS = ["How long is shipping?", "I want a refund", "Talk to a human"]


@pytest.mark.parametrize(
    ("say", "expected", "suggested"),
    [
        (
            "I want my money back",
            "Refunds take **5-7 days**",
            ["Start a refund", "How long is shipping?"],
        ),
        ("How long does delivery take?", "3-5 business days", ["I want a refund"]),
        ("Do you sell hats?", 'You said: "Do you sell hats?"', DEFAULT_SUGGESTIONS),
    ],
    ids=["refund", "shipping", "fallback"],
)
def test_acme_help_answers_through_the_official_client(
    server: Server, say: str, expected: str, suggested: list[str]
) -> None:
    with no_report_error(server):
        messages = ask(server, "acme-help", [_user(say)])
    assert expected in answer_text(messages)
    assert suggestions(messages) == suggested


def test_image_studio_reads_parameters_and_attachments(server: Server) -> None:
    attachments = [
        poe_types.Attachment(
            url="https://example.invalid/a.jpg",
            content_type="image/jpeg",
            name="a.jpg",
            parsed_content="a.jpg***A dog on a beach",
        ),
        poe_types.Attachment(
            url="https://example.invalid/b.webp", content_type="image/webp", name="b.webp"
        ),
    ]
    parameters = {"style": "pixel", "strength": 0.3, "keep_faces": False, "palette": "nes"}
    with no_report_error(server):
        messages = ask(
            server,
            "image-studio",
            [_user("make it retro", attachments=attachments, parameters=parameters)],
        )
    text = answer_text(messages)
    for part in ("2 images", "a.jpg: A dog on a beach", "**pixel** (nes palette)", "faces free"):
        assert part in text
    assert suggestions(messages) == ["Make it brighter", "Try watercolor", "Keep faces"]


@pytest.mark.parametrize(
    ("bot", "say", "text", "error_type"),
    [
        ("acme-help", "Talk to a human", "Our team is offline right now.", None),
        ("acme-help", "my password is hunter2", "Sorry, I can't accept", "user_caused_error"),
        ("acme-help", "x" * 301, "Your message is too long", "user_message_too_long"),
        ("image-studio", "no image here", "Please attach one or two images", "user_caused_error"),
    ],
    ids=["error-route", "rejected", "too-long", "attachment-required"],
)
def test_refusals_reach_the_client_as_errors_without_retry(
    server: Server, bot: str, say: str, text: str, error_type: str | None
) -> None:
    with no_report_error(server), pytest.raises(poe_client.BotErrorNoRetry) as caught:
        ask(server, bot, [_user(say)])
    error = json.loads(str(caught.value))
    assert error["allow_retry"] is False
    assert error["text"].startswith(text)
    assert error.get("error_type") == error_type


def test_a_calling_bot_can_forward_its_request(server: Server) -> None:
    """What a Poe server bot does to call another: stream_request with a full QueryRequest."""
    request = poe_types.QueryRequest(
        version="1.2",
        type="query",
        query=[_user("How long is shipping?")],
        user_id="u-00000000000000000000000000000009",
        conversation_id="c-00000000000000000000000000000005",
        message_id="m-00000000000000000000000000000006",
    )

    async def final() -> str:
        async with _session() as session:
            return await poe_client.get_final_response(
                request, "acme-help", KEY, session=session, base_url=server.base_url
            )

    with no_report_error(server):
        text = asyncio.run(final())
    assert text.startswith("Standard shipping takes 3-5 business days")


def test_the_report_error_detection_works(server: Server) -> None:
    """Sends the exact report fastapi_poe sends for a broken stream, through its own code."""
    mark = server.mark()

    async def report() -> None:
        async with _session() as session:
            context = poe_client._BotContext(
                endpoint=f"{server.base_url}hello", session=session, api_key=KEY
            )
            await context.report_error(
                "Bot exited without sending 'done' event", {"message_id": "m-1"}
            )

    asyncio.run(report())
    wait_for(lambda: "report_error" in server.log_since(mark), "the report_error log line", 5)
    assert (
        "INFO engine.web: bot hello: report_error "
        '{"message": "Bot exited without sending \'done\' event"}'
    ) in server.log_since(mark)


# ---------------------------------------------------------------------------- settings, auth


@pytest.mark.parametrize("bot", ["acme-help", "hello", "image-studio"])
def test_settings_through_the_real_server(server: Server, bot: str) -> None:
    async def fetch() -> Any:
        async with _session() as session:
            context = poe_client._BotContext(
                endpoint=f"{server.base_url}{bot}", session=session, api_key=KEY
            )
            return await context.fetch_settings()

    body = asyncio.run(fetch())
    settings = poe_types.SettingsResponse(**body)
    assert settings.response_version == 2
    assert settings.introduction_message
    if bot == "image-studio":
        assert settings.parameter_controls is not None
        assert settings.parameter_controls.api_version == "2"


def test_the_real_server_checks_keys(server: Server) -> None:
    status, body = server.post("/hello", query(user("hi")), key="W" * 32)
    assert status == 401
    assert json.loads(body) == {"error": "missing or wrong access key"}
    status, _ = server.post("/nobody", query(user("hi")))
    assert status == 404


# ---------------------------------------------------------------------------- processes


def _start_slow_query(server: Server, text: str) -> tuple[Any, bytes]:
    """A query whose body is half sent: the request is in flight inside a worker."""
    body = json.dumps(query(user(text))).encode()
    connection = server.connect()
    connection.putrequest("POST", "/hello")
    for name, value in {**server.headers(length=len(body)), "Connection": "close"}.items():
        connection.putheader(name, value)
    connection.endheaders(body[: len(body) // 2])
    return connection, body[len(body) // 2 :]


def _finish(connection: Any, rest: bytes) -> tuple[int, bytes]:
    connection.send(rest)
    response = connection.getresponse()
    return response.status, response.read()


def test_two_workers_answer_concurrent_requests(server: Server) -> None:
    workers = server.worker_pids()
    assert len(workers) == 2
    with contextlib.ExitStack() as stack:
        pending = []
        # The kernel spreads connections over the workers' sockets by a hash of the client
        # port, so 24 connections all landing on one worker has odds of 1 in 8 million.
        for number in range(24):
            connection, rest = _start_slow_query(server, f"caller {number}")
            stack.callback(connection.close)
            pending.append((number, connection, rest))
        owners: dict[int, int] = {}

        def all_accepted() -> bool:
            for number, connection, _ in pending:
                if number not in owners and (pid := server.owner_of(connection)) is not None:
                    owners[number] = pid
            return len(owners) == len(pending)

        wait_for(all_accepted, "every connection to be accepted by a worker", 10)
        # 24 requests in flight at once, and both workers hold some of them.
        assert set(owners.values()) == workers
        for number, connection, rest in pending:
            status, raw = _finish(connection, rest)
            assert status == 200
            events = parse_sse(raw)
            assert events[1] == ("text", {"text": f"Hello! You said: caller {number}"})
            assert events[-1] == ("done", {})


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log", workers=1, GRACEFUL_TIMEOUT="10")
    try:
        (worker,) = server.worker_pids()
        connection, rest = _start_slow_query(server, "last words")
        try:
            wait_for(lambda: server.owner_of(connection) == worker, "the worker to accept", 10)
            server.terminate()

            def refusing_new_connections() -> bool:
                try:
                    server.get("/healthz")
                except ConnectionRefusedError:
                    return True
                except ConnectionResetError:
                    pass  # queued on the listening socket as it closed: look again
                return False

            # Shutdown is under way (nothing new is accepted), and our request is still open.
            wait_for(refusing_new_connections, "the server to stop accepting", 10)
            assert server.process.poll() is None
            status, raw = _finish(connection, rest)
        finally:
            connection.close()
        assert status == 200
        events = parse_sse(raw)
        assert events[1] == ("text", {"text": "Hello! You said: last words"})
        assert events[-1] == ("done", {})
    finally:
        code = server.stop()
    assert code == 0, server.log()
    log = server.log()
    assert "Handling signal: term" in log
    assert "Shutting down: Master" in log
    assert "Traceback" not in log


def test_workers_start_with_every_socket_cooperative(server: Server) -> None:
    """The example bots use the openai and anthropic SDKs, which are imported (with ssl)
    before the workers fork: gevent must have patched everything before that."""
    wait_for(lambda: len(server.worker_pids()) == 2, "two workers")
    assert "MonkeyPatchWarning" not in server.log()
