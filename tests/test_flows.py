"""Flows without HTTP: steps, answers, escapes, the signed state and what validate finds."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.compiled import AnswerCheck, CompiledBot
from engine.errors import place
from engine.loader import load_text
from engine.loader.var_reads import condition_reads, template_reads
from engine.patterns import compile_pattern
from engine.protocol.events import Data, Error, Event, Meta, Suggest, Text
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.protocol.transcript import Transcript
from engine.runtime import run
from engine.runtime.answers import read_answer
from engine.runtime.flows import LOOPING, TOO_MUCH
from engine.runtime.scope import FlowTrace
from engine.state import MAX_METADATA, SIGNATURE_BYTES, FlowState, _sign, decode, encode, state_key
from engine.testing import run_bot_tests

from ._poe import bot as bot_message
from ._poe import query, user
from .conftest import KEY, REPO, compile_bot

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ENV = {"ENGINE_STATE_SECRET": "s" * 32}

BOOKING = """
    name: booking
    flows:
      book:
        - ask: "How many guests?"
          save: guests
          expect: {type: integer}
          tries: 2
          on_fail: {reply: "Let's try another time."}
        - ask: "Which day? (YYYY-MM-DD)"
          save: day
          expect: {type: date}
          retry: "A date like 2026-12-31, please."
        - ask: "Table for {{ vars.guests }} on {{ vars.day }}: confirm?"
          save: ok
          expect: {choices: ["Yes", "No"]}
        - switch:
            - {if: "vars.ok == 'Yes'", goto: done}
        - end: "Not booked."
        - id: done
          set: {party: {expr: "vars.guests"}, note: "booked {{ vars.day }}"}
        - reply: "Booked for {{ vars.party }}."
    escapes:
      - if: "lower(trim(message)) == 'cancel'"
        reply: "Cancelled."
      - if: "message == 'start over'"
        reply: "From the top."
        flow: book
    routes:
      - if: "message == 'book'"
        flow: book
      - reply: "fallback: {{ message }}"
"""


def make(yaml_text: str, env: dict[str, str] | None = None) -> CompiledBot:
    return compile_bot(yaml_text, ENV if env is None else env)


class Chat:
    """A conversation replayed as Poe does: each bot message carries its last `data`."""

    def __init__(self, bot: CompiledBot) -> None:
        self.bot = bot
        self.messages: list[dict[str, Any]] = []

    def say(self, text: str) -> Transcript:
        self.messages.append(user(text))
        events = self.events(self.messages)
        answer = Transcript.of(events)
        shown = answer.text if answer.error is None else answer.error.text
        self.messages.append(bot_message(shown, metadata=answer.metadata))
        return answer

    def events(self, messages: list[dict[str, Any]]) -> list[Event]:
        request = parse_query(query(*messages))
        return list(guarded(run(self.bot, request, NOW), self.bot.name))


def test_a_flow_asks_checks_and_ends() -> None:
    chat = Chat(make(BOOKING))
    first = chat.say("book")
    assert first.text == "How many guests?"
    assert first.metadata is not None and first.metadata.startswith("1.")
    retry = chat.say("four")
    assert retry.text == "Please answer with a whole number, like 42.\n\nHow many guests?"
    assert chat.say("4").text == "Which day? (YYYY-MM-DD)"
    assert chat.say("tomorrow").text.startswith("A date like 2026-12-31, please.")
    confirm = chat.say("31/12/2026")
    assert confirm.text == "Table for 4 on 2026-12-31: confirm?"
    assert confirm.suggestions == ["Yes", "No"]
    done = chat.say("YES")
    assert done.text == "Booked for 4."
    assert done.metadata is None  # the flow ended: the next message starts fresh
    assert chat.say("hello").text == "fallback: hello"


def test_the_data_event_comes_last_before_done() -> None:
    chat = Chat(make(BOOKING))
    chat.messages.append(user("book"))
    events = chat.events(chat.messages)
    assert [type(e).__name__ for e in events] == ["Meta", "Text", "Data", "Done"]


def _metas(bot: CompiledBot, start: str, answer: str) -> tuple[bool, bool]:
    """Whether `meta` flushes when `start` starts the flow, then when `answer` resumes it."""
    chat = Chat(bot)
    started = chat.events([user(start)])[0]
    chat.say(start)
    resumed = chat.events([*chat.messages, user(answer)])[0]
    assert isinstance(started, Meta) and isinstance(resumed, Meta)
    return started.flush, resumed.flush


def test_meta_leaves_at_once_only_when_a_flow_may_wait_on_something_outside() -> None:
    """Flows that only ask, say and decide answer in one write, as replies do; when any
    flow of the bot has a model or an outside call, `meta` leaves before any of it (the
    5 s Poe gives for first bytes), whichever flow runs."""
    assert _metas(make(BOOKING), "book", "2") == (False, False)
    waiting = make(
        """
        model: {provider: openai, name: gpt-4o-mini}
        flows:
          greet:
            - ask: "Your name?"
              save: name
          chat:
            - llm: {prompt: "Say hello."}
        routes:
          - flow: greet
        """,
        {**ENV, "OPENAI_API_KEY": "sk-test"},
    )
    assert _metas(waiting, "hi", "Ada") == (True, True)


def test_running_out_of_tries_takes_on_fail() -> None:
    chat = Chat(make(BOOKING))
    chat.say("book")
    chat.say("x")
    answer = chat.say("y")
    assert answer.text == "Let's try another time."
    assert answer.metadata is None


def test_escapes_stop_or_restart_a_running_flow_only() -> None:
    chat = Chat(make(BOOKING))
    assert chat.say("cancel").text == "fallback: cancel"  # no flow running: routes answer
    chat.say("book")
    chat.say("2")
    cancelled = chat.say("  Cancel ")
    assert (cancelled.text, cancelled.metadata) == ("Cancelled.", None)
    chat.say("book")
    again = chat.say("start over")
    assert again.text == "From the top.\n\nHow many guests?"
    assert again.metadata is not None


def test_a_refused_message_keeps_the_flow_where_it_was() -> None:
    bot = make(BOOKING.replace("    routes:", "    input: {max_length: 5}\n    routes:"))
    chat = Chat(bot)
    chat.say("book")
    refused = chat.say("far too long")
    assert refused.error is not None and refused.metadata is not None
    assert chat.say("3").text == "Which day? (YYYY-MM-DD)"


def test_the_declared_tests_of_a_flow_bot_pass() -> None:
    bot = make(
        BOOKING
        + """
    tests:
      - turns:
          - say: book
            expect: {equals: "How many guests?", flow: book}
          - say: "2"
            expect: {vars: {guests: 2}, flow: book}
          - say: "2026-05-01"
          - say: "No"
            expect: {equals: "Not booked.", flow: false, vars: {ok: "No"}}
    """
    )
    results = run_bot_tests(bot)
    assert [r.failures for r in results] == [[]]


def test_expectations_on_vars_report_what_was_held() -> None:
    bot = make(
        BOOKING
        + """
    tests:
      - turns:
          - say: book
          - say: "2"
            expect: {vars: {guests: 3, day: x}, flow: false}
    """
    )
    (result,) = run_bot_tests(bot)
    assert result.failures == [
        "turn 2: expected vars.guests == 3; got 2",
        "turn 2: expected vars.day == 'x'; it is not set (vars: {'guests': 2})",
        "turn 2: expected the flow running to be False; got 'book'",
    ]


# ---------------------------------------------------------------------------- the state


def _started(bot: CompiledBot) -> tuple[Chat, str]:
    chat = Chat(bot)
    answer = chat.say("book")
    assert answer.metadata is not None
    return chat, answer.metadata


def _answer_with(bot: CompiledBot, metadata: str | None, text: str = "3") -> list[Event]:
    messages = [user("book"), bot_message("How many guests?", metadata=metadata), user(text)]
    return Chat(bot).events(messages)


def _tampered(metadata: str) -> dict[str, str]:
    version, payload, signature = metadata.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["v"] = {"guests": 99}
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    # The first character: the last one's low bits may be padding, which decoding ignores.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "forged vars": f"{version}.{forged}.{signature}",
        "flipped signature": f"{version}.{payload}.{flipped}",
        "truncated": metadata[: len(metadata) // 2],
        "no signature": f"{version}.{payload}",
        "other version": f"2.{payload}.{signature}",
        "oversized": metadata + "A" * MAX_METADATA,
        "garbage": "\x00\ud800 not a state",
        "not base64": f"{version}.!!!.{signature}",
    }


@pytest.mark.parametrize("case", sorted(_tampered("1.e30.AAAA")))
def test_a_bad_state_starts_fresh_with_a_log_line(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make(BOOKING)
    _, metadata = _started(bot)
    caplog.set_level(logging.INFO, "engine.runtime")
    events = _answer_with(bot, _tampered(metadata)[case])
    assert Transcript.of(events).text == "fallback: 3"
    assert "flow state ignored, starting fresh" in caplog.text


def test_a_good_state_resumes() -> None:
    bot = make(BOOKING)
    _, metadata = _started(bot)
    assert Transcript.of(_answer_with(bot, metadata)).text == "Which day? (YYYY-MM-DD)"


def test_state_from_another_bot_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    twin = make(BOOKING.replace("name: booking", "name: twin"))
    _, metadata = _started(twin)
    caplog.set_level(logging.INFO, "engine.runtime")
    assert Transcript.of(_answer_with(make(BOOKING), metadata)).text == "fallback: 3"
    assert "signature does not match" in caplog.text


def test_state_from_another_conversation_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """Copied into another chat (a new one, or another user's), a state does not resume."""
    bot = make(BOOKING)
    _, metadata = _started(bot)
    messages = [user("book"), bot_message("How many guests?", metadata=metadata), user("3")]
    request = parse_query({**query(*messages), "conversation_id": "c-someone-else"})
    caplog.set_level(logging.INFO, "engine.runtime")
    assert Transcript.of(guarded(run(bot, request, NOW), bot.name)).text == "fallback: 3"
    assert "the state belongs to another conversation" in caplog.text


def test_state_of_an_edited_flow_is_stale(caplog: pytest.LogCaptureFixture) -> None:
    _, metadata = _started(make(BOOKING))
    edited = make(BOOKING.replace("How many guests?", "How many people?"))
    caplog.set_level(logging.INFO, "engine.runtime")
    assert Transcript.of(_answer_with(edited, metadata)).text == "fallback: 3"
    assert "has changed since the state was written" in caplog.text


def test_only_the_last_bot_message_carries_the_state() -> None:
    bot = make(BOOKING)
    _, metadata = _started(bot)
    messages = [
        user("book"),
        bot_message("How many guests?", metadata=metadata),
        user("hi"),
        bot_message("something else"),
        user("3"),
    ]
    assert Transcript.of(Chat(bot).events(messages)).text == "fallback: 3"


def test_a_cleared_chat_starts_clean() -> None:
    bot = make(BOOKING)
    assert Transcript.of(Chat(bot).events([user("3")])).text == "fallback: 3"


def test_the_same_secret_signs_alike_in_another_process_and_the_key_is_per_bot() -> None:
    assert state_key("a", "secret", None) == state_key("a", "secret", KEY)
    assert state_key("a", "secret", None) != state_key("b", "secret", None)
    assert state_key("a", None, KEY) != state_key("a", None, "L" * 32)
    state = FlowState("f", 2, "abc", {"x": [1, "é"]}, 1)
    key = state_key("a", "secret", None)
    assert decode(encode(state, "a", key), "a", key) == (state, None)


def test_vars_too_large_for_the_state_stop_the_flow_with_a_clear_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = make(
        """
        flows:
          notes:
            - id: more
              ask: "Another note?"
              save: note
            - set: {all: "{{ vars.all | default('') }}{{ vars.note }}"}
            - goto: more
        routes:
          - if: "message == 'notes'"
            flow: notes
          - reply: "fallback"
        """
    )
    chat = Chat(bot)
    chat.say("notes")
    answer = chat.say("x" * 1000)
    assert answer.metadata is not None
    answer = chat.say("y" * 1000)
    assert answer.error == Error(TOO_MUCH)
    assert answer.text == ""
    assert "would take" in caplog.text
    assert chat.say("z").text == "fallback"


def test_a_loop_without_a_question_stops_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    bot, problems = load_text(
        textwrap.dedent(
            """
            flows:
              spin:
                - id: top
                  set: {n: "x"}
                - if: "vars.n == 'x'"
                  goto: top
                - end: never
            routes:
              - flow: spin
            """
        ),
        "spin.yaml",
        ENV,
    )
    assert bot is not None
    assert [p.message for p in problems] == [
        "these steps can loop without asking the user anything: a turn stops after 100 "
        "steps with an error"
    ]
    answer = Chat(bot).say("go")
    assert answer.error == Error(LOOPING)
    assert "more than 100 steps in one turn" in caplog.text


def test_suggestions_of_choices_precede_the_state() -> None:
    bot = make(BOOKING)
    chat, _ = _started(bot)
    chat.say("2")
    chat.messages.append(user("2026-01-02"))
    events = chat.events(chat.messages)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Meta", "Text", "Suggest", "Suggest", "Data", "Done"]
    assert [e.text for e in events if isinstance(e, Suggest)] == ["Yes", "No"]
    assert isinstance(events[-2], Data)
    assert "".join(e.text for e in events if isinstance(e, Text)).startswith("Table for 2")


# ---------------------------------------------------------------------------- answers

PATTERN = AnswerCheck("pattern", pattern=compile_pattern(r"^[A-Z]{2}\d{6}$"))


@pytest.mark.parametrize(
    ("check", "text", "expected"),
    [
        (AnswerCheck("text"), "  hi ", (True, "hi")),
        (AnswerCheck("text"), "   ", (False, None)),
        (AnswerCheck("integer"), "42", (True, 42)),
        (AnswerCheck("integer"), "4.2", (False, None)),
        (AnswerCheck("integer"), "9" * 5000, (False, None)),  # more than Python reads
        (AnswerCheck("number"), "4.5", (True, 4.5)),
        (AnswerCheck("number"), "1,200", (True, 1200)),
        (AnswerCheck("number"), "nan", (False, None)),
        (AnswerCheck("email"), "a@b.example", (True, "a@b.example")),
        (AnswerCheck("email"), "a@b", (False, None)),
        (AnswerCheck("url"), "https://x.example/a", (True, "https://x.example/a")),
        (AnswerCheck("url"), "ftp://x.example", (False, None)),
        (AnswerCheck("date"), "2026-02-28", (True, "2026-02-28")),
        (AnswerCheck("date"), "2026-02-30", (False, None)),
        (AnswerCheck("date"), "1/2/2026", (True, "2026-02-01")),
        (AnswerCheck("choices", choices=("Yes", "No")), "no", (True, "No")),
        (AnswerCheck("choices", choices=("Yes", "No")), "maybe", (False, None)),
        (PATTERN, "AB123456", (True, "AB123456")),
        (PATTERN, "ab123456", (False, None)),
    ],
)
def test_answers_are_read_by_their_type(
    check: AnswerCheck, text: str, expected: tuple[bool, Any]
) -> None:
    assert read_answer(check, text) == expected


# ---------------------------------------------------------------------------- validate


def problems_of(yaml_text: str) -> list[str]:
    _, problems = load_text(textwrap.dedent(yaml_text), "bot.yaml", ENV)
    return [str(p).splitlines()[0] for p in sorted(problems, key=place)]


def test_validate_checks_references_reachability_ends_and_reads() -> None:
    assert problems_of(
        """
        flows:
          a:
            - ask: "Name?"
              save: name
            - reply: "Hi {{ vars.nmae }}"
            - goto: nowhere
            - reply: "never"
            - flow: bee
          b:
            - id: top
              reply: "again"
            - goto: top
        routes:
          - if: "message == 'x'"
            flow: c
          - flow: a
        escapes:
          - if: "message == 'stop'"
            flow: zz
        """
    ) == [
        "bot.yaml:6:14: flows.a[1].reply: vars.nmae is read here before any step can have "
        "saved it (save it first (`save:`, `set:` or a call's `extract:`))",
        "bot.yaml:7:13: flows.a[2].goto: no step 'nowhere' in flow 'a' (give a step `id: ...`)",
        "bot.yaml:8:7: flows.a[3]: this step is never reached: no step of flow 'a' leads here "
        "(give it an `id` and `goto` it, or remove it)",
        "bot.yaml:9:7: flows.a[4]: this step is never reached: no step of flow 'a' leads here "
        "(give it an `id` and `goto` it, or remove it)",
        "bot.yaml:9:13: flows.a[4].flow: unknown flow 'bee' (flows defined: a, b)",
        "bot.yaml:11:5: warning: flows.b: flow 'b' is never started (start it from a route "
        "(`flow: name`), an escape or another flow)",
        "bot.yaml:11:5: flows.b: flow 'b' can never end: from steps[0] every way leads back "
        "into the same steps (add an `end:` step, or a branch that reaches the last step)",
        "bot.yaml:11:7: warning: flows.b[0]: these steps can loop without asking the user "
        "anything: a turn stops after 100 steps with an error (put an `ask:` in the loop, or "
        "make sure its condition turns false)",
        "bot.yaml:16:11: routes[0].flow: unknown flow 'c' (flows defined: a, b)",
        "bot.yaml:20:11: escapes[0].flow: unknown flow 'zz' (flows defined: a, b)",
    ]


def test_vars_saved_by_the_flow_that_starts_another_may_be_read() -> None:
    assert (
        problems_of(
            """
            flows:
              first:
                - ask: "Name?"
                  save: name
                - flow: second
              second:
                - reply: "Hi {{ vars.name }}"
            routes:
              - flow: first
            """
        )
        == []
    )


def test_a_call_must_name_its_host_and_list_it() -> None:
    assert problems_of(
        """
        allow_hosts: [api.acme.example, "not a host"]
        flows:
          a:
            - call: {url: "https://{{ vars.host }}/x"}
            - call: {url: "https://api.other.example/x"}
            - call: {url: "https://api.acme.example/x", headers: {X-Key: "${MISSING_KEY}"}}
        routes:
          - flow: a
        """
    ) == [
        "bot.yaml:2:33: allow_hosts[1]: 'not a host' is not a host name; write a name like "
        "api.example.com, a wildcard like *.example.com or an address like 127.0.0.1 (no "
        "scheme, port or path)",
        "bot.yaml:5:19: flows.a[0].call.url: write the URL's scheme and host without templates, "
        "ending the host with '/', like https://api.example.com/orders/{{ vars.order_id }}",
        "bot.yaml:5:19: flows.a[0].call.url: vars.host is read here before any step can have "
        "saved it (save it first (`save:`, `set:` or a call's `extract:`))",
        "bot.yaml:6:19: flows.a[1].call.url: this call cannot be made: 'api.other.example' is "
        "not in allow_hosts (add it to call it)",
        "bot.yaml:7:66: flows.a[2].call.headers.X-Key: environment variable MISSING_KEY is not "
        "set (set it in the environment or in .env)",
    ]


def test_without_a_secret_the_loader_says_how_state_is_signed() -> None:
    _, problems = load_text(
        "access_key: ${K}\nflows:\n  a: [{end: true}]\nroutes: [{flow: a}]\n", "b.yaml", {"K": KEY}
    )
    assert [str(p).splitlines()[0] for p in problems] == [
        "b.yaml:2:1: warning: flows: ENGINE_STATE_SECRET is not set: flow state is signed "
        "with a key derived from the bot's access key (set ENGINE_STATE_SECRET (the same on "
        "every server) to sign it independently)"
    ]


@pytest.mark.parametrize("key", [b"k" * 32, b"", b"x" * 64, b"y" * 100])
def test_the_signature_is_hmac_sha256(key: bytes) -> None:
    expected = hmac.digest(key, b"1.payload", "sha256")[:SIGNATURE_BYTES]
    assert _sign(key, "1.payload") == expected


def test_the_readme_flow_example_loads_and_runs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Flows and calls", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    tests = """
tests:
  - turns:
      - say: refund please
        expect: {equals: "What's your order number? (like AB123456)", flow: refund}
      - say: AB123456
        http_reply: {json: {status: delivered, amount: {total: "$42.00"}}}
        expect: {equals: "Refund $42.00?", suggested: ["Yes", "No"], vars: {total: "$42.00"}}
      - say: "yes"
        expect: {equals: "Refund started.", flow: false}
      - say: refund
      - say: stop
        expect: {equals: "Cancelled.", flow: false}
"""
    bot, problems = load_text(example + tests, "README.md", ENV)
    assert bot is not None, problems
    assert [r.failures for r in run_bot_tests(bot)] == [[]]


def test_an_llm_step_reads_vars_and_the_flow_goes_on() -> None:
    bot = make(
        """
        model: {provider: openai, name: gpt-4o-mini}
        flows:
          greet:
            - ask: "Your name?"
              save: name
            - llm: {prompt: "Greet {{ vars.name }} in five words."}
            - ask: "Anything else?"
              save: more
        routes:
          - flow: greet
        tests:
          - turns:
              - say: hi
              - say: Ada
                model_reply: Hello there Ada, welcome aboard.
                expect:
                  equals: "Hello there Ada, welcome aboard.\\n\\nAnything else?"
                  prompt_contains: Greet Ada in five words.
                  flow: greet
        """,
        {**ENV, "OPENAI_API_KEY": "sk-test"},
    )
    assert [r.failures for r in run_bot_tests(bot)] == [[]]


def test_a_step_with_two_actions_or_a_misspelt_one_is_named() -> None:
    assert problems_of(
        """
        flows:
          a:
            - reply: hi
              goto: top
            - rely: hi
            - ask: "q"
              save: q
              expect: {type: text, choices: [a]}
        routes:
          - flow: a
        """
    ) == [
        "bot.yaml:4:7: flows.a[0]: a step needs exactly one of: ask, reply, llm, call, set, "
        "goto, switch, flow, end (found goto and reply; split them into separate steps)",
        "bot.yaml:6:7: flows.a[1]: a step needs exactly one of: ask, reply, llm, call, set, "
        "goto, switch, flow, end (unknown key 'rely'; did you mean 'reply'?)",
        "bot.yaml:9:15: flows.a[2].expect: `expect` needs exactly one of type, pattern or choices",
    ]


def test_a_secret_header_written_out_is_a_warning() -> None:
    assert problems_of(
        """
        allow_hosts: [api.acme.example]
        flows:
          a:
            - call:
                url: "https://api.acme.example/x"
                headers: {Authorization: "Bearer abc123", X-Trace: "1", X-Api-Key: "${K}"}
        routes:
          - flow: a
        """
    ) == [
        "bot.yaml:7:34: warning: flows.a[0].call.headers.Authorization: the Authorization "
        "header is written out in the file (keep secrets in the environment: write it like "
        "'Bearer ${MY_API_TOKEN}')",
        "bot.yaml:7:76: flows.a[0].call.headers.X-Api-Key: environment variable K is not set "
        "(set it in the environment or in .env)",
    ]


def test_reads_that_allow_a_missing_var_are_not_reported() -> None:
    assert problems_of(
        """
            flows:
              a:
                - reply: "{{ vars.nick | default('friend') }}"
                - reply: "{% if vars.seen is defined %}again{% endif %}{{ vars.get('x') }}"
                - if: "vars.known"
                  goto: done
                - id: done
                  reply: "{{ vars['other'] }}"
            routes:
              - flow: a
            """
    ) == [
        "bot.yaml:6:11: flows.a[2].if: vars.known is read here before any step can have "
        "saved it (save it first (`save:`, `set:` or a call's `extract:`))",
        "bot.yaml:9:14: flows.a[3].reply: vars.other is read here before any step can have "
        "saved it (save it first (`save:`, `set:` or a call's `extract:`))",
    ]


def test_a_flow_of_thousands_of_steps_is_checked_without_recursion() -> None:
    jumps = "\n".join(f"    - id: s{i}\n      goto: s{i + 1}" for i in range(2000))
    text = f"flows:\n  a:\n{jumps}\n    - id: s2000\n      goto: s0\nroutes:\n  - flow: a\n"
    _, problems = load_text(text, "bot.yaml", ENV)
    assert [p.message.split(":")[0] for p in problems] == [
        "flow 'a' can never end",
        "these steps can loop without asking the user anything",
    ]


@pytest.mark.parametrize(
    "metadata", ["1.\udcff.AAAA", "1..", "1.e30.\x00", "1." + "[" * 3000 + ".AA", ".", "1.a.b.c"]
)
def test_decoding_never_raises(metadata: str) -> None:
    key = state_key("pizza", "secret", None)
    state, reason = decode(metadata, "pizza", key)
    assert state is None and reason


def test_starting_over_forgets_the_stopped_flows_vars() -> None:
    chat = Chat(make(BOOKING))
    chat.say("book")
    chat.say("2")
    chat.messages.append(user("start over"))
    trace = FlowTrace()
    request = parse_query(query(*chat.messages))
    list(guarded(run(chat.bot, request, NOW, trace=trace), "booking"))
    assert (trace.vars, trace.running) == ({}, "book")


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("{{ vars.a }} and {{ vars['b'] }} and {{ vars.c.d }}", ["a", "b", "c"]),
        ("{{ vars.a | default('x') }}{% if vars.b is defined %}{% endif %}", []),
        ("{% if vars.b is not defined %}{% endif %}{{ vars.get('c') }}", []),
        ("{{ 'vars.a is text' }} {# vars.b #}", []),
        ("{% for v in vars.items %}{{ v }}{% endfor %}", ["items"]),
        ("{{ broken", []),
    ],
)
def test_the_vars_a_template_reads(source: str, reads: list[str]) -> None:
    assert template_reads(source) == reads


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("vars.a == 'x' && lower(vars.b.c)", ["a", "b"]),
        ('vars."odd name" || message', ["odd name"]),
        ("contains(['vars.a'], message)", []),
        ("vars", []),
    ],
)
def test_the_vars_a_condition_reads(source: str, reads: list[str]) -> None:
    assert condition_reads(source) == reads


def test_branches_goto_another_step_or_start_another_flow() -> None:
    bot = make(
        """
        flows:
          main:
            - ask: "Pick a number"
              save: n
              expect: {type: integer}
              tries: 1
              on_fail: {reply: "Let's pick for you.", goto: chosen}
            - id: chosen
              set: {double: {expr: "sum([vars.n || `21`, vars.n || `21`])"}}
            - reply: "Twice is {{ vars.double }}."
            - flow: second
          second:
            - ask: "Your email?"
              save: email
              expect: {type: email}
              tries: 1
              on_fail: {flow: main}
            - end: "Thanks, {{ vars.email }}."
        routes:
          - flow: main
        """
    )
    chat = Chat(bot)
    chat.say("go")
    assert chat.say("abc").text == "Let's pick for you.\n\nTwice is 42.\n\nYour email?"
    assert chat.say("nope").text == "Pick a number"
    chat.say("5")
    assert chat.say("a@b.example").text == "Thanks, a@b.example."


def test_flows_that_start_each_other_without_asking_are_a_warning() -> None:
    looping = """
        flows:
          a:
            - reply: in a
            - flow: b
          b:
            - if: "message == 'again'"
              goto: again
            - ask: Which?
              save: which
            - id: again
              flow: a
        routes:
          - flow: a
        """
    bot, problems = load_text(textwrap.dedent(looping), "loop.yaml", ENV)
    assert bot is not None
    assert [str(p) for p in problems] == [
        "loop.yaml:4:5: warning: flows.a: flow 'a' can start itself again through `flow:` "
        "steps without asking the user anything: a turn stops after 100 steps with an error "
        "(put an `ask:` before one of those `flow:` steps)"
    ]
    # With the question on the way, the loop waits for the user each time round.
    asking = looping.replace(
        "- if: \"message == 'again'\"\n              goto: again\n            ", ""
    )
    assert load_text(textwrap.dedent(asking), "loop.yaml", ENV)[1] == []


def test_a_short_state_secret_is_a_warning() -> None:
    flows = "flows:\n  f:\n    - end: done\nroutes:\n  - flow: f\n"
    _, problems = load_text(flows, "s.yaml", {"ENGINE_STATE_SECRET": "short"})
    assert [str(p) for p in problems] == [
        "s.yaml:1:1: warning: flows: ENGINE_STATE_SECRET has 5 characters: a user holding any "
        "flow state could guess it offline and forge states "
        "(use at least 32 random characters)"
    ]
