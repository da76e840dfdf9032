"""JMESPath conditions: values, truthiness, the engine's functions and load-time errors."""

from __future__ import annotations

from typing import Any

import pytest
from jmespath.exceptions import JMESPathTypeError

from engine.errors import ExpressionError
from engine.expressions import FUNCTION_NAMES, Condition, compile_condition

CONTEXT: dict[str, Any] = {
    "message": "  Hello World, where is my REFUND?  ",
    "turn": 3,
    "params": {"style": "pixel", "strength": 0.9, "keep_faces": False, "count": 0},
    "history": [
        {"role": "user", "content": "hi"},
        {"role": "bot", "content": "Hello!"},
    ],
    "attachments": [
        {"name": "a.png", "content_type": "image/png"},
        {"name": "b.pdf", "content_type": "application/pdf"},
    ],
    "vars": {},
    "user": {"id": "u-1"},
    "language": "en",
    "now": {"hour": 9, "weekday": 5},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("turn", 3),
        ("params.style", "pixel"),
        ("params.missing", None),
        ("missing.deeper", None),
        ("turn > `2`", True),
        ("turn == `3`", True),
        ("params.strength > `0.8` && !(params.keep_faces)", True),
        ("params.style == 'pixel' || params.style == 'photo'", True),
        ("language == 'fr'", False),
        ("length(history)", 2),
        ("history[-1].role", "bot"),
        ("history[?role == 'user'].content", ["hi"]),
        ("attachments[*].content_type", ["image/png", "application/pdf"]),
        ("length(attachments[?starts_with(content_type, 'image/')])", 1),
        ("contains(['en', 'de'], language)", True),
        ("now.hour >= `9` && now.weekday < `5`", False),
        ("vars", {}),
        ("params.count", 0),
        ("`null`", None),
        ("'literal'", "literal"),
        ("[turn, language]", [3, "en"]),
        ("{t: turn}", {"t": 3}),
        ("user.id", "u-1"),
    ],
)
def test_search_values(source: str, expected: Any) -> None:
    assert compile_condition(source).search(CONTEXT) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # regex: RE2 syntax, found anywhere in the text, flags inline.
        ("regex(message, 'REFUND')", True),
        ("regex(message, 'refund')", False),
        ("regex(message, '(?i)refund')", True),
        ("regex(message, '^Hello')", False),
        ("regex(trim(message), '^Hello')", True),
        ("regex(message, '\\bWorld\\b')", True),
        ("regex(message, '')", True),
        ("regex(params.missing, '.*')", False),
        ("regex(user.id, '^u-\\d$')", True),
        # RE2, not Python's re: \p classes and \z exist, $ is the very end of the text
        ("regex(message, '\\p{Lu}\\pL+ \\pL')", True),
        ("regex(message, '\\?  \\z')", True),
        ("regex('a\n', 'a$')", False),
        # case and whitespace helpers
        ("lower(message)", "  hello world, where is my refund?  "),
        ("upper(language)", "EN"),
        ("trim(message)", "Hello World, where is my REFUND?"),
        ("trim('')", ""),
        ("lower('ÄÖÜ')", "äöü"),
        # word_count splits on any whitespace
        ("word_count(message)", 6),
        ("word_count('')", 0),
        ("word_count('   ')", 0),
        ("word_count('one\ttwo\nthree')", 3),
        # starts_with_any / contains_any take a list of strings
        ("starts_with_any(trim(message), ['Hi', 'Hello'])", True),
        ("starts_with_any(message, ['Hello'])", False),
        ("starts_with_any(message, `[]`)", False),
        ("starts_with_any('', [''])", True),
        ("contains_any(lower(message), ['refund', 'return'])", True),
        ("contains_any(message, ['refund'])", False),
        ("contains_any(message, `[]`)", False),
        ("contains_any(language, ['e', 'x'])", True),
        # built-ins still work next to ours
        ("starts_with(language, 'e')", True),
        ("join(', ', history[*].role)", "user, bot"),
        ("to_string(turn)", "3"),
        ("max_by(attachments, &name).name", "b.pdf"),
        ("sort_by(history, &content)[0].content", "Hello!"),
        ("not_null(params.missing, language)", "en"),
    ],
)
def test_engine_functions(source: str, expected: Any) -> None:
    assert compile_condition(source).search(CONTEXT) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (0, True),
        (0.0, True),
        (1, True),
        (-1, True),
        ("0", True),
        ("false", True),
        (" ", True),
        ([0], True),
        ([None], True),
        ({"a": None}, True),
    ],
    ids=repr,
)
def test_matches_uses_jmespath_truthiness(value: Any, expected: bool) -> None:
    assert compile_condition("value").matches({"value": value}) is expected


def test_a_missing_name_does_not_match() -> None:
    assert compile_condition("nothing.here").matches({}) is False


@pytest.mark.parametrize(
    "source",
    ["lower(turn)", "regex(params.count, 'x')", "contains_any(message, [`1`])"],
)
def test_wrong_types_at_runtime_raise_jmespath_type_errors(source: str) -> None:
    condition = compile_condition(source)  # types are only known from the context
    with pytest.raises(JMESPathTypeError):
        condition.search(CONTEXT)


@pytest.mark.parametrize(
    ("source", "message", "offset", "hint"),
    [
        ("", "invalid expression: it is empty", 0, None),
        ("   ", "invalid expression: it ends too early", 3, None),
        ("message ==", "invalid expression: it ends too early", 10, None),
        ("lower(message", "invalid expression: it ends too early", 13, None),
        ("a && b ||", "invalid expression: it ends too early", 9, None),
        ("a.", "invalid expression: it ends too early", 2, None),
        ("message = 'x'", "invalid expression: unknown token '='", 8, None),
        ("message @@ x", "invalid expression: unexpected '@'", 8, None),
        ("a == 'x' b", "invalid expression: unexpected 'b'", 9, None),
        ("message == 'x", "invalid expression: unclosed ' delimiter", 11, None),
        ('"abc', 'invalid expression: unclosed " delimiter', 0, None),
        ("`1", "invalid expression: unclosed ` delimiter", 0, None),
        ("lowr(message)", "unknown function 'lowr'", 0, "did you mean 'lower'?"),
        (
            "turn > `1` && wordcount(message)",
            "unknown function 'wordcount'",
            14,
            "did you mean 'word_count'?",
        ),
        ("zzz(message)", "unknown function 'zzz'", 0, None),
        (
            "contains_any(message, ['a']) && contain_any(message, ['b'])",
            "unknown function 'contain_any'",
            32,
            "did you mean 'contains_any'?",
        ),
        # Calls are found among the expression's tokens: text in a string is not a call.
        (
            "contains(message, 'regexx(') && regexx(message, 'a')",
            "unknown function 'regexx'",
            32,
            "did you mean 'regex'?",
        ),
        (
            "contains(message, 'regex(') && regex(lower(message), '(?i)a(')",
            "invalid regular expression '(?i)a(': missing ), unterminated group",
            59,
            None,
        ),
        (
            "regex(message, 'it\\'s (')",
            'invalid regular expression "it\'s (": missing ), unterminated group',
            22,
            None,
        ),
        ("regex(message)", "regex() takes 2 arguments, got 1", 0, None),
        ("lower(message, 'a')", "lower() takes 1 argument, got 2", 0, None),
        ("word_count()", "word_count() takes 1 argument, got 0", 0, None),
        ("abs(`1`, `2`)", "abs() takes 1 argument, got 2", 0, None),
        (
            "lower(message) == 'a' || lower(message, message)",
            "lower() takes 1 argument, got 2",
            25,
            None,
        ),
        (
            "regex(message, '(?i)ab(')",
            "invalid regular expression '(?i)ab(': missing ), unterminated group",
            22,
            None,
        ),
        (
            "regex(message, 'a') && regex(message, 'b[')",
            "invalid regular expression 'b[': missing ], unterminated character class",
            40,
            None,
        ),
        (
            "history[?regex(content, '(')]",
            "invalid regular expression '(': missing ), unterminated group",
            25,
            None,
        ),
        (
            # A JSON literal is not found in the text: the caret goes to the call.
            'turn > `1` && regex(message, `"("`)',
            "invalid regular expression '(': missing ), unterminated group",
            14,
            None,
        ),
        (
            # What Python's re runs and RE2 cannot: the error says why and what to write.
            "regex(message, 'x(?<=a)')",
            "invalid regular expression 'x(?<=a)': lookbehind (?<=...) is not supported",
            17,
            "bots' regular expressions use RE2 syntax, which runs in linear time; "
            "match the text before it too, or check it separately",
        ),
        (
            "regex(message, '(a)\\1')",
            "invalid regular expression '(a)\\\\1': backreference \\1 is not supported",
            19,
            "bots' regular expressions use RE2 syntax, which runs in linear time; "
            "spell out the repeated text",
        ),
        ("regex(message, `1`)", "regex() needs its pattern as a string", 0, None),
        (
            "turn > `1` && regex(message, params.pattern)",
            "regex() takes its pattern as a literal like '(?i)refund', never from the conversation",
            14,
            "a pattern sent by a user could make the server hang",
        ),
    ],
)
def test_compile_errors(source: str, message: str, offset: int, hint: str | None) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_condition(source)
    error = caught.value
    assert (error.message, error.offset, error.hint) == (message, offset, hint)
    assert str(error) == message


@pytest.mark.parametrize(
    "source",
    [
        "sort_by(history, &lower(content))",
        "not_null(params.a, params.b, 'x')",
    ],
)
def test_valid_expressions_compile(source: str) -> None:
    assert isinstance(compile_condition(source), Condition)


def test_the_source_is_kept() -> None:
    assert compile_condition("turn > `1`").source == "turn > `1`"


def test_function_names_include_ours_and_the_builtins() -> None:
    ours = {"regex", "lower", "upper", "trim", "word_count", "starts_with_any", "contains_any"}
    assert ours <= set(FUNCTION_NAMES)
    assert {"length", "contains", "starts_with", "to_string"} <= set(FUNCTION_NAMES)
    assert sorted(FUNCTION_NAMES) == FUNCTION_NAMES
