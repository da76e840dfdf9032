"""The turn's path: the locs of what the runtime decided and ran, for the playground's
highlight. Each kind of decision gets its loc, in order, exactly as `validate` names it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.compiled import CompiledBot
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.protocol.transcript import Transcript
from engine.runtime import run
from engine.runtime.scope import FlowTrace
from engine.scripted_calls import ScriptedCalls
from engine.spec.tests import HttpReply

from ._poe import bot as bot_message
from ._poe import query, user
from .conftest import compile_bot

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ENV = {"ENGINE_STATE_SECRET": "s" * 32}

BOT = """
    name: traced
    allow_hosts: [api.example.com]
    input:
      max_length: 40
      min_length: 2
      reject: ['(?i)password', {pattern: '\\d{4}-\\d{4}', message: No cards.}]
      attachments: {max: 1, types: [image/*]}
    flows:
      book:
        - ask: "How many guests?"
          save: guests
          expect: {type: integer}
          tries: 2
          on_fail: {reply: "Let's try another time."}
        - call:
            url: "https://api.example.com/tables/{{ vars.guests }}"
            extract: {free: free}
            on_error: {reply: "No answer.", flow: other}
        - if: "vars.free"
          goto: done
        - end: "Full."
        - id: done
          reply: "Booked."
      other:
        - reply: "Something else, then."
    escapes:
      - if: "message == 'cancel'"
        reply: "Cancelled."
      - if: "message == 'again'"
        flow: book
    routes:
      - if: "message == 'book'"
        flow: book
      - if: "message == 'look'"
        call: {url: "https://api.example.com/status", extract: {up: up}}
        reply: "Up: {{ vars.up }}"
      - if: "message == 'hi'"
        reply: "Hello."
"""
PLAIN_REJECT = """
    name: plain
    input: {reject: [a+b, c+d]}
    routes:
      - reply: ok
"""


@pytest.fixture(scope="module")
def bot() -> CompiledBot:
    return compile_bot(BOT, ENV)


class Chat:
    """A conversation replayed as Poe does, recording each turn's trace."""

    def __init__(self, bot: CompiledBot) -> None:
        self.bot = bot
        self.messages: list[dict[str, Any]] = []

    def say(self, text: str, *, http: list[HttpReply] | None = None, **fields: Any) -> list[str]:
        self.messages.append(user(text, **fields))
        trace = FlowTrace()
        request = parse_query(query(*self.messages))
        events = run(self.bot, request, NOW, trace=trace, fetcher=ScriptedCalls(http))
        answer = Transcript.of(list(guarded(events, self.bot.name)))
        shown = answer.text if answer.error is None else answer.error.text
        self.messages.append(bot_message(shown, metadata=answer.metadata))
        return trace.path


def path(bot: CompiledBot, text: str, **fields: Any) -> list[str]:
    return Chat(bot).say(text, **fields)


IMAGE = {"url": "https://example.invalid/a.png", "content_type": "image/png", "name": "a.png"}
PDF = {"url": "https://example.invalid/r.pdf", "content_type": "application/pdf", "name": "r.pdf"}


@pytest.mark.parametrize(
    ("text", "attachments", "expected"),
    [
        ("x" * 41, [], "input.max_length"),
        ("x", [], "input.min_length"),
        ("my PASSWORD", [], "input.reject[0]"),
        ("card 1234-5678", [], "input.reject[1]"),
        ("hi", [IMAGE, IMAGE], "input.attachments.max"),
        ("hi", [PDF], "input.attachments.types"),
    ],
)
def test_a_refused_message_names_its_rule(
    bot: CompiledBot, text: str, attachments: list[dict[str, str]], expected: str
) -> None:
    assert path(bot, text, attachments=attachments) == [expected]


def test_patterns_without_messages_are_named_together() -> None:
    """Searched as one alternation, they cannot tell which one was found."""
    assert path(compile_bot(PLAIN_REJECT), "ccd") == ["input.reject"]
    assert path(compile_bot(PLAIN_REJECT), "fine") == ["routes[0]"]


def test_a_required_attachment_names_its_rule() -> None:
    bot = compile_bot("{name: f, input: {attachments: {required: true}}, routes: [{reply: ok}]}")
    assert path(bot, "hi") == ["input.attachments.required"]


def test_the_route_taken_and_no_route(bot: CompiledBot) -> None:
    assert path(bot, "hi") == ["routes[2]"]
    assert path(bot, "nothing matches") == ["routes"]


def test_a_call_route_is_one_loc(bot: CompiledBot) -> None:
    chat = Chat(bot)
    assert chat.say("look", http=[HttpReply(json={"up": True})]) == ["routes[1]"]
    failed = chat.say("look", http=[HttpReply(status=503)])
    assert failed == ["routes[1]", "routes[1].call.on_error"]


def test_a_flow_records_each_step_across_turns(bot: CompiledBot) -> None:
    chat = Chat(bot)
    assert chat.say("book") == ["routes[0]", "flows.book[0]"]
    assert chat.say("two") == ["flows.book[0]", "flows.book[0].retry"]
    assert chat.say("12", http=[HttpReply(json={"free": True})]) == [
        "flows.book[0]",
        "flows.book[1]",
        "flows.book[2]",
        "flows.book[4]",
    ]


def test_a_flow_records_branches(bot: CompiledBot) -> None:
    chat = Chat(bot)
    chat.say("book")
    assert chat.say("12", http=[HttpReply(json={"free": False})])[-2:] == [
        "flows.book[2]",
        "flows.book[3]",
    ]
    chat.say("book")
    assert chat.say("12", http=[HttpReply(error="timeout")]) == [
        "flows.book[0]",
        "flows.book[1]",
        "flows.book[1].call.on_error",
        "flows.other[0]",
    ]
    chat.say("book")
    chat.say("xx")
    assert chat.say("yy") == ["flows.book[0]", "flows.book[0].on_fail"]


def test_escapes_and_refusals_while_a_flow_waits(bot: CompiledBot) -> None:
    chat = Chat(bot)
    chat.say("book")
    assert chat.say("x" * 41) == ["input.max_length"]
    assert chat.say("again") == ["escapes[1]", "flows.book[0]"]
    assert chat.say("cancel") == ["escapes[0]"]
    assert chat.say("hi") == ["routes[2]"]  # the flow ended: routes again
