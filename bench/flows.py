"""Flow turns against plain rule-based turns: what verifying and signing the state costs.

`python -m bench.flows` prints one JSON object:

* `turn_us`: µs per turn in-process (parse the request body, run the bot, encode its SSE
  events: bench.regex's turn) for
  - `plain`: bench/bots' faq bot on "I want my money back" (one message, a `regex()` route,
    a templated reply with an include, two suggested replies), the baseline;
  - `plain, 3 messages`: a one-route reply bot, with the same three-message history as
    the flow turn, so the longer request body is in both;
  - `flow`: a flow resumed from the signed state on the last bot message (verify the HMAC,
    decode the vars), the answer checked against choices and saved, the next question
    rendered with a var, its two choices, and the new state signed into a `data` event.
* `ratio`: turns per second of the flow turn over those of each plain turn (target ≥ 0.8).
* `state_us`: `encode` and `decode` alone, with the flow turn's vars (3 short strings).

Rounds alternate between the turns, and each keeps its best round. Through a real server,
the same flow turn is the `flow` mode of `python -m bench.turn_cpu` (`served_flow`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.compiled import CompiledBot
from engine.loader import load_paths, load_text
from engine.protocol.requests import parse_body, parse_query
from engine.protocol.transcript import Transcript
from engine.runtime import run
from engine.state import FlowState, decode, encode

from .procs import RESULTS
from .regex import SHORT, body, per_turn_us, turn
from .serve import ACCESS_KEY, BENCH, KEY_VAR

SECRET = {"ENGINE_STATE_SECRET": "bench-secret-" + "x" * 20}

FLOW = """
name: booking
flows:
  book:
    - ask: "Which city?"
      save: city
      expect: {choices: [Paris, Rome, Oslo]}
    - ask: "How many nights in {{ vars.city }}?"
      save: nights
      expect: {choices: ["1", "2", "3"]}
    - end: "Booked."
routes:
  - if: "message == 'book'"
    flow: book
  - reply: "Say book."
"""
PLAIN = """
name: plain
routes:
  - reply: "You said {{ message }}."
    suggest: ["1", "2"]
"""


def _load(text: str) -> CompiledBot:
    bot, problems = load_text(text, "bench.yaml", SECRET)
    assert bot is not None, problems
    return bot


def _messages(metadata: str | None) -> bytes:
    return json.dumps(_flow_query(metadata)).encode()


def _flow_query(metadata: str | None) -> dict[str, Any]:
    return {
        "version": "1.2",
        "type": "query",
        "query": [
            {"role": "user", "content": "book"},
            {"role": "bot", "content": "Which city?", "metadata": metadata},
            {"role": "user", "content": "rome"},
        ],
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }


def served_flow(env: Mapping[str, str]) -> tuple[Path, dict[str, Any]]:
    """The flow bot in a folder for a server to serve (with bench/bots' access key, so it
    signs its state with a key derived from it, or with ENGINE_STATE_SECRET if `env` has
    one), and the body of the flow turn above, its state signed as that server signs it:
    `env` is the server's environment."""
    folder = RESULTS / "flow-bots"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "booking.yaml").write_text(f"access_key: ${{{KEY_VAR}}}\n{FLOW}")
    bot = load_paths([folder], env=env).bots["booking"]
    return folder, _flow_query(_started(bot))


def _started(bot: CompiledBot) -> str:
    first = Transcript.of(run(bot, parse_query(parse_body(body("book")))))
    assert first.metadata is not None
    return first.metadata


def turns(n: int, rounds: int) -> dict[str, Any]:
    faq = load_paths([BENCH / "bots"], env={KEY_VAR: ACCESS_KEY}).bots["faq"]
    flow = _load(FLOW)
    flow_body = _messages(_started(flow))
    calls: dict[str, Callable[[], bytes]] = {
        "plain": turn(faq, body(SHORT)),
        "plain, 3 messages": turn(_load(PLAIN), _messages(None)),
        "flow": turn(flow, flow_body),
    }
    answer = calls["flow"]().decode()
    assert "How many nights in Rome?" in answer and "event: data" in answer, answer
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            best[name] = min(best[name], per_turn_us(call, n))
    return {
        "turn_us": {name: round(us, 2) for name, us in best.items()},
        "ratio": {
            "flow / plain": round(best["plain"] / best["flow"], 3),
            "flow / plain, 3 messages": round(best["plain, 3 messages"] / best["flow"], 3),
        },
    }


def state_us(n: int) -> dict[str, float]:
    key = b"k" * 32
    state = FlowState("book", 1, "0123456789ab", {"city": "Rome", "a": "x", "b": "y"}, 0)
    metadata = encode(state, "booking", key)
    calls: dict[str, Callable[[], object]] = {
        "encode": lambda: encode(state, "booking", key),
        "decode": lambda: decode(metadata, "booking", key),
    }
    return {name: round(min(_us(call, n) for _ in range(5)), 2) for name, call in calls.items()}


def _us(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="turns per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps({**turns(args.n, args.rounds), "state_us": state_us(args.n * 10)}))


if __name__ == "__main__":
    main()
