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
