"""Bots' regular expressions: RE2's dialect, its errors, and one dialect in every place."""

from __future__ import annotations

import pickle

import pytest

from engine.loader import load_text
from engine.patterns import PatternError, compile_any, compile_pattern
from engine.testing import run_bot_tests

WHY = "bots' regular expressions use RE2 syntax, which runs in linear time; "


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("refund", "my refund?", True),
        ("^refund", "my refund?", False),
        # \w, \d, \s and \b are ASCII, as the README says; \pL and (?i) know Unicode.
        ("^\\w+$", "héllo", False),
        ("^[\\pL\\pN_]+$", "héllo_1", True),
        ("^\\d+$", "١٢٣", False),
        ("^\\pN+$", "١٢٣", True),
        ("\\bpassword\\b", "üpassword", True),
        ("(?i)^é$", "É", True),
        ("(?i)^σ$", "Σ", True),
        ("^.$", "😀", True),
        # $ is the end of the text (Python's also matches before a final newline).
        ("a$", "a\n", False),
        ("(?m)a$", "a\nb", True),
        ("a\\z", "ba", True),
        # A lone surrogate is matched as what it is, never an encoding error.
        ("x", "\ud800x", True),
        ("^y", "\ud800x", False),
    ],
)
def test_the_dialect(pattern: str, text: str, found: bool) -> None:
    assert compile_pattern(pattern).found_in(text) is found


@pytest.mark.parametrize(
    ("pattern", "reason", "offset", "hint"),
    [
        ("ab(c", "missing ), unterminated group", 2, None),
        ("((a)", "missing ), unterminated group", 0, None),
        ("[^]a]b[c", "missing ], unterminated character class", 6, None),
        ("\\Q(\\E)", "unbalanced parenthesis", 5, None),
        ("a{2,1}", "invalid repetition {2,1}", 1, "counts go up to 1000, smaller first"),
        ("x{2000}", "invalid repetition {2000}", 1, "counts go up to 1000, smaller first"),
        ("a**", "repetition of a repetition **", 1, "put the inner one in a group, like (?:a+)*"),
        ("*a", "nothing to repeat before *", 0, None),
        ("a\\", "the pattern ends in a lone backslash", 1, "write \\\\ for a backslash"),
        ("\\pX", "unknown Unicode class \\pX", 0, "like \\pL, \\p{Greek} or \\PN"),
        ("[z-a]", "invalid character class or range z-a", 1, None),
        ("(?i", "unknown group syntax (?i", 0, "see https://github.com/google/re2/wiki/Syntax"),
        ("\\pL{500}", "the pattern is too large", 0, "RE2 caps a compiled pattern at 8 MiB"),
        # What Python's re runs and RE2 cannot: named, with what to write instead.
        ("a(?=b)", "lookahead (?=...) is not supported", 1, WHY + "match the text"),
        ("a(?!b)", "negative lookahead (?!...) is not supported", 1, WHY + "check what"),
        ("(?<=a)b", "lookbehind (?<=...) is not supported", 0, WHY + "match the text"),
        ("(?<!a)b", "negative lookbehind (?<!...) is not supported", 0, WHY + "check what"),
        ("(a)\\1", "backreference \\1 is not supported", 3, WHY + "spell out"),
        ("\\\\1(?P<n>a)(?P=n)", "backreference (?P=name) is not supported", 11, WHY + "spell"),
        ("(?>a+)b", "atomic group (?>...) is not supported", 0, WHY + "write a plain group"),
        ("xa++", "possessive repetition ++ is not supported", 2, WHY + "write +"),
        ("(?(1)a|b)", "conditional group (?(...) is not supported", 0, WHY + "write the"),
        ("(?x) a b", "flag x is not supported", 0, WHY + "RE2's flags are i, m, s and U"),
        ("(?#note)a", "comment (?#...) is not supported", 0, WHY + "remove the comment"),
        ("a\\Z", "\\Z is not supported", 1, WHY + "write \\z for the end of the text"),
        ("\\u00e9", "\\u is not supported", 0, WHY + "write a code point as \\x{263a}"),
    ],
)
def test_errors_say_what_is_wrong_where_and_what_to_write(
    pattern: str, reason: str, offset: int, hint: str | None
) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    error = caught.value
    assert (error.pattern, error.reason, error.offset) == (pattern, reason, offset)
    assert str(error) == f"invalid regular expression: {reason}"
    if hint is None:
        assert error.hint is None
    else:
        assert error.hint is not None and error.hint.startswith(hint)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("my SECRET", True),
        ("ABC", True),
        ("abc", False),  # (?i) stays inside its own pattern
        ("x", True),
        ("say x please", False),  # ^ and $ too
        ("a.b)", True),  # \Q...\E quotes to the end of its pattern: searched alone
        ("a-b)", False),
    ],
)
def test_reject_patterns_are_searched_as_one(text: str, found: bool) -> None:
    patterns = compile_any(["(?i)secret", "ABC", "^x$", "\\Qa.b)"])
    assert [pattern.source for pattern in patterns] == ["(?:(?i)secret)|(?:ABC)|(?:^x$)", "\\Qa.b)"]
    assert any(pattern.found_in(text) for pattern in patterns) is found


def test_reject_patterns_too_large_together_are_searched_one_by_one() -> None:
    sources = ["\\pL{300}", "x\\pL{300}"]  # about 360,000 RE2 instructions each
    compile_pattern(sources[0])
    with pytest.raises(PatternError):
        compile_pattern("|".join(f"(?:{source})" for source in sources))
    assert [pattern.source for pattern in compile_any(sources)] == sources


ONE_DIALECT = """\
input:
  reject: ['{reject}']
routes:
  - if: regex(message, '{condition}')
    reply: Über
  - reply: fallback
tests:
  - say: Über
    expect: {{regex: '{condition}'}}
"""


def test_reject_conditions_and_test_expectations_share_one_dialect() -> None:
    # \p{Greek} and \p{Lu} are RE2, not Python's re; (?=...) is Python's re, not RE2.
    text = ONE_DIALECT.format(reject="\\p{Greek}", condition="^\\p{Lu}")
    bot, problems = load_text(text, "bot.yaml", {})
    assert problems == []
    assert bot is not None
    assert [result.failures for result in run_bot_tests(bot)] == [[]]
    _, problems = load_text(ONE_DIALECT.format(reject="(?=U)", condition="(?=U)"), "bot.yaml", {})
    assert sorted((problem.line, problem.loc) for problem in problems) == [
        (2, "input.reject[0]"),
        (4, "routes[0].if"),
        (9, "tests[0].expect.regex"),
    ]
    assert all("lookahead (?=...) is not supported" in problem.message for problem in problems)


def test_a_pattern_is_compiled_once() -> None:
    assert compile_pattern("(?i)refund") is compile_pattern("(?i)refund")


def test_a_pattern_pickles_as_its_source() -> None:
    # Bots loaded by forked processes (loader/parallel.py) come back pickled.
    pattern = pickle.loads(pickle.dumps(compile_pattern("^(b+)+$")))
    assert pattern is compile_pattern("^(b+)+$")
    assert pattern.found_in("bbb") and not pattern.found_in("b" * 100 + "!")
