"""A whole flow over HTTP, each turn sent to one of two server processes in turn, with the
`data` metadata replayed exactly as Poe does: on the bot message it came with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._poe import bot, parse_sse, query, user
from ._server import Server
from .conftest import KEY

FLOW_BOT = """
name: pizza
access_key: ${PIZZA_ACCESS_KEY}
flows:
  order:
    - ask: "Which size?"
      save: size
      expect: {choices: [Small, Large]}
    - ask: "How many?"
      save: count
      expect: {type: integer}
    - end: "{{ vars.count }} {{ vars.size | lower }} pizzas on the way."
routes:
  - if: "message == 'order'"
    flow: order
  - reply: "Say order."
"""


def _servers(tmp_path: Path, **env: str) -> Iterator[tuple[Server, Server]]:
    bots = tmp_path / "bots"
    bots.mkdir()
    (bots / "pizza.yaml").write_text(FLOW_BOT)
    settings = {"BOTS_DIR": str(bots), "PIZZA_ACCESS_KEY": KEY, **env}
    first = Server(tmp_path / "first.log", workers=1, **settings)
    try:
        second = Server(tmp_path / "second.log", workers=1, **settings)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def shared_secret(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    yield from _servers(tmp_path, ENGINE_STATE_SECRET="one secret for every server, long")


@pytest.fixture
def shared_key(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    yield from _servers(tmp_path, ENGINE_STATE_SECRET="")


def _talk(servers: tuple[Server, Server], said: list[str]) -> list[str]:
    """Each message to the next server in turn; the answers' texts."""
    messages: list[dict[str, Any]] = []
    answers = []
    for number, text in enumerate(said):
        messages.append(user(text))
        status, body = servers[number % 2].post("/pizza", query(*messages))
        assert status == 200
        events = parse_sse(body)
        shown = "".join(data["text"] for name, data in events if name == "text")
        stored = [data["metadata"] for name, data in events if name == "data"]
        assert [name for name, _ in events][-1] == "done"
        answers.append(shown)
        messages.append(bot(shown, metadata=stored[-1] if stored else None))
    return answers


SAID = ["order", "medium", "large", "2", "hello"]
ANSWERS = [
    "Which size?",
    "Please choose one of: Small, Large.\n\nWhich size?",
    "How many?",
    "2 large pizzas on the way.",
    "Say order.",
]


def test_a_flow_completes_across_two_servers_sharing_a_secret(
    shared_secret: tuple[Server, Server],
) -> None:
    assert _talk(shared_secret, SAID) == ANSWERS


def test_a_flow_completes_across_two_servers_sharing_the_access_key(
    shared_key: tuple[Server, Server],
) -> None:
    assert _talk(shared_key, SAID) == ANSWERS


def test_a_forged_state_over_http_starts_fresh(shared_secret: tuple[Server, Server]) -> None:
    first, _ = shared_secret
    mark = first.mark()
    forged = [user("order"), bot("Which size?", metadata="1.e30.AAAAAAAAAAAAAAAAAAAAAA"), user("2")]
    status, body = first.post("/pizza", query(*forged))
    assert status == 200
    assert [d["text"] for n, d in parse_sse(body) if n == "text"] == ["Say order."]
    assert "flow state ignored, starting fresh" in first.log_since(mark)
