"""The engine's own clients carry a flow's state as Poe does: JSON mode and `engine chat`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from flask import Flask

from engine.cli import main

from ._poe import bot, query, user

PIZZA = """\
flows:
  order:
    - ask: "Which size?"
      save: size
      expect: {choices: [Small, Large]}
    - end: "One {{ vars.size | lower }} pizza on the way."
routes:
  - if: "message == 'order'"
    flow: order
  - reply: "Say order."
"""
JSON = {"Accept": "application/json"}


def test_json_mode_returns_the_metadata_and_resumes_from_it(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    (tmp_path / "pizza.yaml").write_text(PIZZA)
    client = make_app(tmp_path, {"ENGINE_STATE_SECRET": "x" * 32}).test_client()
    first: dict[str, Any] = client.post(
        "/pizza", json={**query(user("order")), "type": "message"}, headers=JSON
    ).get_json()
    assert first["messages"][0]["text"] == "Which size?"
    assert first["suggested_replies"] == ["Small", "Large"]
    messages = [user("order"), bot("Which size?", metadata=first["metadata"]), user("large")]
    second = client.post("/pizza", json=query(*messages), headers=JSON).get_json()
    assert second["messages"][0]["text"] == "One large pizza on the way."
    assert "metadata" not in second


def test_engine_chat_carries_the_state_from_turn_to_turn(tmp_path: Path) -> None:
    (tmp_path / "pizza.yaml").write_text(PIZZA)
    result = CliRunner().invoke(
        main,
        ["chat", str(tmp_path / "pizza.yaml")],
        input="order\nlarge\nhello\n/quit\n",
        env={"ENGINE_STATE_SECRET": "x" * 32},
    )
    assert result.exit_code == 0, result.output
    output = result.output
    for part in ("Which size?", "One large pizza on the way.", "Say order."):
        assert part in output
    assert output.index("Which size?") < output.index("One large") < output.index("Say order.")


def test_bad_states_over_http_start_fresh_with_200(
    tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    (tmp_path / "pizza.yaml").write_text(PIZZA)
    (tmp_path / "twin.yaml").write_text(PIZZA)
    client = make_app(tmp_path, {"ENGINE_STATE_SECRET": "x" * 32}).test_client()

    def metadata_of(bot_name: str) -> str:
        answer = client.post(f"/{bot_name}", json=query(user("order")), headers=JSON)
        found: str = answer.get_json()["metadata"]
        return found

    good = metadata_of("pizza")
    cases = {
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "truncated": good[: len(good) - 10],
        "oversized": good + "A" * 5000,
        "from another bot": metadata_of("twin"),
        "not text": "\udcff\x00",
    }
    for case, metadata in cases.items():
        messages = [user("order"), bot("Which size?", metadata=metadata), user("large")]
        response = client.post("/pizza", json=query(*messages))
        assert response.status_code == 200, case
        body = response.get_data(as_text=True)
        assert '"text": "Say order."' in body and "event: done" in body, (case, body)
    stale = [user("order"), bot("Which size?", metadata=good), user("large")]
    (tmp_path / "pizza.yaml").write_text(PIZZA.replace("Which size?", "What size?"))
    edited = make_app(tmp_path, {"ENGINE_STATE_SECRET": "x" * 32}).test_client()
    body = edited.post("/pizza", json=query(*stale)).get_data(as_text=True)
    assert '"text": "Say order."' in body
