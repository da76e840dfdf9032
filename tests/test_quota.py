"""A bot's `limits:` and `remember:` through the runtime: what is counted, the Poe error a
user over a limit gets, failing open or closed, and vars recalled per user."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from engine.compiled import CompiledBot
from engine.limits import STORE_DOWN_MESSAGE, Limiter, describe_limit
from engine.loader import load_text
from engine.protocol.requests import Message, QueryRequest
from engine.runtime.quota import recall, remember_changed
from engine.store import Store
from engine.testing import Answer, answer, run_bot_tests
from engine.web import StartupError

MakeBot = Callable[..., CompiledBot]


@pytest.fixture
def limiter() -> Limiter:
    return Limiter(Store.from_url("memory://"))


def send(
    bot: CompiledBot,
    limiter: Limiter,
    user: str = "u1",
    text: str = "hi",
    model_reply: str | list[str] | None = None,
) -> Answer:
    request = QueryRequest(query=[Message(role="user", content=text)], user_id=user)
    return answer(bot, request, model_reply=model_reply, limiter=limiter)


def refusal_text(result: Answer) -> str:
    assert result.error is not None and result.error.allow_retry, result.events
    assert result.text == ""
    return result.error.text


# ---------------------------------------------------------------------------- the file


def test_a_limit_that_cannot_be_read_is_a_located_error() -> None:
    text = (
        "name: q\n"
        "limits:\n"
        "  messages: [20/minute, 20/minit]\n"
        "  bot: {model_calls: 0/day}\n"
        "routes:\n"
        "  - reply: hi\n"
    )
    _, problems = load_text(text, "q.yaml", {})
    expected = (
        "; expected a count of at least 1 per period, like '20/minute', '500/day' or "
        "'5 per 10 minutes' (periods: second, minute, hour, day, month, year)"
    )
    assert sorted(str(p) for p in problems) == [
        f"q.yaml:3:25: limits.messages[1]: got '20/minit'{expected}",
        f"q.yaml:4:22: limits.bot.model_calls: got '0/day'{expected}",
    ]


def test_a_remembered_var_that_nothing_saves_is_a_warning() -> None:
    text = (
        "name: q\n"
        "remember: {vars: [langauge, name]}\n"
        "routes:\n"
        "  - if: \"message == 'x'\"\n"
        "    flow: f\n"
        "  - reply: hi\n"
        "flows:\n"
        "  f:\n"
        "    - {ask: Which?, save: language}\n"
        "    - {set: {mood: good}}\n"
    )
    _, problems = load_text(text, "q.yaml", {"ENGINE_STATE_SECRET": "s" * 32})
    assert [str(p) for p in problems] == [
        "q.yaml:2:19: warning: remember.vars[0]: 'langauge' is never saved, so it is never "
        "remembered (did you mean 'language'?)",
        "q.yaml:2:29: warning: remember.vars[1]: 'name' is never saved, so it is never "
        "remembered (save it in a flow (`save:`, `set:` or a call's `extract:`))",
    ]


def test_limits_are_kept_narrowest_first(make_bot: MakeBot) -> None:
    bot = make_bot(
        """
        limits: {messages: [500/day, 20/minute, 5 per 10 seconds], bot: {calls: 9/hour}}
        remember: {vars: [name, language], days: 2}
        routes: [{reply: hi}]
        """
    )
    assert bot.limits is not None and bot.remember is not None
    assert [describe_limit(item) for item in bot.limits.messages.per_user] == [
        "5 messages per 10 seconds",
        "20 messages per minute",
        "500 messages per day",
    ]
    assert [describe_limit(item) for item in bot.limits.calls.whole_bot] == ["9 messages per hour"]
    assert bot.limits.model_calls.per_user == () and not bot.limits.fail_closed
    assert bot.remember.names == {"name", "language"}
    assert bot.remember.ttl_seconds == 2 * 86400


# ---------------------------------------------------------------------------- messages


def test_a_user_over_the_limit_gets_a_poe_error_saying_when(
    make_bot: MakeBot, limiter: Limiter
) -> None:
    bot = make_bot("limits: {messages: [2/minute, 100/day]}\nroutes: [{reply: hi}]")
    assert [send(bot, limiter).text for _ in range(2)] == ["hi", "hi"]
    refused = send(bot, limiter)
    assert refusal_text(refused) == (
        "You have reached this bot's limit of 2 messages per minute. Try again in 1 minute."
    )
    assert send(bot, limiter, user="u2").text == "hi"  # another user has their own count


def test_the_whole_bot_ceiling_is_shared_and_not_used_by_refused_messages(
    make_bot: MakeBot, limiter: Limiter
) -> None:
    bot = make_bot("limits: {messages: 1/minute, bot: {messages: 3/day}}\nroutes: [{reply: hi}]")
    assert send(bot, limiter, "u1").text == "hi"
    assert send(bot, limiter, "u1").error is not None  # u1's own limit: not the bot's
    assert [send(bot, limiter, user).text for user in ("u2", "u3")] == ["hi", "hi"]
    refused = send(bot, limiter, "u4")
    assert refused.error is not None
    assert refused.error.text.startswith(
        "This bot has reached its limit of 3 messages per day for everyone. Try again in "
    )


def test_without_a_limiter_nothing_is_counted(make_bot: MakeBot) -> None:
    bot = make_bot("limits: {messages: 1/minute}\nroutes: [{reply: hi}]")
    request = QueryRequest(query=[Message(role="user", content="x")])
    assert [answer(bot, request).text for _ in range(3)] == ["hi", "hi", "hi"]


# ---------------------------------------------------------------------------- model calls

LLM_BOT = """
model: {provider: scripted, replies: [an answer]}
limits: {model_calls: 2/hour}
routes:
  - if: "message == 'rule'"
    reply: a rule
  - llm: {}
    suggest: {generate: 2}
"""


def test_model_calls_are_counted_apart_from_messages(make_bot: MakeBot, limiter: Limiter) -> None:
    bot = make_bot(LLM_BOT)
    first = send(bot, limiter, model_reply=["an answer", "More?\nThanks"])
    assert (first.text, first.suggestions) == ("an answer", ["More?", "Thanks"])
    assert send(bot, limiter, text="rule").text == "a rule"  # no model call: not counted
    refused = send(bot, limiter, model_reply="never sent")
    assert refusal_text(refused) == (
        "You have reached this bot's limit of 2 model calls per hour. Try again in 1 hour."
    )


def test_suggestions_over_the_model_call_limit_are_left_out(
    make_bot: MakeBot, limiter: Limiter
) -> None:
    bot = make_bot(LLM_BOT.replace("2/hour", "1/hour"))
    result = send(bot, limiter, model_reply=["an answer", "More?"])
    assert (result.text, result.suggestions, result.error) == ("an answer", [], None)


# ---------------------------------------------------------------------------- store down


@pytest.fixture
def down() -> Limiter:
    """A limiter whose Redis refuses every connection."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Limiter(Store.from_url(f"redis://127.0.0.1:{port}", timeout=0.2))


def test_when_the_store_is_down_a_bot_answers(
    make_bot: MakeBot, down: Limiter, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot("limits: {messages: 1/minute}\nroutes: [{reply: hi}]")
    with caplog.at_level(logging.ERROR, logger="engine.store"):
        assert [send(bot, down).text for _ in range(3)] == ["hi", "hi", "hi"]
    assert "is unreachable (ConnectionError" in caplog.text


def test_when_the_store_is_down_a_bot_that_fails_closed_refuses(
    make_bot: MakeBot, down: Limiter
) -> None:
    bot = make_bot("limits: {messages: 1/minute, fail_closed: true}\nroutes: [{reply: hi}]")
    refused = send(bot, down)
    assert refused.error is not None and refused.error.allow_retry
    assert refused.error.text == STORE_DOWN_MESSAGE


# ---------------------------------------------------------------------------- memory

MEMORY_BOT = """
name: mem
remember: {vars: [name, language], days: 1}
routes:
  - reply: "{{ vars | dictsort }}"
"""


def test_remembered_vars_are_read_into_vars_for_that_user(
    make_bot: MakeBot, limiter: Limiter
) -> None:
    bot = make_bot(MEMORY_BOT)
    limiter.store.remember("mem", "u1", "name", "Zoë", 60)
    limiter.store.remember("mem", "u1", "secret", "no longer listed", 60)
    assert send(bot, limiter, "u1").text == "[('name', 'Zoë')]"
    assert send(bot, limiter, "u2").text == "[]"


def test_only_remembered_vars_that_changed_are_kept(make_bot: MakeBot, limiter: Limiter) -> None:
    bot = make_bot(MEMORY_BOT)
    before = {"name": "Ana", "language": "fr"}
    after = {"name": "Ana", "language": "pt-BR", "order_id": "AB123456"}
    remember_changed(limiter, bot, "u1", before, after)
    assert limiter.store.recall("mem", "u1") == {"language": "pt-BR"}
    assert recall(limiter, bot, "u1") == {"language": "pt-BR"}
    assert recall(None, bot, "u1") == {}


def test_declared_tests_count_and_remember_in_a_store_of_their_own(tmp_path: Path) -> None:
    text = """
name: counted
limits: {messages: 2/day}
routes:
  - reply: "turn {{ turn }}"
tests:
  - turns:
      - say: a
        expect: {equals: turn 1}
      - say: b
        new_conversation: true
        expect: {equals: turn 1}
      - say: c
        expect: {contains: "limit of 2 messages per day", allow_retry: true}
  - say: a fresh count for each test
    expect: {equals: turn 1}
"""
    bot, problems = load_text(text, "counted.yaml", {})
    assert bot is not None and problems == []
    assert [(r.name, r.failures) for r in run_bot_tests(bot)] == [
        ("test 1", []),
        ("test 2", []),
    ]


# ---------------------------------------------------------------------------- start-up


def test_the_store_is_made_at_start_only_for_bots_that_need_it(
    bots_dir: Callable[[dict[str, str]], Path], make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    plain = bots_dir({"plain.yaml": "routes: [{reply: hi}]\n"})
    make_app(plain)
    assert not (tmp_path / "state").exists()
    bots_dir({"limited.yaml": "limits: {messages: 5/minute}\nroutes: [{reply: hi}]\n"})
    make_app(plain)
    assert (tmp_path / "state" / "engine.sqlite3").exists()


def test_the_redis_password_never_reaches_the_log(
    bots_dir: Callable[[dict[str, str]], Path],
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = bots_dir({"limited.yaml": "limits: {messages: 5/minute}\nroutes: [{reply: hi}]\n"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.INFO):
        make_app(folder, redis_url=f"redis://:hunter2@127.0.0.1:{port}/0")
    assert f"Redis redis://:***@127.0.0.1:{port}/0 is unreachable at start" in caplog.text
    assert f"limits and remembered vars of limited: in Redis redis://:***@127.0.0.1:{port}/0" in (
        caplog.text
    )
    assert "hunter2" not in caplog.text
    with pytest.raises(StartupError) as error:
        make_app(folder, redis_url="http://:hunter2@example.invalid")
    assert str(error.value).startswith("REDIS_URL: got 'http://:***@example.invalid'; expected")


# ---------------------------------------------------------------------------- with flows

FLOW_BOT = """
name: prefs
remember: {vars: [language, name]}
limits: {calls: 1/hour}
allow_hosts: [api.acme.example]
routes:
  - if: "message == 'language'"
    flow: language
  - if: "message == 'look up'"
    flow: lookup
  - reply: "{{ vars | dictsort }}"
flows:
  language:
    - ask: Which language?
      save: language
      expect: {choices: [English, Português]}
    - set: {name: Ana, mood: good}
    - reply: "Saved {{ vars.language }}."
  lookup:
    - call: {url: "https://api.acme.example/x", extract: {status: status}}
    - reply: "Status {{ vars.status }}."
tests:
  - name: a flow's remembered vars come back in the next conversation, the others do not
    turns:
      - say: language
        expect: {contains: Which language?}
      - say: português
        expect: {equals: Saved Português.}
      - say: hello
        new_conversation: true
        expect: {equals: "[('language', 'Português'), ('name', 'Ana')]"}
  - name: outside calls are counted per user
    turns:
      - say: look up
        http_reply: {json: {status: shipped}}
        expect: {equals: Status shipped.}
      - say: look up
        http_reply: {json: {status: never read}}
        expect:
          equals: You have reached this bot's limit of 1 outside call per hour. Try again in 1 hour.
          allow_retry: true
"""


def test_flows_keep_remembered_vars_and_count_outside_calls() -> None:
    bot, problems = load_text(FLOW_BOT, "prefs.yaml", {})
    assert bot is not None, problems
    assert [(r.name, r.failures) for r in run_bot_tests(bot)] == [
        ("a flow's remembered vars come back in the next conversation, the others do not", []),
        ("outside calls are counted per user", []),
    ]


def test_an_escape_to_another_flow_keeps_the_remembered_vars() -> None:
    text = """
name: esc
remember: {vars: [language]}
escapes:
  - {if: "message == 'cancel'", flow: other}
routes:
  - if: "message == 'language'"
    flow: language
  - if: "message == 'order'"
    flow: order
  - reply: "{{ vars | dictsort }}"
flows:
  language:
    - {ask: Which language?, save: language, expect: {choices: [English, Português]}}
    - reply: Saved.
  order:
    - {ask: Your order number?, save: order_id}
    - reply: "Order {{ vars.order_id }}."
  other:
    - reply: >-
        Stopped; language {{ vars.get('language', 'unset') }},
        order {{ vars.get('order_id', 'none') }}.
tests:
  - turns:
      - say: language
      - say: Português
        expect: {equals: Saved.}
      - say: order
        expect: {equals: Your order number?}
      - say: cancel
        expect: {equals: "Stopped; language Português, order none."}
"""
    bot, problems = load_text(text, "esc.yaml", {})
    assert bot is not None, problems
    assert [r.failures for r in run_bot_tests(bot)] == [[]]
