"""Bots' regular expressions on RE2: the cost per rule-based turn, and hostile messages.

`python -m bench.regex` prints one JSON object:

* `turn_us`: µs per rule-based turn in-process (parse the request body, run the bot, encode
  its SSE events: bench.profile_turn's "engine core only"), with the bot's patterns on RE2
  and, in the same run, on Python's `re` exactly as the engine matched them before
  (`re.compile(source).search`, compiled once); `ratio` is turns per second on RE2 over
  turns per second on `re` (1.0 = same speed, target ≥ 0.95). Rounds alternate between the
  two, and each keeps its best round, so drift in a busy machine hits both alike.
* `hostile_ms`: the slowest of several single matches (the first on a freshly compiled
  pattern, so building RE2's DFA is included) of messages built to make a backtracking
  engine try every way to split them, up to the 1 MiB request limit (target < 10 ms).
* `python_re_ms`: Python's `re` on `(a+)+$` at sizes it finishes, doubling per 2 letters,
  extrapolated to the 30 letters of the issue.
* `large_program_ms`: the slow end of linear: a pattern with a long counted repetition
  after an unanchored start, against a message crafted for it (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any, cast
from unittest import mock

from engine import expressions
from engine.compiled import CompiledBot
from engine.loader import load_paths, load_text
from engine.patterns import compile_pattern
from engine.protocol import sse
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_body, parse_query
from engine.runtime import run

from .serve import ACCESS_KEY, BENCH, KEY_VAR

MIB = 1 << 20
SHORT = "I want my money back"
# A message as long as faq.yaml's max_length allows: every pattern reads all of it.
LONG = ("I ordered a blue jacket last week and it arrived with a torn sleeve. " * 5)[:270]
LONG += " my money back"

# Ten patterns, a common shape for a support bot: refuse secrets, route by topic.
PATTERN_HEAVY = r"""
name: patterns
input:
  reject: ['(?i)\bpassword\b', '\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b',
           '(?i)\b(ssn|social security)\b', '[\w.+-]+@[\w-]+\.[\w.]+', '(?i)ignore (all|previous)']
routes:
  - if: "regex(message, '(?i)\\b(ship|shipping|deliver)')"
    reply: shipping
  - if: "regex(message, '(?i)\\border\\s*#?\\d{6}')"
    reply: order
  - if: "regex(message, '^(hi|hello|hey)\\b')"
    reply: hello
  - if: "regex(message, '(?i)\\b(human|agent|person)\\b')"
    reply: human
  - if: "regex(message, '(?i)\\b(refund|money back|return)')"
    reply: "Refunds take 5-7 days. {{ message | length }} chars."
  - reply: fallback
"""

# (name, pattern, message) — the two patterns first.
HOSTILE: list[tuple[str, str, str]] = [
    ("regex() '(a+)+$', 30 a's + '!' (the issue)", "(a+)+$", "a" * 30 + "!"),
    ("reject '^(b+)+$', 30 b's + '!' (the issue)", "^(b+)+$", "b" * 30 + "!"),
    ("'(a+)+$', 1 MiB of a's + '!'", "(a+)+$", "a" * (MIB - 1) + "!"),
    ("'^(b+)+$', 1 MiB of b's + '!'", "^(b+)+$", "b" * (MIB - 1) + "!"),
    ("'(a|aa)*b', 1 MiB of a's", "(a|aa)*b", "a" * MIB),
    ("'(x+x+)+y', 1 MiB of x's", "(x+x+)+y", "x" * MIB),
    ("'(\\w+\\s?)*$', 1 MiB of a's + '!'", r"(\w+\s?)*$", "a" * (MIB - 1) + "!"),
    ("'^(([a-z])+.)+[A-Z]([a-z])+$', 1 MiB", r"^(([a-z])+.)+[A-Z]([a-z])+$", "a" * MIB),
]


def _random_text(alphabet: str, size: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(alphabet, k=size))


def _bench_bot_cases() -> list[tuple[str, str, str]]:
    """faq.yaml's patterns, against 1 MiB of the characters they look at and never find."""
    words = _random_text("abcdefghijklmnopqrstuvwxyz 0123456789", MIB, 1)
    near_misses = ("1234 5678 9012 345 " * (MIB // 19 + 1))[:MIB]  # 15 digits, never 16
    faq = load_paths([BENCH / "bots"], env={KEY_VAR: ACCESS_KEY}).bots["faq"]
    assert faq.input is not None and len(faq.input.reject) == 1
    reject = faq.input.reject[0].source  # both patterns, one alternation
    refund = r"(?i)\b(refund|money back|return)"
    return [
        ("faq reject (password, card number), 1 MiB of words", reject, words),
        ("faq reject (password, card number), 1 MiB of digits", reject, near_misses),
        ("faq regex() refund route, 1 MiB of words", refund, words),
    ]


class PythonRe:
    """How the engine matched before RE2: Python's `re`, `found_in` truthy on a match."""

    __slots__ = ("found_in", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.found_in = re.compile(source).search


def on_python_re(bot: CompiledBot) -> CompiledBot:
    if bot.input is None or bot.spec.input is None:
        return bot
    # One compiled pattern per source, as before (RE2 searches them as one alternation).
    reject = tuple(PythonRe(source) for source in bot.spec.input.patterns())
    return replace(bot, input=replace(bot.input, reject=cast(Any, reject)))


def body(message: str) -> bytes:
    query = {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": message}],
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }
    return json.dumps(query).encode()


def turn(bot: CompiledBot, data: bytes) -> Callable[[], bytes]:
    def call() -> bytes:
        query = parse_query(parse_body(data))
        return b"".join(sse.encode(event) for event in guarded(run(bot, query), bot.name))

    return call


def per_turn_us(call: Callable[[], bytes], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def compare(bot: CompiledBot, message: str, n: int, rounds: int) -> dict[str, Any]:
    data = body(message)
    ours, before = turn(bot, data), turn(on_python_re(bot), data)
    python_patterns = mock.patch.object(
        expressions, "compile_pattern", lru_cache(maxsize=1024)(PythonRe)
    )
    with python_patterns:
        assert ours() == before(), "the two engines answer differently"
    best = {"re2": float("inf"), "python_re": float("inf")}
    for _ in range(rounds):
        best["re2"] = min(best["re2"], per_turn_us(ours, n))
        with python_patterns:
            best["python_re"] = min(best["python_re"], per_turn_us(before, n))
    return {
        "re2_us": round(best["re2"], 2),
        "python_re_us": round(best["python_re"], 2),
        "ratio": round(best["python_re"] / best["re2"], 3),
    }


def turns(n: int, rounds: int) -> dict[str, Any]:
    faq = load_paths([BENCH / "bots"], env={KEY_VAR: ACCESS_KEY}).bots["faq"]
    heavy, problems = load_text(PATTERN_HEAVY, "patterns.yaml", {})
    assert heavy is not None, problems
    return {
        "faq, short message (3 patterns)": compare(faq, SHORT, n, rounds),
        f"faq, {len(LONG)}-character message (3 patterns)": compare(faq, LONG, n, rounds),
        "10 patterns, short message (all 10 read)": compare(heavy, SHORT, n, rounds),
    }


def slowest_match_ms(pattern: str, text: str, repeats: int = 5) -> float:
    """The slowest of `repeats` matches, the first on a freshly compiled pattern."""
    fresh = compile_pattern.__wrapped__(pattern)
    slowest = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fresh.found_in(text)
        slowest = max(slowest, time.perf_counter() - start)
    return round(slowest * 1e3, 3)


def python_re_ms() -> dict[str, float]:
    """Python's re on `(a+)+$` and n a's + '!': sizes that finish in well under a second."""
    pattern = re.compile("(a+)+$")
    result: dict[str, float] = {}
    for letters in (16, 18, 20, 22):
        start = time.perf_counter()
        pattern.search("a" * letters + "!")
        result[f"{letters} a's"] = round((time.perf_counter() - start) * 1e3, 2)
    result["30 a's, extrapolated"] = round(result["22 a's"] * 2 ** (30 - 22), 0)
    return result


def large_program_ms() -> dict[str, float]:
    crafted = _random_text("0x", MIB, 3)
    return {
        f"'[0-9][^!]{{30}}!', {size // 1024} KiB of random 0/x": slowest_match_ms(
            "[0-9][^!]{30}!", crafted[:size], repeats=3
        )
        for size in (16 * 1024, MIB)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="turns per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    hostile = {name: slowest_match_ms(p, text) for name, p, text in HOSTILE + _bench_bot_cases()}
    result = {
        "turn_us": turns(args.n, args.rounds),
        "hostile_ms": hostile,
        "hostile_worst_ms": max(hostile.values()),
        "python_re_ms": python_re_ms(),
        "large_program_ms": large_program_ms(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
