"""The interpreter without HTTP: routes, input rules, the context document, run-time failures."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.compiled import CompiledBot, PoeSuggests, suggestions_of
from engine.protocol.events import Done, Error, Event, Meta, Suggest, Text
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.runtime import NO_MESSAGE, NO_ROUTE, run
from engine.runtime.context import build_context, split_conversation
from engine.runtime.input import REJECTED
from engine.spec.context import CONTEXT_NAMES

from ._poe import bot as bot_message
from ._poe import query, user
from .conftest import REPO

MakeBot = Callable[..., CompiledBot]
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def answer(bot: CompiledBot, *messages: dict[str, Any], **fields: Any) -> list[Event]:
    """Events for a query as Poe would send it, parsed as leniently as the web layer does."""
    request = parse_query(query(*messages, **fields))
    return list(guarded(run(bot, request, NOW), bot.name))


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, Text))


def error_of(events: list[Event]) -> Error:
    errors = [event for event in events if isinstance(event, Error)]
    assert len(errors) == 1, events
    return errors[0]


# ---------------------------------------------------------------------------- routes

ROUTES = """
    name: router
    suggested_replies: [default one, default two]
    routes:
      - if: "contains(message, 'refund')"
        reply: first
        suggest: [own]
      - if: "contains(message, 're')"
        reply: second
      - if: "message == 'boom'"
        error: {text: "no {{ message }}", allow_retry: true, error_type: user_caused_error}
      - reply: "fallback: {{ message }}"
"""


def test_the_first_matching_route_wins(make_bot: MakeBot) -> None:
    router = make_bot(ROUTES)
    assert answer(router, user("refund please")) == [
        Meta(),
        Text("first"),
        Suggest("own"),
        Done(),
    ]


def test_a_later_route_answers_when_earlier_ones_do_not_match(make_bot: MakeBot) -> None:
    events = answer(make_bot(ROUTES), user("read this"))
    assert text_of(events) == "second"
    # A route without `suggest` sends the bot's default suggestions.
    assert [e.text for e in events if isinstance(e, Suggest)] == ["default one", "default two"]


def test_the_fallback_answers_everything_else(make_bot: MakeBot) -> None:
    assert text_of(answer(make_bot(ROUTES), user("hats?"))) == "fallback: hats?"


def test_an_error_route_sends_its_error(make_bot: MakeBot) -> None:
    events = answer(make_bot(ROUTES), user("boom"))
    assert events == [
        Meta(),
        Error("no boom", allow_retry=True, error_type="user_caused_error"),
        Done(),
    ]


def test_no_matching_route_is_an_error(make_bot: MakeBot) -> None:
    picky = make_bot("""
        name: picky
        routes:
          - if: "message == 'yes'"
            reply: ok
    """)
    assert text_of(answer(picky, user("yes"))) == "ok"
    assert answer(picky, user("no")) == [Meta(), Error(NO_ROUTE, allow_retry=False), Done()]


def test_blank_suggestions_are_dropped(make_bot: MakeBot) -> None:
    bot = make_bot("""
        name: blanks
        routes:
          - reply: hi
            suggest: ["{{ 'shown' if turn == 1 }}", "  ", "{{ '' }}", always]
    """)
    events = answer(bot, user("x"))
    assert [e.text for e in events if isinstance(e, Suggest)] == ["shown", "always"]


def test_poe_suggests_replies_is_a_type_of_its_own(make_bot: MakeBot) -> None:
    bot = make_bot("""
        name: poe-suggests
        routes:
          - if: "message == 'error'"
            error: {text: refused}
          - reply: hi
            suggest: {poe: true}
    """)
    assert [suggestions_of(route) for route in bot.routes] == [None, PoeSuggests()]
    assert answer(bot, user("x")) == [Meta(suggested_replies=True), Text("hi"), Done()]
    assert answer(bot, user("error"))[0] == Meta()


# ---------------------------------------------------------------------------- input rules


PNG = {"url": "https://x.invalid/a.png", "content_type": "image/png", "name": "a.png"}
PDF = {"url": "https://x.invalid/r.pdf", "content_type": "application/pdf", "name": "r.pdf"}


def _input_bot(make_bot: MakeBot, rules: str) -> CompiledBot:
    return make_bot(f"""
        name: checked
        input: {rules}
        routes:
          - reply: "ok: {{{{ message }}}}"
    """)


@pytest.mark.parametrize(
    ("rules", "message", "attachments", "expected"),
    [
        # (rules, message, attachments, None = accepted | (error text, error_type))
        ("{min_length: 3}", "abc", [], None),
        (
            "{min_length: 3}",
            "  ab  ",
            [],
            ("Your message is too short (at least 3 characters).", "user_caused_error"),
        ),
        ("{max_length: 5}", "12345", [], None),
        (
            "{max_length: 5}",
            "123456",
            [],
            ("Your message is too long (6 characters; the limit is 5).", "user_message_too_long"),
        ),
        (
            "{max_length: 1000}",
            "x" * 1001,
            [],
            (
                "Your message is too long (1,001 characters; the limit is 1,000).",
                "user_message_too_long",
            ),
        ),
        # The length limit keeps Poe's error type even when the bot sets another one.
        (
            "{max_length: 2, error_type: privacy_authorization_error}",
            "abc",
            [],
            ("Your message is too long (3 characters; the limit is 2).", "user_message_too_long"),
        ),
        (
            "{reject: ['(?i)secret']}",
            "my SECRET",
            [],
            ("Sorry, I can't accept that message.", "user_caused_error"),
        ),
        (
            "{reject: ['(?i)secret']}",
            "my secrets",
            [],
            ("Sorry, I can't accept that message.", "user_caused_error"),
        ),
        ("{reject: ['^x$', 'bad']}", "all good", [], None),
        (
            "{attachments: {required: true}}",
            "hi",
            [],
            ("Please attach a file.", "user_caused_error"),
        ),
        ("{attachments: {required: true}}", "hi", [PNG], None),
        (
            "{attachments: {max: 0}}",
            "hi",
            [PNG],
            ("This bot does not accept attachments.", "user_caused_error"),
        ),
        (
            "{attachments: {max: 1}}",
            "hi",
            [PNG, PNG],
            ("Please attach at most 1 file(s).", "user_caused_error"),
        ),
        ("{attachments: {max: 2}}", "hi", [PNG, PNG], None),
        ("{attachments: {types: ['image/*']}}", "hi", [PNG], None),
        (
            "{attachments: {types: ['image/*']}}",
            "hi",
            [PNG, PDF],
            ("r.pdf is not accepted (allowed: image/*).", "user_caused_error"),
        ),
        ("{attachments: {types: [image/png, application/pdf]}}", "hi", [PDF], None),
        (
            "{min_length: 1, error_type: privacy_authorization_error}",
            " ",
            [],
            ("Your message is too short (at least 1 characters).", "privacy_authorization_error"),
        ),
        (
            "{invalid: 'Refused: {{ message | upper }} ({{ attachments | length }} files)', "
            "attachments: {max: 0}}",
            "look",
            [PNG, PDF],
            ("Refused: LOOK (2 files)", "user_caused_error"),
        ),
        (
            "{invalid: 'Too long!', max_length: 2}",
            "abc",
            [],
            ("Too long!", "user_message_too_long"),
        ),
    ],
)
def test_input_rules(
    make_bot: MakeBot,
    rules: str,
    message: str,
    attachments: list[dict[str, str]],
    expected: tuple[str, str] | None,
) -> None:
    events = answer(_input_bot(make_bot, rules), user(message, attachments=attachments))
    if expected is None:
        assert text_of(events) == f"ok: {message}"
        assert not any(isinstance(e, Error) for e in events)
    else:
        text, error_type = expected
        assert events == [Meta(), Error(text, allow_retry=False, error_type=error_type), Done()]


PHONE = "{pattern: '\\d{3}-\\d{4}', message: \"Please don't share phone numbers.\"}"


@pytest.mark.parametrize(
    ("rules", "message", "attachments", "expected"),
    [
        # A rule's own message beats `invalid`, which beats the built-in reason.
        (
            "{max_length: {value: 5, message: 'Under 5, please ({{ message | length }} sent).'}}",
            "123456",
            [],
            ("Under 5, please (6 sent).", "user_message_too_long"),
        ),
        ("{max_length: {value: 5, message: Long.}}", "12345", [], None),
        (
            "{min_length: {value: 3, message: Say more.}, invalid: Refused.}",
            " ab ",
            [],
            ("Say more.", "user_caused_error"),
        ),
        (
            "{min_length: 3, max_length: {value: 5, message: Long.}, invalid: Refused.}",
            "ab",
            [],
            ("Refused.", "user_caused_error"),
        ),
        (
            f"{{reject: ['(?i)secret', {PHONE}], invalid: Refused.}}",
            "call 555-1234",
            [],
            ("Please don't share phone numbers.", "user_caused_error"),
        ),
        (f"{{reject: ['(?i)secret', {PHONE}]}}", "my SECRET", [], (REJECTED, "user_caused_error")),
        (f"{{reject: ['(?i)secret', {PHONE}]}}", "555 1234", [], None),
        # The first pattern found in the order written decides, wherever it is in the text.
        (
            f"{{reject: ['(?i)secret', {PHONE}], invalid: Refused.}}",
            "555-1234 is a secret",
            [],
            ("Refused.", "user_caused_error"),
        ),
        (
            "{reject: [{pattern: a, message: A.}, {pattern: b, message: B.}]}",
            "b then a",
            [],
            ("A.", "user_caused_error"),
        ),
        # A pattern holding \Q is searched apart from the others; its message still counts.
        (
            "{reject: [c, {pattern: '\\Qa.b', message: Dots.}]}",
            "a.b",
            [],
            ("Dots.", "user_caused_error"),
        ),
        (
            "{attachments: {required: {value: true, message: Please attach a photo.}}}",
            "hi",
            [],
            ("Please attach a photo.", "user_caused_error"),
        ),
        ("{attachments: {required: {value: false, message: Never.}}}", "hi", [], None),
        (
            "{attachments: {max: {value: 1, message: One at a time.}, "
            "types: {value: ['image/*'], message: Images only.}}, invalid: Refused.}",
            "hi",
            [PNG, PNG],
            ("One at a time.", "user_caused_error"),
        ),
        (
            "{attachments: {max: {value: 1, message: One at a time.}, "
            "types: {value: ['image/*'], message: Images only.}}, invalid: Refused.}",
            "hi",
            [PDF],
            ("Images only.", "user_caused_error"),
        ),
        (
            "{attachments: {max: {value: 0, message: 'No files ({{ attachments[0].name }}).'}}, "
            "error_type: privacy_authorization_error}",
            "hi",
            [PDF],
            ("No files (r.pdf).", "privacy_authorization_error"),
        ),
    ],
)
def test_a_rule_may_have_its_own_message(
    make_bot: MakeBot,
    rules: str,
    message: str,
    attachments: list[dict[str, str]],
    expected: tuple[str, str] | None,
) -> None:
    test_input_rules(make_bot, rules, message, attachments, expected)


def test_reject_patterns_without_messages_are_not_searched_one_by_one(make_bot: MakeBot) -> None:
    plain = _input_bot(make_bot, "{reject: [a, b], invalid: Refused.}")
    assert plain.input is not None
    assert [p.source for p in plain.input.reject] == ["(?:a)|(?:b)"]
    assert plain.input.reject_rules == ()
    mixed = _input_bot(make_bot, "{reject: [a, {pattern: b, message: B.}]}")
    assert mixed.input is not None
    assert [p.source for p in mixed.input.reject] == ["(?:a)|(?:b)"]
    assert [(r.value.source, r.message is not None) for r in mixed.input.reject_rules] == [
        ("a", False),
        ("b", True),
    ]


def test_a_failing_rule_message_is_an_error_event(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = _input_bot(make_bot, "{reject: [{pattern: x, message: '{{ attachments[3].name }}'}]}")
    with caplog.at_level(logging.ERROR):
        events = answer(bot, user("x"))
    assert error_of(events).text.startswith("Sorry, this bot could not build its answer.")
    (line,) = _engine_logs(caplog)
    assert line.startswith("bot checked: input.reject[0].message: template failed: ")


def test_input_rules_run_before_any_route(make_bot: MakeBot) -> None:
    bot = make_bot("""
        name: order
        input: {reject: [refund]}
        routes:
          - if: "contains(message, 'refund')"
            reply: never sent
          - reply: fine
    """)
    assert error_of(answer(bot, user("a refund"))).text == "Sorry, I can't accept that message."


# Issue 7, point 3: Python's re tried 2^n ways to split n letters between `(a+)` and `+`,
# which held a worker for 8-9 s at n = 30 until gunicorn killed it. RE2 reads the message
# once. At n = 100 backtracking would never finish, so the timeout (far above RE2's time
# even on a busy machine) turns the old behaviour into a failure instead of a hang.
HOSTILE = """
    name: hostile
    input: {reject: ['^(b+)+$']}
    routes:
      - if: "regex(message, '(a+)+$')"
        reply: only a's
      - reply: "answered: {{ message | length }} characters"
"""


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("a" * 100 + "!", "answered: 101 characters"),
        ("b" * 100 + "!", "answered: 101 characters"),
        ("a" * 100, "only a's"),
        # The body limit's worth of text: still one pass.
        ("a" * (1 << 20) + "!", f"answered: {(1 << 20) + 1} characters"),
    ],
    ids=["condition", "reject", "condition-matches", "one-mib"],
)
def test_hostile_messages_are_answered_without_backtracking(
    make_bot: MakeBot, message: str, expected: str
) -> None:
    assert text_of(answer(make_bot(HOSTILE), user(message))) == expected


@pytest.mark.timeout(10)
def test_a_hostile_message_matching_a_reject_pattern_is_refused(make_bot: MakeBot) -> None:
    events = answer(make_bot(HOSTILE), user("b" * 100))
    assert error_of(events).text == "Sorry, I can't accept that message."


# ---------------------------------------------------------------------------- context


CONTEXT_BOT = """
    name: ctx
    description: Shows its context.
    settings:
      parameter_controls:
        api_version: "2"
        sections:
          - controls:
              - {control: drop_down, label: Style, parameter_name: style,
                 options: [{value: photo, name: Photo}, {value: pixel, name: Pixel}]}
              - {control: slider, label: Strength, parameter_name: strength,
                 default_value: 0.5, min_value: 0, max_value: 1, step: 0.1}
              - {control: toggle_switch, label: Faces, parameter_name: faces,
                 default_value: true}
              - {control: text_field, label: Note, parameter_name: note}
    routes:
      - reply: "{{ {'params': params, 'history': history, 'turn': turn, 'now': now} | tojson }}"
"""


def _context(bot: CompiledBot, *messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = parse_query(query(*messages, **fields))
    conversation = split_conversation(request)
    assert conversation is not None
    return build_context(bot, request, *conversation, NOW)


def test_the_context_document(make_bot: MakeBot) -> None:
    bot = make_bot(CONTEXT_BOT)
    context = _context(
        bot,
        {"role": "system", "content": "be nice"},
        user("one"),
        bot_message("answer one"),
        {"role": "tool", "content": "tool output"},
        user(
            "two",
            parameters={"style": "pixel", "faces": "yes", "strength": 1, "extra": [1]},
            attachments=[PNG],
        ),
        language_code="de",
    )
    assert context == {
        "message": "two",
        "attachments": [{**PNG, "parsed_content": None}],
        "params": {
            "style": "pixel",  # the user's choice
            "strength": 1,  # an int where the default is a float is still a number
            "faces": True,  # a string where a bool is expected keeps the default
            "note": None,  # no default at all
            "extra": [1],  # unknown parameters pass through (they are untrusted data)
        },
        "history": [
            {"role": "user", "content": "one"},
            {"role": "bot", "content": "answer one"},
        ],
        "turn": 2,
        "vars": {},
        "user": {"id": "u-test"},
        "conversation": {"id": "c-test"},
        "language": "de",
        "bot": {"name": "ctx", "description": "Shows its context."},
        "now": {
            "iso": "2026-03-04T05:06:07+00:00",
            "date": "2026-03-04",
            "time": "05:06",
            "hour": 5,
            "minute": 6,
            "weekday": 2,
            "timestamp": int(NOW.timestamp()),
        },
        "files": {},  # filled only while a reply with `files:` is rendered
    }


def test_the_documented_context_names_are_the_context(make_bot: MakeBot) -> None:
    """spec/context.py describes the names for users (and the template checker trusts it);
    the README's table lists them too. All three must be what build_context makes."""
    assert set(_context(make_bot(CONTEXT_BOT), user("hi"))) == CONTEXT_NAMES
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Conditions and templates see one context", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    assert {name for row in rows for name in re.findall(r"`(\w+)`", row)} == CONTEXT_NAMES


def test_param_defaults_apply_before_the_user_chooses(make_bot: MakeBot) -> None:
    context = _context(make_bot(CONTEXT_BOT), user("hi"))
    # A drop-down without a default starts at its first option.
    assert context["params"] == {"style": "photo", "strength": 0.5, "faces": True, "note": None}
    assert context["language"] == "en"
    assert context["turn"] == 1
    assert context["history"] == []


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ({"strength": "very"}, 0.5),
        ({"strength": True}, 0.5),  # a bool is not a number here
        ({"strength": None}, 0.5),
        ({"strength": 0.9}, 0.9),
        ({"faces": 0}, True),
        ({"faces": False}, False),
        ({"style": 3}, "photo"),
    ],
)
def test_a_value_of_the_wrong_type_keeps_the_default(
    make_bot: MakeBot, chosen: dict[str, Any], expected: Any
) -> None:
    context = _context(make_bot(CONTEXT_BOT), user("hi", parameters=chosen))
    (name,) = chosen
    assert context["params"][name] == expected


def test_templates_see_the_same_context(make_bot: MakeBot) -> None:
    events = answer(
        make_bot(CONTEXT_BOT),
        user("one"),
        bot_message("answer one"),
        user("two", parameters={"style": "pixel"}),
    )
    shown = json.loads(text_of(events))
    assert shown["params"] == {"style": "pixel", "strength": 0.5, "faces": True, "note": None}
    assert shown["history"] == [
        {"role": "user", "content": "one"},
        {"role": "bot", "content": "answer one"},
    ]
    assert shown["turn"] == 2
    assert shown["now"]["iso"] == "2026-03-04T05:06:07+00:00"


def test_the_newest_user_message_is_answered_even_if_a_bot_message_follows(
    make_bot: MakeBot,
) -> None:
    echo = make_bot("""
        name: echo
        routes:
          - reply: "{{ message }} / {{ history | length }}"
    """)
    events = answer(echo, user("first"), bot_message("reply"), user("second"), bot_message("x"))
    assert text_of(events) == "second / 2"


def test_a_repeated_message_is_not_mistaken_for_its_first_copy(make_bot: MakeBot) -> None:
    """Without ids (fastapi_poe's client sends ""), two "hi" messages are equal values."""
    counter = make_bot("""
        name: counter
        routes:
          - reply: "turn {{ turn }}, history {{ history | length }}"
    """)
    events = answer(counter, user("hi"), bot_message("turn 1"), user("hi"))
    assert text_of(events) == "turn 2, history 2"
    events = answer(counter, user("hi"), bot_message("a"), user("hi"), bot_message("a"), user("hi"))
    assert text_of(events) == "turn 3, history 4"


def test_unknown_roles_are_ignored(make_bot: MakeBot) -> None:
    echo = make_bot("""
        name: echo
        routes:
          - reply: "{{ history | map(attribute='role') | join(',') }} | turn {{ turn }}"
    """)
    events = answer(
        echo,
        {"role": "assistant", "content": "from another vendor"},
        user("one"),
        {"role": "function", "content": "{}"},
        bot_message("two"),
        {"role": "moderator", "content": "?"},
        user("three"),
    )
    assert text_of(events) == "user,bot | turn 2"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [bot_message("only a bot message")],
        [{"role": "system", "content": "sys"}, {"role": "alien", "content": "?"}],
    ],
    ids=["empty", "bot-only", "no-user-role"],
)
def test_no_user_message_is_an_error(make_bot: MakeBot, messages: list[dict[str, Any]]) -> None:
    echo = make_bot("""
        name: echo
        routes:
          - reply: hi
    """)
    assert answer(echo, *messages) == [Meta(), Error(NO_MESSAGE, allow_retry=False), Done()]


# ---------------------------------------------------------------------------- run-time failures


def _engine_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("engine")]


def test_a_template_error_at_run_time_is_an_error_event(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot("""
        name: fragile
        routes:
          - reply: "Earlier you said {{ history[4].content }}"
            suggest: [never]
    """)
    with caplog.at_level(logging.ERROR):
        events = answer(bot, user("hi"))
    assert events == [
        Meta(),
        Error(
            "Sorry, this bot could not build its answer. Its creator has been told.",
            allow_retry=False,
        ),
        Done(),
    ]
    assert _engine_logs(caplog) == [
        "bot fragile: routes[0].reply: template failed: list object has no element 4"
    ]


def test_a_failing_suggestion_sends_no_half_answer(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot("""
        name: fragile
        routes:
          - reply: fine
            suggest: ["{{ params.missing.deeper }}"]
    """)
    with caplog.at_level(logging.ERROR):
        events = answer(bot, user("hi"))
    assert [type(e) for e in events] == [Meta, Error, Done]  # no Text before the error
    (line,) = _engine_logs(caplog)
    assert line.startswith("bot fragile: routes[0].suggest[0]: template failed: ")


def test_a_failing_invalid_template_is_an_error_event(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot("""
        name: strict
        input:
          max_length: 2
          invalid: "{{ attachments[3].name }} is wrong"
        routes:
          - reply: ok
    """)
    with caplog.at_level(logging.ERROR):
        events = answer(bot, user("too long"))
    assert error_of(events).allow_retry is False
    assert error_of(events).text.startswith("Sorry, this bot could not build its answer.")
    (line,) = _engine_logs(caplog)
    assert line.startswith("bot strict: input.invalid: template failed: ")


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"pattern": 5}, "invalid type for value: 5"),
        ({}, "invalid type for value: None"),
    ],
    ids=["number", "missing"],
)
def test_a_condition_that_fails_at_run_time_is_an_error_event(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture, parameters: dict[str, Any], reason: str
) -> None:
    bot = make_bot("""
        name: judge
        routes:
          - if: "starts_with(message, params.pattern)"
            reply: matched
          - reply: fallback
    """)
    assert text_of(answer(bot, user("abc", parameters={"pattern": "a"}))) == "matched"
    with caplog.at_level(logging.ERROR):
        events = answer(bot, user("abc", parameters=parameters))
    assert events == [
        Meta(),
        Error(
            "Sorry, this bot could not decide how to answer. Its creator has been told.",
            allow_retry=False,
        ),
        Done(),
    ]
    (line,) = _engine_logs(caplog)
    assert line.startswith(
        "bot judge: routes[0].if: condition 'starts_with(message, params.pattern)' failed: "
    )
    assert reason in line


def test_run_is_lazy_and_starts_with_meta(make_bot: MakeBot) -> None:
    """The first event leaves before any route work, so Poe gets bytes within 5 s."""
    bot = make_bot("""
        name: lazy
        routes:
          - reply: "{{ history[9].content }}"
    """)
    events = run(bot, parse_query(query(user("hi"))), NOW)
    assert next(events) == Meta()
