"""The loader's error texts, in full: file, line, column, place, message, hint and caret."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import SpecError, place
from engine.loader import LoadReport, bot_files, load_paths, load_text
from engine.loader.yaml_marks import MAX_DEPTH
from engine.spec.routes import ACTION_KEYS

from .conftest import run_python

NEEDS_ONE_ACTION = "a route needs exactly one action: " + " or ".join(ACTION_KEYS)
FALLBACK = ["  - reply: fallback"]


def yaml(*lines: str) -> str:
    """A YAML document from its lines, so line numbers in the tests are easy to count."""
    return "\n".join(lines) + "\n"


def problems(text: str, env: dict[str, str] | None = None) -> list[SpecError]:
    _, found = load_text(text, "bot.yaml", env or {})
    return found


def report(text: str, env: dict[str, str] | None = None) -> str:
    """Every problem for `text`, one str(problem) after another."""
    return "\n".join(str(problem) for problem in problems(text, env))


def assert_error(text: str, expected: str) -> None:
    bot, found = load_text(text, "bot.yaml", {})
    assert "\n".join(str(problem) for problem in found) == expected
    assert bot is None


# --- broken YAML -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("name: a", "routes: ["),
            "bot.yaml:3:1: invalid YAML: did not find expected node content",
        ),
        (
            yaml("name: a", "  bad: x", "routes:", "  - reply: hi"),
            "bot.yaml:2:6: invalid YAML: mapping values are not allowed in this context "
            "(start `bad` at the beginning of its line, like `name` on line 1)",
        ),
        (
            yaml("routes:", "\t- reply: hi"),
            "bot.yaml:2:1: invalid YAML: found character that cannot start any token",
        ),
        (
            yaml("routes:", "  - reply: 'unclosed"),
            "bot.yaml:3:1: invalid YAML: found unexpected end of stream",
        ),
    ],
    ids=["unclosed-flow", "bad-indent", "tab", "unclosed-quote"],
)
def test_broken_yaml_is_one_located_error(text: str, expected: str) -> None:
    assert_error(text, expected)


# --- unknown keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("nmae: a", "routes:", "  - reply: hi"),
            "bot.yaml:1:1: nmae: unknown key 'nmae' (did you mean 'name'?)",
        ),
        (
            yaml("routes:", "  - reply: hi", "    sugest: [x]"),
            "bot.yaml:3:5: routes[0].sugest: unknown key 'sugest' (did you mean 'suggest'?)",
        ),
        (
            yaml("routes:", "  - error: {text: no way}", "    iff: message"),
            "bot.yaml:3:5: routes[0].iff: unknown key 'iff' (did you mean 'if'?)",
        ),
        (
            yaml("routes:", "  - error: {text: sorry, retry: true}"),
            "bot.yaml:2:26: routes[0].error.retry: unknown key 'retry' "
            "(did you mean 'allow_retry'?)",
        ),
        (
            yaml("input:", "  zzz: 1", "routes:", "  - reply: hi"),
            "bot.yaml:2:3: input.zzz: unknown key 'zzz' (allowed: attachments, error_type, "
            "invalid, max_length, min_length, reject)",
        ),
        (
            yaml(
                "routes:",
                "  - reply: hi",
                "settings:",
                "  parameter_controls:",
                "    sections:",
                "      - controls:",
                "          - control: slider",
                "            label: Strength",
                "            parameter_name: strength",
                "            min_value: 0",
                "            max_value: 1",
                "            step: 0.1",
                "            defualt_value: 1",
            ),
            "bot.yaml:13:13: settings.parameter_controls.sections[0].controls[0].defualt_value: "
            "unknown key 'defualt_value' (did you mean 'default_value'?)",
        ),
    ],
    ids=["top-level", "reply-route", "error-route", "error-action", "no-close-match", "control"],
)
def test_unknown_keys_point_at_the_key_with_a_suggestion(text: str, expected: str) -> None:
    assert_error(text, expected)


def test_unknown_key_in_a_condition_control_is_not_mistaken_for_its_condition() -> None:
    text = yaml(
        "routes:",
        "  - reply: hi",
        "settings:",
        "  parameter_controls:",
        "    sections:",
        "      - controls:",
        "          - control: condition",
        "            condition: {comparator: eq, left: {parameter_name: a}, right: {literal: x}}",
        "            contrls: []",
    )
    place = "settings.parameter_controls.sections[0].controls[0]"
    assert_error(
        text,
        f"bot.yaml:7:13: {place}: missing required key 'controls'\n"
        f"bot.yaml:9:13: {place}.contrls: unknown key 'contrls' (did you mean 'controls'?)",
    )


# --- wrong types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("routes:", "  - reply: hi", "input:", "  max_length: '20'"),
            "bot.yaml:4:15: input.max_length: got '20' (a string); expected an integer "
            "(remove the quotes)",
        ),
        (
            yaml("routes:", "  - reply: hi", "input:", "  max_length: 2.5"),
            "bot.yaml:4:15: input.max_length: got 2.5 (a number); expected an integer",
        ),
        (
            yaml("routes:", "  - reply: hi", "settings:", "  allow_attachments: 'yes'"),
            "bot.yaml:4:22: settings.allow_attachments: got 'yes' (a string); "
            "expected true or false (remove the quotes)",
        ),
        (
            yaml("routes:", "  - reply: [a, b]"),
            "bot.yaml:2:12: routes[0].reply: got a list; expected a string",
        ),
        (
            yaml("routes:", "  - reply: no"),
            "bot.yaml:2:12: routes[0].reply: got False (true or false); expected a string "
            '(YAML reads a plain no as false; write "no" in quotes)',
        ),
        (
            yaml("routes:", "  - reply: hi", "    suggest: x"),
            "bot.yaml:3:14: routes[0].suggest: got 'x' (a string); "
            "expected a list (lines starting with '- ') or a mapping (key: value lines)",
        ),
        (
            yaml("routes: hi"),
            "bot.yaml:1:9: routes: got 'hi' (a string); expected a list (lines starting with '- ')",
        ),
        (
            yaml("input: 3", "routes:", "  - reply: hi"),
            "bot.yaml:1:8: input: got 3 (an integer); expected a mapping (key: value lines)",
        ),
        (
            yaml("routes:", "  - reply: hi", "tests:", "  - say: 12"),
            "bot.yaml:4:10: tests[0].say: got 12 (an integer); expected a string "
            '(YAML reads a plain 12 as a number; write "12" in quotes)',
        ),
    ],
    ids=[
        "quoted-int",
        "float-for-int",
        "quoted-bool",
        "list-for-string",
        "yaml-no",
        "string-for-list",
        "routes-string",
        "int-for-mapping",
        "int-for-string",
    ],
)
def test_wrong_types_say_what_was_given_and_what_is_expected(text: str, expected: str) -> None:
    assert_error(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("name: 'bad name'", "routes:", "  - reply: hi"),
            "bot.yaml:1:7: name: got 'bad name' (a string); expected letters, digits, '-', '_' "
            "or '.' (it becomes the URL path), at most 64",
        ),
        (
            yaml("access_key: abcdef", "routes:", "  - reply: hi"),
            "bot.yaml:1:13: access_key: got a key written out (6 characters, not shown); "
            "expected an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself",
        ),
        (
            yaml("routes:", "  - error: {text: sorry, error_type: user_caused_eror}"),
            "bot.yaml:2:38: routes[0].error.error_type: got 'user_caused_eror' (a string); "
            "expected one of 'user_message_too_long', 'user_caused_error', 'insufficient_fund' "
            "or 'privacy_authorization_error' (did you mean 'user_caused_error'?)",
        ),
        (
            yaml("name: a"),
            "bot.yaml:1:1: missing required key 'routes'",
        ),
        (
            yaml("routes: []"),
            "bot.yaml:1:9: routes: list should have at least 1 item after validation, not 0",
        ),
        (
            yaml("routes:", "  - reply: hi", "input: {min_length: 5, max_length: 2}"),
            "bot.yaml:3:8: input: min_length 5 is above max_length 2",
        ),
    ],
    ids=["name-pattern", "literal-key", "literal-choice", "missing", "empty-list", "validator"],
)
def test_value_rules(text: str, expected: str) -> None:
    assert_error(text, expected)


# --- regular expressions in the spec -----------------------------------------------------


@pytest.mark.parametrize(
    ("reject", "expected"),
    [
        (
            "  reject: ['ab(c']",
            "bot.yaml:4:15: input.reject[0]: invalid regular expression: "
            "missing ), unterminated group\n"
            "    ab(c\n"
            "      ^",
        ),
        (
            '  reject: ["ok", "ab[c"]',
            "bot.yaml:4:21: input.reject[1]: invalid regular expression: "
            "missing ], unterminated character class\n"
            "    ab[c\n"
            "      ^",
        ),
        (
            # Doubled quotes and backslash escapes are one character in the value, two in
            # the file: the caret column still lands on the character written in the file.
            "  reject: ['it''s(']",
            "bot.yaml:4:18: input.reject[0]: invalid regular expression: "
            "missing ), unterminated group\n"
            "    it's(\n"
            "        ^",
        ),
        (
            '  reject: ["\\\\d+("]',
            "bot.yaml:4:17: input.reject[0]: invalid regular expression: "
            "missing ), unterminated group\n"
            "    \\d+(\n"
            "       ^",
        ),
        (
            "  reject:\n    - ab)c",
            "bot.yaml:5:9: input.reject[0]: invalid regular expression: unbalanced parenthesis\n"
            "    ab)c\n"
            "      ^",
        ),
        (
            # Python's re runs it, RE2 cannot: the error says why and what to write instead.
            "  reject: ['(?i)pass(?!word)']",
            "bot.yaml:4:21: input.reject[0]: invalid regular expression: negative lookahead "
            "(?!...) is not supported (bots' regular expressions use RE2 syntax, which runs in "
            "linear time; check what must be absent separately, like !regex(...) in a route's "
            "condition)\n"
            "    (?i)pass(?!word)\n"
            "            ^",
        ),
        (
            '  reject: ["(\\\\w)\\\\1"]',
            "bot.yaml:4:18: input.reject[0]: invalid regular expression: backreference \\1 is "
            "not supported (bots' regular expressions use RE2 syntax, which runs in linear time; "
            "spell out the repeated text)\n"
            "    (\\w)\\1\n"
            "        ^",
        ),
    ],
    ids=[
        "single-quoted",
        "double-quoted",
        "doubled-quote",
        "escaped-backslash",
        "plain",
        "lookahead",
        "backreference",
    ],
)
def test_bad_regex_in_reject_has_a_caret_inside_the_string(reject: str, expected: str) -> None:
    assert_error(yaml("routes:", "  - reply: hi", "input:", reject), expected)


def test_bad_regex_in_a_test_expectation() -> None:
    text = yaml("routes:", "  - reply: hi", "tests:", "  - say: hi", "    expect: {regex: 'a(b'}")
    assert_error(
        text,
        "bot.yaml:5:23: tests[0].expect.regex: invalid regular expression: "
        "missing ), unterminated group\n"
        "    a(b\n"
        "     ^",
    )


# --- conditions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            "\"lowr(message) == 'x'\"",
            "bot.yaml:2:10: routes[0].if: unknown function 'lowr' (did you mean 'lower'?)\n"
            "    lowr(message) == 'x'\n"
            "    ^",
        ),
        (
            "zzz(message)",
            "bot.yaml:2:9: routes[0].if: unknown function 'zzz'\n    zzz(message)\n    ^",
        ),
        (
            "\"regex(message, '\\\\bhi') && lowr(message)\"",
            "bot.yaml:2:37: routes[0].if: unknown function 'lowr' (did you mean 'lower'?)\n"
            "    regex(message, '\\bhi') && lowr(message)\n"
            "                              ^",
        ),
        (
            '"regex(message)"',
            "bot.yaml:2:10: routes[0].if: regex() takes 2 arguments, got 1\n"
            "    regex(message)\n"
            "    ^",
        ),
        (
            "\"contains(message, 'a') && lower(message, 'b')\"",
            "bot.yaml:2:36: routes[0].if: lower() takes 1 argument, got 2\n"
            "    contains(message, 'a') && lower(message, 'b')\n"
            "                              ^",
        ),
        (
            "\"regex(message, '(?i)ab(')\"",
            "bot.yaml:2:32: routes[0].if: invalid regular expression '(?i)ab(': "
            "missing ), unterminated group\n"
            "    regex(message, '(?i)ab(')\n"
            "                          ^",
        ),
        (
            "\"regex(message, 'a') && regex(message, 'b[')\"",
            "bot.yaml:2:50: routes[0].if: invalid regular expression 'b[': "
            "missing ], unterminated character class\n"
            "    regex(message, 'a') && regex(message, 'b[')\n"
            "                                            ^",
        ),
        (
            "\"regex(message, '^(?=.*\\\\d)\\\\w+$')\"",
            "bot.yaml:2:27: routes[0].if: invalid regular expression '^(?=.*\\\\d)\\\\w+$': "
            "lookahead (?=...) is not supported (bots' regular expressions use RE2 syntax, "
            "which runs in linear time; match the text that follows too, or check it "
            "separately)\n"
            "    regex(message, '^(?=.*\\d)\\w+$')\n"
            "                     ^",
        ),
        (
            '"message == "',
            "bot.yaml:2:21: routes[0].if: invalid expression: it ends too early\n"
            "    message == \n"
            "               ^",
        ),
        (
            '"message == \'x"',
            "bot.yaml:2:21: routes[0].if: invalid expression: unclosed ' delimiter\n"
            "    message == 'x\n"
            "               ^",
        ),
        (
            # The structural error, then the check of the raw text (which once crashed).
            '""',
            "bot.yaml:2:9: routes[0].if: string should have at least 1 character\n"
            "bot.yaml:2:9: routes[0].if: invalid expression: it is empty\n"
            "    \n"
            "    ^",
        ),
    ],
    ids=[
        "unknown-function",
        "no-suggestion",
        "after-an-escape",
        "arity",
        "arity-of-a-later-call",
        "regex-literal",
        "second-regex-call",
        "regex-lookahead",
        "ends-early",
        "unclosed-string",
        "empty",
    ],
)
def test_condition_errors_have_a_caret(condition: str, expected: str) -> None:
    text = yaml("routes:", f"  - if: {condition}", "    reply: hi", *FALLBACK)
    assert_error(text, expected)


# --- templates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["routes:", "  - reply: 'Hi {{ message '"],
            "bot.yaml:2:13: routes[0].reply: invalid template: unexpected end of template, "
            "expected 'end of print statement'\n"
            "    Hi {{ message \n"
            "    ^",
        ),
        (
            ["routes:", "  - reply: '{% if message %}yes'"],
            "bot.yaml:2:13: routes[0].reply: invalid template: unexpected end of template. "
            "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. "
            "The innermost block that needs to be closed is 'if'\n"
            "    {% if message %}yes\n"
            "    ^",
        ),
        (
            ["routes:", "  - reply: |", "      Hello", "      {{ message + }}"],
            "bot.yaml:4:7: routes[0].reply: invalid template: unexpected 'end of print statement'\n"
            "    {{ message + }}\n"
            "    ^",
        ),
        (
            ["routes:", "  - reply: 'Hi {{ mesage }}'"],
            "bot.yaml:2:19: routes[0].reply: unknown variable 'mesage' "
            "(did you mean 'message'?)\n"
            "    Hi {{ mesage }}\n"
            "          ^",
        ),
        (
            ["routes:", "  - reply: hi", "    suggest: ['{{ zzz }}']"],
            "bot.yaml:3:19: routes[0].suggest[0]: unknown variable 'zzz'\n    {{ zzz }}\n       ^",
        ),
        (
            ["suggested_replies: ['{{ params.x }}', '{{ x }}']", "routes:", "  - reply: hi"],
            "bot.yaml:1:43: suggested_replies[1]: unknown variable 'x'\n    {{ x }}\n       ^",
        ),
        (
            ["prompts:", "  sig: '{{ mesage }}'", "routes:", "  - reply: hi"],
            "bot.yaml:2:12: prompts.sig: unknown variable 'mesage' (did you mean 'message'?)\n"
            "    {{ mesage }}\n"
            "       ^",
        ),
        (
            ["prompts:", "  sig: bye", "routes:", "  - reply: 'Hi {% include \"sgi\" %}'"],
            "bot.yaml:4:28: routes[0].reply: unknown prompt 'sgi' (did you mean 'sig'?)\n"
            '    Hi {% include "sgi" %}\n'
            "                   ^",
        ),
        (
            ["prompts:", "  a: A", "  b: B", "routes:", "  - reply: '{% include \"zzz\" %}'"],
            "bot.yaml:5:25: routes[0].reply: unknown prompt 'zzz' (prompts: a, b)\n"
            '    {% include "zzz" %}\n'
            "                ^",
        ),
        (
            ["routes:", "  - reply: '{% include \"sig\" %}'"],
            "bot.yaml:2:25: routes[0].reply: unknown prompt 'sig' (prompts: none are defined)\n"
            '    {% include "sig" %}\n'
            "                ^",
        ),
        (
            ["routes:", "  - reply: 'Hi {{ message | uper }}'"],
            "bot.yaml:2:29: routes[0].reply: invalid template: no filter named 'uper' "
            "(did you mean 'upper'?)\n"
            "    Hi {{ message | uper }}\n"
            "                    ^",
        ),
        (
            ["routes:", "  - reply: '{% if turn > 1 %}{{ message | uper }}{% endif %}'"],
            "bot.yaml:2:43: routes[0].reply: invalid template: no filter named 'uper' "
            "(did you mean 'upper'?)\n"
            "    {% if turn > 1 %}{{ message | uper }}{% endif %}\n"
            "                                  ^",
        ),
        (
            ["routes:", "  - error: {text: '{{ message is fooo }}'}"],
            "bot.yaml:2:34: routes[0].error.text: invalid template: no test named 'fooo'\n"
            "    {{ message is fooo }}\n"
            "                  ^",
        ),
        (
            ["routes:", "  - reply: hi", "input:", "  invalid: 'Bad {{ mesage }}'"],
            "bot.yaml:4:20: input.invalid: unknown variable 'mesage' (did you mean 'message'?)\n"
            "    Bad {{ mesage }}\n"
            "           ^",
        ),
    ],
    ids=[
        "syntax",
        "unclosed-block",
        "syntax-on-line-2",
        "unknown-variable",
        "route-suggestion",
        "bot-suggestion",
        "prompt",
        "include-typo",
        "include-unknown",
        "include-without-prompts",
        "unknown-filter",
        "unknown-filter-in-if",
        "unknown-test",
        "input-invalid",
    ],
)
def test_template_errors_have_a_caret(lines: list[str], expected: str) -> None:
    assert_error(yaml(*lines), expected)


# --- block and multi-line scalars: the caret lands on the right line ---------------------


def test_literal_block_offsets_count_lines_and_indentation() -> None:
    text = yaml(
        "routes:",
        "  - reply: |",
        "      Hello",
        "        indented {{ mesage }}",
    )
    assert_error(
        text,
        "bot.yaml:4:21: routes[0].reply: unknown variable 'mesage' (did you mean 'message'?)\n"
        "      indented {{ mesage }}\n"
        "                  ^",
    )


def test_folded_block_offsets_follow_the_folded_lines() -> None:
    text = yaml(
        "routes:",
        "  - if: >-",
        "      contains(message, 'a')",
        "      && lowr(message)",
        "    reply: hi",
        *FALLBACK,
    )
    assert_error(
        text,
        "bot.yaml:4:10: routes[0].if: unknown function 'lowr' (did you mean 'lower'?)\n"
        "    contains(message, 'a') && lowr(message)\n"
        "                              ^",
    )


@pytest.mark.parametrize(
    "written",
    [
        ["  - if: contains(message, 'a') &&", "      lowr(message)"],
        ["  - if: \"contains(message, 'a') &&", '      lowr(message)"'],
    ],
    ids=["plain", "double-quoted"],
)
def test_multi_line_flow_scalars_place_the_caret_on_the_continuation(written: list[str]) -> None:
    text = yaml("routes:", *written, "    reply: hi", *FALLBACK)
    assert_error(
        text,
        "bot.yaml:3:7: routes[0].if: unknown function 'lowr' (did you mean 'lower'?)\n"
        "    contains(message, 'a') && lowr(message)\n"
        "                              ^",
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            ['  - reply: "\\x41BC {{ mesage }}"'],
            "bot.yaml:2:23: routes[0].reply: unknown variable 'mesage' "
            "(did you mean 'message'?)\n"
            "    ABC {{ mesage }}\n"
            "           ^",
        ),
        (
            ['  - reply: "Hi\\n{{ mesage }}"'],
            "bot.yaml:2:20: routes[0].reply: unknown variable 'mesage' "
            "(did you mean 'message'?)\n"
            "    {{ mesage }}\n"
            "       ^",
        ),
        (
            ['  - reply: "Hello \\', '      {{ mesage }}"'],
            "bot.yaml:3:10: routes[0].reply: unknown variable 'mesage' "
            "(did you mean 'message'?)\n"
            "    Hello {{ mesage }}\n"
            "             ^",
        ),
    ],
    ids=["hex-escape", "newline-escape", "escaped-line-break"],
)
def test_escapes_in_double_quotes_are_one_character(written: list[str], expected: str) -> None:
    assert_error(yaml("routes:", *written), expected)


# --- routes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            ["  - if: \"message == 'x'\""],
            f"bot.yaml:2:5: routes[0]: {NEEDS_ONE_ACTION}\n"
            "bot.yaml:1:1: warning: routes: no fallback route: a message that matches no `if` "
            "gets an error (add a last route without `if`)",
        ),
        (["  - just text"], f"bot.yaml:2:5: routes[0]: {NEEDS_ONE_ACTION}"),
        (
            ["  - reply: hi", "    error: {text: no}"],
            f"bot.yaml:2:5: routes[0]: {NEEDS_ONE_ACTION} "
            "(found error and reply; split them into separate routes)",
        ),
        (
            ["  - replly: hi"],
            f"bot.yaml:2:5: routes[0]: {NEEDS_ONE_ACTION} "
            "(unknown key 'replly'; did you mean 'reply'?)",
        ),
        (
            ["  - error: {allow_retry: true}"],
            "bot.yaml:2:12: routes[0].error: missing required key 'text'",
        ),
    ],
    ids=["no-action", "scalar", "two-actions", "misspelt-action", "incomplete-action"],
)
def test_route_actions(route: list[str], expected: str) -> None:
    assert_error(yaml("routes:", *route), expected)


def test_a_route_after_the_fallback_is_unreachable() -> None:
    text = yaml("routes:", "  - reply: a", "  - if: message", "    reply: b")
    assert_error(
        text,
        "bot.yaml:3:5: routes[1]: this route is never reached: routes[0] has no `if` and "
        "answers every message (move the fallback route last)",
    )


def test_missing_fallback_is_only_a_warning() -> None:
    bot, found = load_text(yaml("name: a", "routes:", "  - if: message", "    reply: b"))
    assert bot is not None
    assert [str(problem) for problem in found] == [
        "<string>:2:1: warning: routes: no fallback route: a message that matches no `if` "
        "gets an error (add a last route without `if`)"
    ]
    assert found[0].is_warning


# --- duplicates --------------------------------------------------------------------------


def test_duplicate_keys_are_errors_even_when_the_document_validates() -> None:
    text = yaml("name: a", "routes:", "  - reply: a", "    reply: b", "name: b")
    assert_error(
        text,
        "bot.yaml:4:5: routes[0].reply: duplicate key 'reply' "
        "(a key may appear once; the later value would silently win)\n"
        "bot.yaml:5:1: name: duplicate key 'name' "
        "(a key may appear once; the later value would silently win)",
    )


def test_a_key_overriding_a_merged_one_is_not_a_duplicate_but_a_repeated_one_is() -> None:
    text = yaml(
        "routes:",
        "  - &base {if: message, reply: a}",
        "  - <<: *base",
        "    reply: b",
        "    reply: c",
        *FALLBACK,
    )
    assert_error(
        text,
        "bot.yaml:5:5: routes[1].reply: duplicate key 'reply' "
        "(a key may appear once; the later value would silently win)",
    )


def test_duplicate_bot_names_across_files(bots_dir: Callable[[dict[str, str]], Path]) -> None:
    folder = bots_dir(
        {
            "a.yaml": yaml("name: shared", "routes:", "  - reply: a"),
            "b.yaml": yaml("description: B", "name: shared", "routes:", "  - reply: b"),
            "c.yaml": yaml("routes:", "  - reply: c"),
            "d.yaml": yaml("name: c", "routes:", "  - reply: d"),
        }
    )
    loaded = load_paths([folder], env={})
    assert [str(error) for error in loaded.errors] == [
        f"{folder / 'b.yaml'}:2:7: name: bot name 'shared' is already used by "
        f"{folder / 'a.yaml'} (each bot needs its own name; it is the URL path)",
        f"{folder / 'd.yaml'}:1:7: name: bot name 'c' is already used by "
        f"{folder / 'c.yaml'} (each bot needs its own name; it is the URL path)",
    ]
    assert sorted(loaded.bots) == ["c", "shared"]
    assert loaded.bots["shared"].file == str(folder / "a.yaml")


def test_duplicate_name_taken_from_the_file_name_is_placed_at_the_top(
    bots_dir: Callable[[dict[str, str]], Path],
) -> None:
    folder = bots_dir(
        {
            "a.yaml": yaml("name: b", "routes:", "  - reply: a"),
            "b.yaml": yaml("routes:", "  - reply: b"),
        }
    )
    (error,) = load_paths([folder], env={}).errors
    assert str(error) == (
        f"{folder / 'b.yaml'}:1:1: name: bot name 'b' is already used by {folder / 'a.yaml'} "
        "(each bot needs its own name; it is the URL path)"
    )


# --- access keys -------------------------------------------------------------------------


ACCESS_KEY_BOT = yaml("name: keyed", "access_key: ${KEYED_ACCESS_KEY}", "routes:", "  - reply: hi")


@pytest.mark.parametrize("env", [{}, {"KEYED_ACCESS_KEY": ""}], ids=["unset", "empty"])
def test_unset_access_key_is_a_warning_and_the_bot_still_loads(env: dict[str, str]) -> None:
    bot, found = load_text(ACCESS_KEY_BOT, "bot.yaml", env)
    assert bot is not None
    assert (bot.access_key, bot.access_key_var) == (None, "KEYED_ACCESS_KEY")
    assert [str(problem) for problem in found] == [
        "bot.yaml:2:13: warning: access_key: environment variable KEYED_ACCESS_KEY is not set "
        "(without a key the bot is served only on a loopback address)"
    ]


def test_set_access_key_is_read_from_the_given_environment() -> None:
    bot, found = load_text(ACCESS_KEY_BOT, "bot.yaml", {"KEYED_ACCESS_KEY": "k" * 32})
    assert found == []
    assert bot is not None
    assert bot.access_key == "k" * 32


def test_access_key_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYED_ACCESS_KEY", "from-os-" + "k" * 24)
    bot, found = load_text(ACCESS_KEY_BOT)
    assert found == []
    assert bot is not None
    assert bot.access_key == "from-os-" + "k" * 24


def test_a_blank_access_key_is_a_warning_not_a_key_nobody_can_send() -> None:
    bot, found = load_text(ACCESS_KEY_BOT, "bot.yaml", {"KEYED_ACCESS_KEY": " \t\n"})
    assert bot is not None
    assert bot.access_key is None
    assert [str(problem) for problem in found] == [
        "bot.yaml:2:13: warning: access_key: environment variable KEYED_ACCESS_KEY is blank "
        "(without a key the bot is served only on a loopback address)"
    ]


def test_spaces_around_an_access_key_are_not_part_of_it() -> None:
    # Poe sends the key in an HTTP header, whose surrounding spaces never arrive.
    bot, found = load_text(ACCESS_KEY_BOT, "bot.yaml", {"KEYED_ACCESS_KEY": f" {'k' * 32}\n"})
    assert found == []
    assert bot is not None
    assert bot.access_key == "k" * 32


def test_a_short_access_key_is_a_warning() -> None:
    bot, found = load_text(ACCESS_KEY_BOT, "bot.yaml", {"KEYED_ACCESS_KEY": "x"})
    assert bot is not None
    assert bot.access_key == "x"
    assert [str(problem) for problem in found] == [
        "bot.yaml:2:13: warning: access_key: environment variable KEYED_ACCESS_KEY holds a "
        "1-character key; use at least 16 characters (Poe's own keys have 32) "
        "(a short key can be guessed; it is served only on a loopback address)"
    ]


# --- whole files -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["- a\n- b\n", "hello\n", "", "# only a comment\n"])
def test_a_bot_file_must_be_a_mapping(text: str) -> None:
    assert_error(text, "bot.yaml:1:1: a bot file must be a mapping (key: value lines)")


def test_a_clean_bot_compiles_with_its_name_from_the_file() -> None:
    bot, found = load_text(yaml("routes:", "  - reply: hi"), "some/dir/my-bot.yml")
    assert found == []
    assert bot is not None
    assert (bot.name, bot.file) == ("my-bot", "some/dir/my-bot.yml")


def test_compile_errors_are_all_reported_in_one_pass() -> None:
    text = yaml(
        "routes:",
        "  - if: lowr(message)",
        "    reply: '{{ mesage }}'",
        "  - reply: '{{ x }}'",
    )
    assert_error(
        text,
        "bot.yaml:2:9: routes[0].if: unknown function 'lowr' (did you mean 'lower'?)\n"
        "    lowr(message)\n"
        "    ^\n"
        "bot.yaml:3:16: routes[0].reply: unknown variable 'mesage' (did you mean 'message'?)\n"
        "    {{ mesage }}\n"
        "       ^\n"
        "bot.yaml:4:16: routes[1].reply: unknown variable 'x'\n"
        "    {{ x }}\n"
        "       ^",
    )


def test_all_errors_across_files_in_one_pass_sorted_by_file_and_line(
    bots_dir: Callable[[dict[str, str]], Path],
) -> None:
    folder = bots_dir(
        {
            "b.yaml": """\
                routes:
                  - reply: '{{ mesage }}'
                  - if: lowr(message)
                    reply: x
                """,
            "a.yaml": """\
                access_key: ${UNSET_FOR_THIS_TEST}
                routes:
                  - if: message
                    reply: x
                input:
                  max_length: '20'
                nmae: a
                """,
            "c.yaml": """\
                routes:
                  - reply: fine
                """,
            "notes.txt": "not a bot",
        }
    )
    (folder / "d.yml").write_text("routes: [\n", encoding="utf-8")
    loaded = load_paths([folder], env={})
    a, b, d = (folder / name for name in ("a.yaml", "b.yaml", "d.yml"))
    assert loaded.files == 4
    assert [str(error) for error in loaded.errors] == [
        f"{a}:6:15: input.max_length: got '20' (a string); expected an integer (remove the quotes)",
        f"{a}:7:1: nmae: unknown key 'nmae' (did you mean 'name'?)",
        f"{b}:2:16: routes[0].reply: unknown variable 'mesage' (did you mean 'message'?)\n"
        "    {{ mesage }}\n"
        "       ^",
        f"{b}:3:5: routes[1]: this route is never reached: routes[0] has no `if` and answers "
        "every message (move the fallback route last)",
        f"{b}:3:9: routes[1].if: unknown function 'lowr' (did you mean 'lower'?)\n"
        "    lowr(message)\n"
        "    ^",
        f"{d}:2:1: invalid YAML: did not find expected node content",
    ]
    # A file's warnings are printed with its errors (issue 8.5).
    assert [str(warning) for warning in loaded.warnings] == [
        f"{a}:1:13: warning: access_key: environment variable UNSET_FOR_THIS_TEST is not set "
        "(without a key the bot is served only on a loopback address)",
        f"{a}:2:1: warning: routes: no fallback route: a message that matches no `if` gets an "
        "error (add a last route without `if`)",
    ]
    assert list(loaded.bots) == ["c"]


def test_warnings_are_kept_apart_from_errors(bots_dir: Callable[[dict[str, str]], Path]) -> None:
    folder = bots_dir(
        {
            "w.yaml": """\
                access_key: ${UNSET_FOR_THIS_TEST}
                routes:
                  - if: message
                    reply: x
                """
        }
    )
    loaded = load_paths([folder], env={})
    assert loaded.errors == []
    assert [str(warning) for warning in loaded.warnings] == [
        f"{folder / 'w.yaml'}:1:13: warning: access_key: environment variable "
        "UNSET_FOR_THIS_TEST is not set (without a key the bot is served only on a loopback "
        "address)",
        f"{folder / 'w.yaml'}:2:1: warning: routes: no fallback route: a message that matches "
        "no `if` gets an error (add a last route without `if`)",
    ]
    assert list(loaded.bots) == ["w"]


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "latin.yaml"
    bad.write_bytes(b"routes:\n  - reply: caf\xe9\n")
    missing = tmp_path / "missing.yaml"
    loaded = load_paths([bad, missing], env={})
    assert loaded.files == 2
    texts = [str(error) for error in loaded.errors]
    assert texts[0].startswith(f"{bad}:1:1: cannot read the file: 'utf-8' codec can't decode")
    assert texts[1].startswith(f"{missing}:1:1: cannot read the file: [Errno 2]")
    assert loaded.bots == {}


def test_bot_files_expands_folders_to_sorted_yaml_files(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.txt", "d.YAML.bak"):
        (tmp_path / name).write_text("", encoding="utf-8")
    single = tmp_path / "elsewhere.conf"
    assert bot_files([tmp_path, single]) == [tmp_path / "a.yaml", tmp_path / "b.yml", single]


def test_load_report_sorts_by_file_line_and_column() -> None:
    loaded = LoadReport(
        problems=[
            SpecError("x", "b.yaml", 1, 1),
            SpecError("w", "a.yaml", 9, 1, severity="warning"),
            SpecError("y", "a.yaml", 2, 9),
            SpecError("z", "a.yaml", 2, 3),
        ]
    )
    assert [(e.file, e.line, e.column) for e in loaded.errors] == [
        ("a.yaml", 2, 3),
        ("a.yaml", 2, 9),
        ("b.yaml", 1, 1),
    ]
    assert [w.message for w in loaded.warnings] == ["w"]


def test_yaml_anchors_and_merge_keys_are_understood() -> None:
    text = textwrap.dedent(
        """\
        prompts:
          base: &base hello
        routes:
          - reply: *base
        tests:
          - &first {name: one, say: hi, expect: {equals: hello}}
          - <<: *first
            name: two
        """
    )
    bot, found = load_text(text)
    assert found == []
    assert bot is not None
    assert bot.routes[0].reply.render({}) == "hello"  # type: ignore[union-attr]
    assert [(case.name, case.say) for case in bot.spec.tests] == [("one", "hi"), ("two", "hi")]


def test_structural_and_template_errors_are_reported_together() -> None:
    text = yaml("routes:", "  - reply: '{{ mesage }}'", "    sugest: [x]")
    assert_error(
        text,
        "bot.yaml:3:5: routes[0].sugest: unknown key 'sugest' (did you mean 'suggest'?)\n"
        "bot.yaml:2:16: routes[0].reply: unknown variable 'mesage' (did you mean 'message'?)\n"
        "    {{ mesage }}\n"
        "       ^",
    )


# --- hostile YAML: located errors in bounded time and memory (issue 7.6) ----------------
# Each of these printed a traceback, crashed or ran without end before the loader read
# libyaml's events itself (engine/loader/yaml_marks.py).

TAG_HINT = "or quote the value to keep it as text)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("name: !!int abc"),
            "bot.yaml:1:7: name: cannot read !!int 'abc' as an integer "
            f"(remove the tag !!int, {TAG_HINT}",
        ),
        (
            yaml("name: !!float abc"),
            "bot.yaml:1:7: name: cannot read !!float 'abc' as a number "
            f"(remove the tag !!float, {TAG_HINT}",
        ),
        (
            yaml("name: !!timestamp x"),
            "bot.yaml:1:7: name: cannot read !!timestamp 'x' as a date or time "
            f"(remove the tag !!timestamp, {TAG_HINT}",
        ),
        (
            yaml("name: !!bool maybe"),
            "bot.yaml:1:7: name: cannot read !!bool 'maybe' as true or false "
            f"(remove the tag !!bool, {TAG_HINT}",
        ),
        (  # PyYAML reads `value[0]`: an IndexError, found by tests/test_fuzz_files.py
            yaml("name: !!int ''"),
            "bot.yaml:1:7: name: cannot read !!int '' as an integer "
            f"(remove the tag !!int, {TAG_HINT}",
        ),
        (
            yaml("routes:", "  - !!int x: 1"),
            "bot.yaml:2:5: routes[0]: cannot read !!int 'x' as an integer "
            f"(remove the tag !!int, {TAG_HINT}",
        ),
        (
            yaml("name: 2024-13-45"),
            "bot.yaml:1:7: name: cannot read '2024-13-45' as a date or time: month must be in "
            "1..12 (quote the value to keep it as text)",
        ),
        (
            yaml("name: " + "9" * 5000),
            "bot.yaml:1:7: name: cannot read an integer of 5,000 characters: Python reads at "
            "most 4,300 digits (quote the value to keep it as text)",
        ),
        (  # sexagesimal, 1:1:1...: reading it took time growing with the square of its length
            yaml("name: 1" + ":1" * 300_000),
            "bot.yaml:1:7: name: cannot read an integer of 600,001 characters: Python reads at "
            "most 4,300 digits (quote the value to keep it as text)",
        ),
    ],
    ids=[
        "int",
        "float",
        "timestamp",
        "bool",
        "empty-int",
        "tagged-key",
        "bad-date",
        "long-int",
        "sexagesimal",
    ],
)
def test_values_yaml_cannot_read_are_located_errors(text: str, expected: str) -> None:
    assert_error(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("name: !custom v"),
            f"bot.yaml:1:7: name: the YAML tag '!custom' is not supported (remove it, {TAG_HINT}",
        ),
        (
            yaml("name: !!python/name:os.system ''"),
            "bot.yaml:1:7: name: the YAML tag '!!python/name:os.system' is not supported "
            f"(remove it, {TAG_HINT}",
        ),
        (
            yaml("routes: !!python/object/apply:os.system [echo]"),
            "bot.yaml:1:9: routes: the YAML tag '!!python/object/apply:os.system' is not "
            "supported on a list (remove it)",
        ),
        (
            yaml("name: !!binary aGk="),
            f"bot.yaml:1:7: name: the YAML tag '!!binary' is not supported (remove it, {TAG_HINT}",
        ),
        (
            yaml("routes: !!set {a}"),
            "bot.yaml:1:9: routes: the YAML tag '!!set' is not supported on a mapping (remove it)",
        ),
        (
            yaml("routes: !!str {a: 1}"),
            "bot.yaml:1:9: routes: the YAML tag '!!str' is not supported on a mapping (remove it)",
        ),
    ],
    ids=["local", "python-name", "python-apply", "binary", "set", "str-on-a-mapping"],
)
def test_only_yaml_plain_tags_are_read(text: str, expected: str) -> None:
    assert_error(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("routes:", "  - <<: 5"),
            "bot.yaml:2:9: routes[0].<<: `<<` merges a mapping or a list of mappings, not 5 "
            "(write `<<: *name`, naming an anchored mapping)",
        ),
        (
            yaml("base: &b {reply: hi}", "routes:", "  - <<: [*b, 3]"),
            "bot.yaml:3:14: routes[0].<<[1]: `<<` merges a mapping or a list of mappings, not 3 "
            "(write `<<: *name`, naming an anchored mapping)",
        ),
    ],
    ids=["number", "number-in-a-list"],
)
def test_a_merge_key_takes_mappings_only(text: str, expected: str) -> None:
    assert_error(text, expected)


def test_a_mapping_merged_through_a_second_alias_has_no_false_duplicate() -> None:
    # PyYAML's merge rewrote the anchored node, so the second alias saw `say` twice.
    text = yaml(
        "routes: [{reply: hello}]",
        "tests:",
        "  - &first",
        "    <<: {say: bye, expect: {equals: hello}}",
        "    say: hi",
        "  - *first",
    )
    bot, found = load_text(text, "bot.yaml", {})
    assert found == []
    assert bot is not None
    assert [case.say for case in bot.spec.tests] == ["hi", "hi"]


def nested(levels: int) -> str:
    """A bot whose test params nest lists until the document is `levels` deep."""
    inner = "[" * (levels - 4) + "]" * (levels - 4)  # the root, tests, a test and params: 4
    return yaml("routes: [{reply: hi}]", f"tests: [{{say: hi, params: {{p: {inner}}}}}]")


def test_nesting_up_to_the_limit_loads_and_one_more_level_is_an_error() -> None:
    assert MAX_DEPTH == 100
    bot, found = load_text(nested(MAX_DEPTH), "bot.yaml", {})
    assert found == []
    assert bot is not None
    assert_error(
        nested(MAX_DEPTH + 1),
        "bot.yaml:2:127: nesting is deeper than 100 levels "
        "(a bot needs a few; look for brackets that are never closed)",
    )


def test_nesting_deeper_than_the_c_stack_is_an_error_not_a_crash() -> None:
    # yaml.compose recursed in C: a segfault, so the test runs in a process of its own.
    probe = (
        "from engine.loader import load_text; "
        "print(load_text('x: ' + '[' * 100_000, 'bot.yaml', {})[1][0])"
    )
    result = run_python(probe)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "bot.yaml:1:103: nesting is deeper than 100 levels "
        "(a bot needs a few; look for brackets that are never closed)\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("routes: &r [*r]"),
            "bot.yaml:1:13: routes[0]: the alias *r is inside the value anchored as &r, so it "
            "never ends (an alias repeats a value that ends before it; &r is on line 1)",
        ),
        (
            yaml("routes:", "  - &r {reply: *r}"),
            "bot.yaml:2:16: routes[0].reply: the alias *r is inside the value anchored as &r, so "
            "it never ends (an alias repeats a value that ends before it; &r is on line 2)",
        ),
        (
            yaml("routes:", "  - &r", "    <<: *r"),
            "bot.yaml:3:9: routes[0].<<: the alias *r is inside the value anchored as &r, so it "
            "never ends (an alias repeats a value that ends before it; &r is on line 2)",
        ),
    ],
    ids=["list", "mapping", "merge"],
)
def test_an_alias_inside_its_own_anchor_is_an_error(text: str, expected: str) -> None:
    assert_error(text, expected)


def laughs(merge: bool) -> str:
    """Nine levels of nine aliases of the level below: 9**9 values once expanded."""
    lines = ["l0: &l0 {a: 1}" if merge else "l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    for level in range(1, 9):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        value = f"{{<<: [{aliases}]}}" if merge else f"[{aliases}]"
        lines.append(f"l{level}: &l{level} {value}")
    return yaml(*lines)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("merge", "place"),
    [(False, "6:10: l5[0]"), (True, "6:30: l5.<<[3]")],
    ids=["lists", "merge-keys"],
)
def test_an_alias_bomb_stops_at_the_value_budget_at_the_alias_written(
    merge: bool, place: str
) -> None:
    started = time.perf_counter()
    found = problems(laughs(merge))
    assert time.perf_counter() - started < 2  # measured: 0.2 s; before, over 60 s and 2 GB
    assert [str(problem) for problem in found] == [
        f"bot.yaml:{place}: the file has more than 100,000 values, counting each one an alias "
        "repeats (an alias repeats all its anchor holds, so aliases of aliases multiply)"
    ]


def test_a_file_over_one_mib_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * (1 << 21) + "\n", encoding="utf-8")
    loaded = load_paths([Path("/dev/zero"), big], env={})  # /dev/zero never ends
    limit = "a bot file may be at most 1,048,576 bytes (1 MiB) (split it into several bots)"
    assert [str(error) for error in loaded.errors] == [
        f"/dev/zero:1:1: the file is more than 1,048,576 bytes; {limit}",
        f"{big}:1:1: the file is 2,097,159 bytes; {limit}",
    ]
    assert report("é" * 600_000) == f"bot.yaml:1:1: the file is 1,200,000 bytes; {limit}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml("routes: []", "---", "routes: []"),
            "bot.yaml:2:1: a bot file holds one YAML document; a second one starts here "
            "(remove the `---` or `...` line, or put the second bot in a file of its own)",
        ),
        (
            yaml("name: &a x", "description: &a y"),
            "bot.yaml:2:14: the anchor &a is already defined on line 1 (rename one of them)",
        ),
        (yaml("name: *a"), "bot.yaml:1:7: name: the alias *a has no anchor &a before it"),
        (yaml("[a]: 1"), "bot.yaml:1:1: a key must be text or a number, not a list"),
        (
            yaml("name: &a {x: 1}", "*a : 1"),
            "bot.yaml:2:1: a key must be text or a number, not a mapping",
        ),
        (
            yaml("name: a", "description: b\x00"),
            "bot.yaml:2:15: invalid YAML: control characters are not allowed",
        ),
        (
            yaml("name: a", "description: b\ud800"),
            "bot.yaml:2:15: invalid text: a lone surrogate is not a character",
        ),
    ],
    ids=["two-documents", "anchor-twice", "no-anchor", "list-key", "alias-key", "nul", "surrogate"],
)
def test_other_yaml_the_loader_could_not_place(text: str, expected: str) -> None:
    assert_error(text, expected)


def test_an_equals_sign_is_text() -> None:
    # PyYAML resolves a plain `=` to a tag it has no constructor for.
    bot, found = load_text(yaml("description: =", "routes: [{reply: hi}]"), "bot.yaml", {})
    assert found == []
    assert bot is not None
    assert bot.spec.description == "="


# --- nesting inside templates and conditions, and long values ---------------------------


def test_a_condition_nested_too_deeply_is_located() -> None:
    condition = "(" * 600 + "message" + ")" * 600
    bot, found = load_text(yaml(f'routes: [{{if: "{condition}", reply: a}}, {{reply: b}}]'))
    assert bot is None
    assert [problem.message for problem in found] == [
        "invalid expression: it is nested more than 50 levels deep"
    ]
    # At the 51st bracket: the condition starts at column 16.
    assert (found[0].line, found[0].column, found[0].loc) == (1, 66, "routes[0].if")


def test_a_template_nested_too_deeply_is_located() -> None:
    template = "{{ " + "(" * 80 + "message" + ")" * 80 + " }}"
    bot, found = load_text(yaml(f'routes: [{{reply: "{template}"}}]'))
    assert bot is None
    assert [(p.message, p.line, p.column) for p in found] == [
        ("invalid template: it is nested more than 20 levels deep", 1, 19)
    ]


def _nested_bot(conditions: int, templates: int) -> str:
    condition = "!" * conditions + "message"
    template = "{{ " + "(" * templates + "message" + ")" * templates + " }}"
    return yaml(f'routes: [{{if: "{condition}", reply: "{template}"}}, {{reply: b}}]')


def _nested_verdict(conditions: int, templates: int, stack: int) -> list[str]:
    """The messages for a bot loaded with `stack` frames already in use."""
    if stack:
        return _nested_verdict(conditions, templates, stack - 1)
    return [problem.message for problem in load_text(_nested_bot(conditions, templates))[1]]


def test_nesting_limits_are_the_same_wherever_a_bot_is_loaded() -> None:
    """Right at the limits a bot loads, one past them it does not, on a shallow stack and on
    one already 600 frames deep (the parsers' own recursion, and JMESPath's cache, once
    made the verdict depend on that)."""
    for stack in (0, 600):
        assert _nested_verdict(50, 20, stack) == []
        assert _nested_verdict(51, 21, stack) == [
            "invalid expression: it is nested more than 50 levels deep",
            "invalid template: it is nested more than 20 levels deep",
        ]


def test_a_long_value_is_shown_by_its_start() -> None:
    text = yaml("name: ok", 'routes: "' + "y" * 2000 + '"')
    assert_error(
        text,
        f"bot.yaml:2:9: routes: got {'y' * 60!r}... (a string of 2,000 characters); "
        "expected a list (lines starting with '- ')",
    )


# --- what a new bot creator trips over (issue 8) ------------------------------------------


def test_an_unknown_variable_is_located_by_the_templates_tokens() -> None:
    """`lang` was found inside `language`, by a search of the text."""
    assert_error(
        yaml("routes:", '  - reply: "{% if language %}Answer in ({{ lang }}).{% endif %}"'),
        "bot.yaml:2:44: routes[0].reply: unknown variable 'lang' (did you mean 'language'?)\n"
        "    {% if language %}Answer in ({{ lang }}).{% endif %}\n"
        "                                   ^",
    )


def test_a_function_name_in_a_string_is_not_a_call() -> None:
    assert_error(
        yaml(
            "routes:",
            "  - if: \"contains(message, 'regexx(') && regexx(message, 'a')\"",
            "    reply: hi",
            *FALLBACK,
        ),
        "bot.yaml:2:42: routes[0].if: unknown function 'regexx' (did you mean 'regex'?)\n"
        "    contains(message, 'regexx(') && regexx(message, 'a')\n"
        "                                    ^",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml(
                "routes:",
                "  - reply: hi",
                "tests:",
                "  - say: When should I book?",
                "    model_reply: [Yes, book early in summer.]",
            ),
            "bot.yaml:5:19: tests[0].model_reply[0]: got True (true or false); expected a string "
            "(YAML splits a [...] list at each comma, and reads a plain Yes as true; "
            'write "Yes, book early in summer." in quotes)',
        ),
        (
            yaml("suggested_replies: [Yes, No]", "greeting: on", "routes:", "  - reply: hi"),
            "bot.yaml:2:11: greeting: got True (true or false); expected a string "
            '(YAML reads a plain on as true; write "on" in quotes)\n'
            "bot.yaml:1:21: suggested_replies[0]: got True (true or false); expected a string "
            '(YAML reads a plain Yes as true; write "Yes" in quotes)\n'
            "bot.yaml:1:26: suggested_replies[1]: got False (true or false); expected a string "
            '(YAML reads a plain No as false; write "No" in quotes)',
        ),
        (
            # `you can` became a key of its own: the one fix covers it.
            yaml(
                "routes:",
                "  - reply: hi",
                "tests:",
                "  - say: Can I?",
                "    expect: {equals: Yes, you can}",
            ),
            "bot.yaml:5:22: tests[0].expect.equals: got True (true or false); expected a string "
            "(YAML splits a {...} mapping at each comma, and reads a plain Yes as true; "
            'write "Yes, you can" in quotes)',
        ),
    ],
    ids=["comma-in-flow-list", "plain-booleans", "comma-in-flow-mapping"],
)
def test_yaml_reading_prose_as_booleans_or_lists_is_explained(text: str, expected: str) -> None:
    assert_error(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            yaml(
                "model: {provider: scripted, replies: [Hi]}",
                "routes:",
                "  - llm:",
                "    system: You are terse.",
                "    prompt: '{{ message }}'",
            ),
            "bot.yaml:4:5: routes[0].system: unknown key 'system' "
            "(indent `system` under `llm` (line 3); as written, `llm` is empty)\n"
            "bot.yaml:5:5: routes[0].prompt: unknown key 'prompt' "
            "(indent `prompt` under `llm` (line 3); as written, `llm` is empty)",
        ),
        (
            yaml(
                "model: {provider: scripted, replies: [Hi]}",
                "routes:",
                "  - llm:",
                "      system: You are terse.",
                "    prompt: '{{ message }}'",
            ),
            "bot.yaml:5:5: routes[0].prompt: unknown key 'prompt' "
            "(indent `prompt` like `system` on line 4, to put it under `llm`)",
        ),
        (
            yaml("input:", "max_length: 300", "routes:", "  - reply: hi"),
            "bot.yaml:2:1: max_length: unknown key 'max_length' "
            "(indent `max_length` under `input` (line 1); as written, `input` is empty)",
        ),
        (
            yaml("name: trip", " description: Plans trips.", "routes:", "  - reply: hi"),
            "bot.yaml:2:13: invalid YAML: mapping values are not allowed in this context "
            "(start `description` at the beginning of its line, like `name` on line 1)",
        ),
        (
            yaml("input:", "  max_length: 300", " min_length: 2", "routes:", "  - reply: hi"),
            "bot.yaml:3:2: invalid YAML: did not find expected key "
            "(indent `min_length` 2 spaces, like `max_length` on line 2)",
        ),
        (
            yaml("routes:", "  - if: turn", "    reply: hello", " - reply: bye"),
            "bot.yaml:4:2: invalid YAML: did not find expected key "
            "(indent this `- ` 2 spaces, like the `- ` on line 2)",
        ),
        (
            yaml("routes:", "  - reply: Note: we are closed on Sundays."),
            "bot.yaml:2:16: invalid YAML: mapping values are not allowed in this context "
            "(a plain value cannot hold ': '; write \"Note: we are closed on Sundays.\" in quotes)",
        ),
    ],
    ids=[
        "key-beside-empty-key",
        "key-beside-its-siblings",
        "top-level-key",
        "extra-space",
        "missing-space",
        "item-too-shallow",
        "colon-in-text",
    ],
)
def test_indentation_slips_and_colons_say_what_to_write(text: str, expected: str) -> None:
    assert_error(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            # A mapping is a model; only its member's complaint is told, not "expected a list".
            yaml(
                "model:",
                "  provider: openai",
                "  name: gpt-4o-mini",
                "  api_key: sk-abc123",
                "routes:",
                "  - llm: {}",
            ),
            "bot.yaml:4:12: model.api_key: got a key written out (9 characters, not shown); "
            "expected an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself",
        ),
        (
            # `{generate: …}` and `{poe: true}` both take a mapping: the closer one is told.
            yaml("routes:", "  - reply: hi", "    suggest: {generate: 3, foo: 1}"),
            "bot.yaml:3:28: routes[0].suggest.foo: unknown key 'foo' (allowed: generate, model)",
        ),
    ],
    ids=["model-mapping", "suggest-mapping"],
)
def test_a_union_reports_only_the_member_that_fits(text: str, expected: str) -> None:
    assert_error(text, expected)


BROKEN_WITH_WARNINGS = yaml(
    "access_key: ${BOT_KEY}",
    "model:",
    "  - {provider: openai, name: gtp-4o, api_key: '${MY_OPENAI_KEY}'}",
    "  - {provider: anthropic, name: claude-haiku-4-5, temperature: 0.2}",
    "  - {provider: poe, bot: Claude-Haiku-4.5}",
    "routes:",
    "  - if: turn",
    "    llm: {model: {provider: openai, name: gpt-4o, api_key: sk-literal}}",
    "  - reply: hi",
    "    bad: 1",
)
BROKEN_WITH_WARNINGS_REPORT = [
    "bot.yaml:1:13: warning: access_key: environment variable BOT_KEY holds a 5-character key; "
    "use at least 16 characters (Poe's own keys have 32) (a short key can be guessed; it is "
    "served only on a loopback address)",
    "bot.yaml:3:30: warning: model[0].name: 'gtp-4o' is not a known openai model name (openai "
    "model names start with gpt- or chatgpt- or o1 or o3 or o4 or codex-; until it is fixed, "
    "answers say the bot's model is not configured)",
    "bot.yaml:3:47: warning: model[0].api_key: environment variable MY_OPENAI_KEY is not set "
    "(until it is, this model answers that the bot's model is not configured)",
    "bot.yaml:4:5: warning: model[1]: environment variable ANTHROPIC_API_KEY is not set "
    "(until it is, this model answers that the bot's model is not configured)",
    "bot.yaml:4:64: warning: model[1].temperature: Anthropic models no longer accept "
    "temperature; it is not sent (remove `temperature` (shape answers with the system prompt "
    "instead))",
    # A model that is itself invalid has its error, and no warnings.
    "bot.yaml:8:60: routes[0].llm.model.api_key: got a key written out (10 characters, "
    "not shown); expected an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself",
    "bot.yaml:10:5: routes[1].bad: unknown key 'bad' (allowed: files, if, reply, suggest)",
]


def test_a_file_with_structural_errors_keeps_its_warnings() -> None:
    """They were all lost: `validate` printed `0 warnings` for this file (issue 8.5)."""
    found = sorted(problems(BROKEN_WITH_WARNINGS, {"BOT_KEY": "short"}), key=place)
    assert [str(problem) for problem in found] == BROKEN_WITH_WARNINGS_REPORT
    # The same warnings as once the structure is fixed: the same code finds them.
    fixed = problems(BROKEN_WITH_WARNINGS.replace("    bad: 1\n", ""), {"BOT_KEY": "short"})
    assert sorted(map(str, fixed)) == sorted(BROKEN_WITH_WARNINGS_REPORT[:-1])


@pytest.mark.parametrize(
    ("access_key", "expected"),
    [
        (
            [],
            "bot.yaml:3:9: routes[0].llm: got None (nothing); expected a mapping (key: value "
            "lines)\n"
            "bot.yaml:1:8: warning: model: calling the Poe bot Claude-Haiku-4.5 needs this bot's "
            "access key (set `access_key` and its variable; until then this model fails)",
        ),
        # A key written wrong has its own error; the model is not told about it again.
        (
            ["access_key: abcdef"],
            "bot.yaml:2:13: access_key: got a key written out (6 characters, not shown); "
            "expected an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself\n"
            "bot.yaml:4:9: routes[0].llm: got None (nothing); expected a mapping (key: value "
            "lines)",
        ),
    ],
    ids=["no-key", "key-written-wrong"],
)
def test_a_structurally_broken_file_still_says_a_poe_model_needs_a_key(
    access_key: list[str], expected: str
) -> None:
    text = yaml("model: {provider: poe, bot: Claude-Haiku-4.5}", *access_key, "routes:", "  - llm:")
    assert_error(text, expected)


def test_the_readmes_word_boundary_example_matches_as_it_says() -> None:
    """The README writes `\\b` in a condition three ways; each reaches RE2 as `\\b`."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("routes:\n  - if: regex(message, '(?i)\\bcancel\\b')")
    bot, found = load_text(readme[start : readme.index("```", start)], "readme.yaml", {})
    assert bot is not None and found == []

    def answered_by(message: str) -> str:
        context = {"message": message}
        return next(r for r in bot.routes if not r.condition or r.condition.matches(context)).loc

    messages = ["Cancel it", "a refund?", "do you ship", "shipping"]
    assert [answered_by(m) for m in messages] == [f"routes[{i}]" for i in range(4)]


# --- secrets written out, and backspaces from YAML's double quotes -----------------------


def test_a_key_written_out_is_never_printed() -> None:
    text = yaml("access_key: pk-0123456789abcdef", "routes:", "  - reply: hi")
    bot, found = load_text(text, "bot.yaml", {})
    assert "0123456789" not in "\n".join(map(str, found))
    assert [str(problem) for problem in found] == [
        "bot.yaml:1:13: access_key: got a key written out (19 characters, not shown); "
        "expected an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself"
    ]


def test_a_backspace_from_double_quotes_is_named_and_shown() -> None:
    text = "routes:\n  - if: \"regex(message, '\\bhi\\b')\"\n    reply: x\n  - reply: y\n"
    assert_error(
        text,
        "bot.yaml:2:26: routes[0].if: invalid regular expression '\\x08hi\\x08': it holds a "
        "backspace character (in YAML's double quotes \\b is a backspace; write the pattern "
        "in single quotes, '\\bword\\b', or double the backslash, \"\\\\bword\\\\b\")\n"
        "    regex(message, '\u2408hi\u2408')\n"
        "                    ^",
    )
