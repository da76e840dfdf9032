"""The `tests:` runner: what a declared test sends as Poe's request, and the time it sets."""

from __future__ import annotations

import textwrap

import pytest

from engine.compiled import CompiledBot
from engine.loader import load_text
from engine.testing import run_bot_tests

# Every branch of this bot depends on something only Poe's request (or the clock) sets.
POLYGLOT = """\
name: polyglot
routes:
  - if: "starts_with(language, 'pt')"
    reply: "Olá, {{ user.id }} ({{ conversation.id }}, {{ language }})"
  - if: "now.hour < `12`"
    reply: "Good morning, {{ user.id }}"
  - reply: "Hello, {{ user.id }} ({{ conversation.id }}, {{ language }}, {{ now.iso }})"
tests:
"""


def results(tests: str) -> list[tuple[str, list[str]]]:
    bot, problems = load_text(POLYGLOT + textwrap.dedent(tests), "bot.yaml", {})
    assert problems == []
    assert isinstance(bot, CompiledBot)
    return [(result.name, result.failures) for result in run_bot_tests(bot)]


def test_a_test_sets_the_language_and_the_ids() -> None:
    assert results("""\
      - name: pt
        say: oi
        language: pt-BR
        user_id: u-42
        conversation_id: c-7
        expect: {equals: "Olá, u-42 (c-7, pt-BR)"}
    """) == [("pt", [])]


def test_the_defaults_are_english_and_the_test_ids() -> None:
    assert results("""\
      - say: hi
        now: 2026-03-04T18:30:00Z
        expect: {equals: "Hello, u-test (c-test, en, 2026-03-04T18:30:00+00:00)"}
    """) == [("test 1", [])]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-04T09:30:00Z", "Good morning, u-test"),
        ("'2026-03-04T09:30:00Z'", "Good morning, u-test"),  # quoted: read as ISO 8601
        ("2026-03-04 09:30:00", "Good morning, u-test"),  # no zone: UTC
        ("2026-03-04T15:30:00+02:00", "Hello, u-test (c-test, en, 2026-03-04T13:30:00+00:00)"),
    ],
)
def test_a_test_sets_the_time_in_utc(now: str, expected: str) -> None:
    assert results(f"""\
      - say: hi
        now: {now}
        expect: {{equals: "{expected}"}}
    """) == [("test 1", [])]


def test_turns_take_the_tests_language_and_time_unless_they_set_their_own() -> None:
    assert results("""\
      - name: switching
        language: pt-BR
        now: 2026-03-04T18:30:00Z
        user_id: u-9
        turns:
          - say: oi
            expect: {equals: "Olá, u-9 (c-test, pt-BR)"}
          - say: hello
            language: en
            expect: {equals: "Hello, u-9 (c-test, en, 2026-03-04T18:30:00+00:00)"}
          - say: morning
            language: en-GB
            now: 2026-03-05T07:00:00Z
            expect: {equals: "Good morning, u-9"}
          - say: oi de novo
            expect: {equals: "Olá, u-9 (c-test, pt-BR)"}
    """) == [("switching", [])]


def test_a_failure_shows_what_the_language_made_the_bot_say() -> None:
    assert results("""\
      - say: hi
        language: pt-PT
        expect: {equals: "Hello"}
    """) == [("test 1", ["expected the answer 'Hello'; got 'Olá, u-test (c-test, pt-PT)'"])]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "language: portuguese",
            "bot.yaml:10:15: tests[0].language: got 'portuguese'; "
            "expected a BCP 47 language tag such as en or pt-BR",
        ),
        (
            "user_id: 42",
            "bot.yaml:10:14: tests[0].user_id: got 42 (an integer); expected a string "
            '(YAML reads a plain 42 as a number; write "42" in quotes)',
        ),
        (
            "now: tomorrow",
            "bot.yaml:10:10: tests[0].now: input should be a valid datetime or date, "
            "input is too short",
        ),
    ],
)
def test_bad_request_fields_are_located(line: str, expected: str) -> None:
    text = POLYGLOT + f"  - say: hi\n    {line}\n"
    _, problems = load_text(text, "bot.yaml", {})
    assert [str(problem) for problem in problems] == [expected]
