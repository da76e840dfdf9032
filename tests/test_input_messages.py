"""Input rules written with their own refusal messages: located errors, and the bots' tests.

The runtime's choice of message (rule > `invalid` > built-in) is in test_runtime.py.
"""

from __future__ import annotations

import pytest

from engine.loader import load_text
from engine.testing import run_bot_tests


def located(*input_lines: str) -> str:
    """Every problem of a bot whose `input:` block holds these lines, one per line."""
    text = "\n".join(["routes:", "  - reply: hi", "input:", *input_lines]) + "\n"
    _, problems = load_text(text, "bot.yaml", {})
    return "\n".join(str(problem) for problem in problems)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # The plain forms read exactly as before.
        (
            ["  max_length: '20'"],
            "bot.yaml:4:15: input.max_length: got '20' (a string); expected an integer "
            "(remove the quotes)",
        ),
        (
            ["  reject: [3]"],
            "bot.yaml:4:12: input.reject[0]: got 3 (an integer); expected a string "
            '(YAML reads a plain 3 as a number; write "3" in quotes)',
        ),
        # The mapping forms, located at the key inside them.
        (
            ["  max_length: {value: 300}"],
            "bot.yaml:4:15: input.max_length: missing required key 'message'",
        ),
        (
            ["  max_length: {value: 0, message: Too long.}"],
            "bot.yaml:4:23: input.max_length.value: input should be greater than or equal to 1",
        ),
        (
            ["  reject: [{pattern: a, mesage: x}]"],
            "bot.yaml:4:12: input.reject[0]: missing required key 'message'\n"
            "bot.yaml:4:25: input.reject[0].mesage: unknown key 'mesage' "
            "(did you mean 'message'?)",
        ),
        (
            ["  reject:", "    - {pattern: 'ab(c', message: x}"],
            "bot.yaml:5:20: input.reject[0].pattern: invalid regular expression: "
            "missing ), unterminated group\n"
            "    ab(c\n"
            "      ^",
        ),
        (
            ["  attachments:", "    max: {value: 1, message: 'Only {{ mesage }}'}"],
            "bot.yaml:5:39: input.attachments.max.message: unknown variable 'mesage' "
            "(did you mean 'message'?)\n"
            "    Only {{ mesage }}\n"
            "            ^",
        ),
    ],
)
def test_rule_errors_are_located(lines: list[str], expected: str) -> None:
    assert located(*lines) == expected


RULES = """\
input:
  max_length: {value: 20, message: "Twenty characters at most, please."}
  reject:
    - secret
    - {pattern: '\\d{3}-\\d{4}', message: "Please don't share phone numbers."}
  invalid: "I can't take that."
routes:
  - reply: ok
tests:
  - say: call 555-1234
    expect: {equals: "Please don't share phone numbers.", error_type: user_caused_error}
  - say: a secret
    expect: {equals: "I can't take that.", error: true}
  - say: a message far too long for this bot
    expect: {equals: "Twenty characters at most, please.", error_type: user_message_too_long}
  - say: fine
    expect: {equals: ok}
"""


def test_a_bots_tests_see_each_rules_message() -> None:
    bot, problems = load_text(RULES, "bot.yaml", {})
    assert problems == []
    assert bot is not None
    assert [result.failures for result in run_bot_tests(bot)] == [[], [], [], []]
