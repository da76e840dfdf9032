"""Limits and memory through the real server (`python app.py`): counted exactly across the
gevent workers of one server in its embedded store, across two servers sharing one
redis-server, what happens when that Redis stops (fail open, or closed where a bot asks),
and a remembered var following its user to another server."""

from __future__ import annotations

import contextlib
import http.client
import json
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engine.limits import STORE_DOWN_MESSAGE

from ._poe import bot, parse_sse, query, user
from ._redis import RedisServer, needs_redis
from ._server import Server, wait_for

LIMIT = 15
REQUESTS = 40

LIMITED = f"""
    name: limited
    limits: {{messages: [{LIMIT}/minute, 1000/day]}}
    routes:
      - reply: "hello {{{{ message }}}}"
"""


def bots(folder: Path, **files: str) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def send(connection: http.client.HTTPConnection, bot: str, text: str) -> tuple[str, Any]:
    """One query on an open connection: ("text", the answer) or ("error", its data)."""
    body = json.dumps(query(user(text), user_id="u-one"))
    connection.request("POST", f"/{bot}", body, Server.headers())
    response = connection.getresponse()
    assert response.status == 200
    events = dict(parse_sse(response.read()))
    if "error" in events:
        return "error", events["error"]
    return "text", events["text"]["text"]


def hammer(servers: list[Server], bot: str, count: int) -> tuple[list[tuple[str, Any]], set[int]]:
    """`count` requests at once from one user, spread over `servers`, each on a connection
    of its own; the answers, and the worker processes that served them."""
    with contextlib.ExitStack() as stack:
        pairs = []
        for number in range(count):
            server = servers[number % len(servers)]
            connection = server.connect()
            connection.connect()
            stack.callback(connection.close)
            pairs.append((server, connection))
        with ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(lambda pair: send(pair[1], bot, f"n{id(pair)}"), pairs))
        # Answered, each connection is still held open (keep-alive) by its worker.
        owners = {server.owner_of(connection) for server, connection in pairs}
    return answers, {pid for pid in owners if pid is not None}


def assert_exactly_the_limit(answers: list[tuple[str, Any]]) -> None:
    texts = [value for kind, value in answers if kind == "text"]
    errors = [value for kind, value in answers if kind == "error"]
    assert len(texts) == LIMIT, answers
    assert len(errors) == REQUESTS - LIMIT
    for error in errors:
        assert error["allow_retry"] is True
        assert error["text"].startswith(
            f"You have reached this bot's limit of {LIMIT} messages per minute. Try again in "
        )


def test_the_embedded_store_counts_exactly_across_two_workers(tmp_path: Path) -> None:
    folder = bots(tmp_path / "bots", limited=LIMITED)
    server = Server(tmp_path / "server.log", workers=2, BOTS_DIR=str(folder))
    try:
        answers, owners = hammer([server], "limited", REQUESTS)
        assert owners == server.worker_pids()  # both workers counted some of them
        assert_exactly_the_limit(answers)
        assert (server.state_dir / "engine.sqlite3").exists()
        assert f"in SQLite {server.state_dir / 'engine.sqlite3'}" in server.log()
    finally:
        server.stop()


@pytest.fixture
def two_servers(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Server]]:
    folder = bots(tmp_path / "bots", limited=LIMITED)
    servers: list[Server] = []
    try:
        for name in ("one", "two"):
            servers.append(
                Server(
                    tmp_path / f"{name}.log",
                    workers=1,
                    BOTS_DIR=str(folder),
                    REDIS_URL=redis_server.url,
                )
            )
        yield servers
    finally:
        for server in servers:
            server.stop()


@needs_redis
def test_two_servers_share_one_redis_quota_exactly(
    two_servers: list[Server], redis_server: RedisServer
) -> None:
    answers, owners = hammer(two_servers, "limited", REQUESTS)
    assert len(owners) == 2
    assert_exactly_the_limit(answers)
    for server in two_servers:
        assert f"in Redis {redis_server.url}" in server.log()
        assert not server.state_dir.exists()  # nothing written on the machine


FAIL_OPEN = """
    name: open
    limits: {messages: 100/minute}
    routes: [{reply: "open {{ message }}"}]
"""
FAIL_CLOSED = """
    name: closed
    limits: {messages: 100/minute, fail_closed: true}
    routes: [{reply: "closed {{ message }}"}]
"""


@needs_redis
def test_when_redis_stops_bots_fail_open_or_closed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    folder = bots(tmp_path / "bots", open=FAIL_OPEN, closed=FAIL_CLOSED)
    server = Server(
        tmp_path / "server.log", workers=1, BOTS_DIR=str(folder), REDIS_URL=redis_server.url
    )
    try:
        with contextlib.closing(server.connect()) as connection:
            assert send(connection, "open", "a") == ("text", "open a")
            assert send(connection, "closed", "a") == ("text", "closed a")
            mark = server.mark()
            redis_server.stop()
            assert [send(connection, "open", text) for text in "bcd"] == [
                ("text", "open b"),
                ("text", "open c"),
                ("text", "open d"),
            ]
            kind, error = send(connection, "closed", "b")
            assert (kind, error["text"], error["allow_retry"]) == (
                "error",
                STORE_DOWN_MESSAGE,
                True,
            )
        wait_for(lambda: "is unreachable" in server.log_since(mark), "the outage in the log")
        logged = server.log_since(mark)
        assert f"Redis {redis_server.url} is unreachable (ConnectionError" in logged
        assert logged.count("is unreachable (") == 1  # once, not per request
    finally:
        server.stop()


LANGUAGE = """
    name: prefs
    remember: {vars: [language]}
    routes:
      - if: "message == 'language'"
        flow: language
      - reply: "language {{ vars.get('language', 'unset') }}"
    flows:
      language:
        - ask: Which language?
          save: language
          expect: {choices: [English, Português]}
        - reply: Saved.
"""


def talk(server: Server, messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The answer's text and the flow state it carries, for a conversation of `u-one`."""
    status, body = server.post("/prefs", query(*messages, user_id="u-one"))
    assert status == 200
    events = parse_sse(body)
    text = "".join(data["text"] for name, data in events if name == "text")
    stored = [data["metadata"] for name, data in events if name == "data"]
    return text, stored[-1] if stored else None


@needs_redis
def test_a_remembered_var_follows_its_user_to_another_server(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    folder = bots(tmp_path / "bots", prefs=LANGUAGE)
    env = {"BOTS_DIR": str(folder), "REDIS_URL": redis_server.url}
    one = Server(tmp_path / "one.log", workers=1, **env)
    two = Server(tmp_path / "two.log", workers=1, **env)
    try:
        assert talk(two, [user("hi")]) == ("language unset", None)
        question, state = talk(one, [user("language")])
        assert question == "Which language?" and state is not None
        said = [user("language"), bot(question, metadata=state), user("português")]
        assert talk(one, said) == ("Saved.", None)
        assert talk(two, [user("hi")]) == ("language Português", None)  # a new conversation
    finally:
        one.stop()
        two.stop()
