"""The relay (`stream_chain`, through `run`) against fake OpenAI and Anthropic servers:
timeouts, retries, fallback, failures before and after the first chunk, keep-alives and
a client that goes away.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

import anthropic  # noqa: F401 - imported once here: the first import takes about a second
import openai  # noqa: F401
import pytest

from engine.compiled import CompiledBot, CompiledModel
from engine.protocol import sse
from engine.protocol.events import Done, Error, Event, KeepAlive, Meta, Text
from engine.protocol.guard import UNEXPECTED, guarded
from engine.protocol.requests import parse_query
from engine.providers import open_stream
from engine.providers.base import ChatMessage, Chunk, ModelCall
from engine.providers.relay import (
    BROKE_OFF,
    NOT_CONFIGURED,
    UNAVAILABLE,
    ModelFailure,
    RelayTiming,
    Tick,
    stream_chain,
)
from engine.providers.scripted import ScriptedStream
from engine.runtime import run
from engine.spec.models import OpenAIModel
from engine.web.poe import encoded

from ._poe import query, user
from .conftest import compile_bot
from .fake_llm import FakeLLM, Reply, chunks, hang, status

FAST = RelayTiming(keepalive=60.0, backoff=0.01, backoff_max=0.02)
USER_UNAVAILABLE = "Sorry, the model behind this bot is not answering right now. Please try again."


@pytest.fixture
def first() -> Iterator[FakeLLM]:
    with FakeLLM("openai") as fake:
        yield fake


@pytest.fixture
def second() -> Iterator[FakeLLM]:
    with FakeLLM("anthropic") as fake:
        yield fake


def model(fake: FakeLLM, **fields: Any) -> dict[str, Any]:
    """A `model:` entry for the fake's provider; its key comes from the environment."""
    name = "gpt-a" if fake.kind == "openai" else "claude-b"
    return {
        "provider": fake.kind,
        "name": name,
        "base_url": fake.url,
        "api_key": "${TEST_MODEL_KEY}",
        **fields,
    }


def llm_bot(*models: dict[str, Any], **route: Any) -> CompiledBot:
    spec = {"name": "relay-test", "model": list(models), "routes": [{"llm": {}, **route}]}
    return compile_bot(json.dumps(spec), {"TEST_MODEL_KEY": "sk-test"})


def answer(
    bot: CompiledBot, text: str = "hi", timing: RelayTiming = FAST, **fields: Any
) -> Generator[Event, None, None]:
    """The events the server would encode, in order; `close()` is a client leaving."""
    request = parse_query(query(user(text), **fields))
    return cast(Generator[Event, None, None], guarded(run(bot, request, timing=timing), bot.name))


def texts(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, Text))


def visible(events: list[Event]) -> list[Event]:
    return [event for event in events if not isinstance(event, KeepAlive)]


# ---------------------------------------------------------------------------- timeouts


def test_a_total_timeout_moves_on_to_the_next_model(first: FakeLLM, second: FakeLLM) -> None:
    """No retry of the model that timed out: a retry would double the wait past Poe's limit."""
    first.default = hang()
    second.script(chunks("from ", "the second"))
    bot = llm_bot(model(first, timeout={"total": 0.4}, retries=2), model(second))
    started = time.monotonic()
    events = list(answer(bot))
    elapsed = time.monotonic() - started
    assert visible(events) == [Meta(), Text("from "), Text("the second"), Done()]
    assert len(first.requests) == 1
    assert 0.35 < elapsed < 2.0


def test_a_total_timeout_of_the_last_model_is_an_error_with_retry(
    first: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    first.default = Reply(chunks=("late",), delay=5.0)  # headers at once, then silence
    bot = llm_bot(model(first, timeout={"total": 0.3}))
    events = list(answer(bot))
    assert visible(events) == [Meta(), Error(USER_UNAVAILABLE, allow_retry=True), Done()]
    assert "timed out after 0.3 s" in caplog.text
    # The silent stream was closed when the relay gave up on it.
    first.wait_for_disconnect(timeout=1.0)


def test_a_timeout_after_text_is_an_error_after_the_text(first: FakeLLM) -> None:
    first.default = Reply(chunks=("quick ", "slow"), delay=[0, 5])
    bot = llm_bot(model(first, timeout={"total": 0.4}))
    events = visible(list(answer(bot)))
    assert events == [Meta(), Text("quick "), Error(BROKE_OFF, allow_retry=True), Done()]
    assert len(first.requests) == 1


def test_the_whole_chain_stops_before_poes_answer_limit(
    first: FakeLLM, second: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Each model's own timeout fits, but together they would not: the chain's budget wins."""
    first.default = hang()
    second.script(chunks("too late"))
    bot = llm_bot(model(first, timeout={"total": 5}), model(second))
    started = time.monotonic()
    events = list(answer(bot, timing=RelayTiming(keepalive=0.05, backoff=0, answer_limit=0.3)))
    assert visible(events) == [Meta(), Error(USER_UNAVAILABLE, allow_retry=True), Done()]
    assert time.monotonic() - started < 1.5
    assert second.requests == []  # no time was left for it
    assert "openai:gpt-a stopped: the answer's time budget ran out" in caplog.text


# ---------------------------------------------------------------------------- retries


def test_a_429_is_retried_once_without_duplicate_text(first: FakeLLM) -> None:
    first.script(status(429, "rate limited"), chunks("Hello", " there"))
    bot = llm_bot(model(first, retries=1))
    events = visible(list(answer(bot)))
    assert events == [Meta(), Text("Hello"), Text(" there"), Done()]
    assert len(first.requests) == 2
    assert first.requests[0].body == first.requests[1].body


def test_500_on_every_try_falls_back_to_the_second_model(
    first: FakeLLM, second: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    first.default = status(500, "boom")
    second.script(chunks("fallback answer"))
    bot = llm_bot(model(first, retries=2), model(second))
    events = visible(list(answer(bot)))
    assert events == [Meta(), Text("fallback answer"), Done()]
    assert len(first.requests) == 3  # one try and two retries
    assert len(second.requests) == 1
    tries = [r.getMessage() for r in caplog.records if r.name == "engine.providers"]
    assert len(tries) == 3 and all("openai:gpt-a" in line for line in tries)


def test_every_model_failing_is_one_retryable_error_with_the_detail_only_in_the_log(
    first: FakeLLM, second: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    first.default = status(503, "upstream secret detail")
    second.default = status(529, "overloaded detail")
    bot = llm_bot(model(first, retries=1), model(second, retries=0))
    with caplog.at_level(logging.WARNING):
        events = visible(list(answer(bot)))
    assert events == [Meta(), Error(USER_UNAVAILABLE, allow_retry=True), Done()]
    assert UNAVAILABLE == USER_UNAVAILABLE
    assert (len(first.requests), len(second.requests)) == (2, 1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "engine.runtime"
    assert "relay-test" in errors[0].getMessage()
    assert "HTTP 529" in errors[0].getMessage() and "overloaded detail" in errors[0].getMessage()
    assert "upstream secret detail" in caplog.text  # each try is logged


def test_retries_wait_with_backoff(first: FakeLLM) -> None:
    first.script(status(503), status(503), chunks("ok"))
    timing = RelayTiming(keepalive=60.0, backoff=0.1, backoff_max=0.15)
    bot = llm_bot(model(first, retries=2))
    events = visible(list(answer(bot, timing=timing)))
    assert texts(events) == "ok"
    starts = [request.started for request in first.requests]
    assert starts[1] - starts[0] >= 0.09  # backoff
    assert starts[2] - starts[1] >= 0.14  # doubled, capped at backoff_max


# ---------------------------------------------------------------------------- configuration


def test_a_401_is_not_retried_and_tells_the_user_the_model_is_not_configured(
    first: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    first.default = status(401, "Incorrect API key provided")
    bot = llm_bot(model(first, retries=3))
    events = visible(list(answer(bot)))
    assert events == [Meta(), Error(NOT_CONFIGURED, allow_retry=False), Done()]
    assert "this bot's model is not configured" in NOT_CONFIGURED
    assert len(first.requests) == 1
    assert "Incorrect API key provided" in caplog.text


def test_a_configuration_error_still_falls_back_to_the_next_model(
    first: FakeLLM, second: FakeLLM
) -> None:
    first.default = status(404, "The model `gpt-a` does not exist")
    second.script(chunks("second"))
    bot = llm_bot(model(first), model(second))
    assert visible(list(answer(bot))) == [Meta(), Text("second"), Done()]
    assert len(first.requests) == 1


def test_a_missing_key_reaches_the_provider_as_a_401(first: FakeLLM) -> None:
    """An unset `${VAR}` key is only a load-time warning; the API's 401 says the rest."""
    first.default = status(401)
    spec = {"name": "no-key", "model": model(first), "routes": [{"llm": {}}]}
    bot = compile_bot(json.dumps(spec), {})
    assert bot.routes[0].chain[0].api_key is None  # type: ignore[union-attr]
    events = visible(list(answer(bot)))
    assert events == [Meta(), Error(NOT_CONFIGURED, allow_retry=False), Done()]
    assert first.requests[0].headers["authorization"] == "Bearer missing"


def test_a_poe_model_without_an_access_key_fails_without_a_request() -> None:
    spec = {
        "name": "keyless-caller",
        "model": {"provider": "poe", "bot": "Other", "base_url": "http://127.0.0.1:9/"},
        "routes": [{"llm": {}}],
    }
    events = visible(list(answer(compile_bot(json.dumps(spec)))))
    assert events == [Meta(), Error(NOT_CONFIGURED, allow_retry=False), Done()]


# ---------------------------------------------------------------------------- broken streams


def test_a_malformed_stream_before_any_text_is_retried(first: FakeLLM) -> None:
    first.script(Reply(chunks=(), malformed=True), chunks("clean"))
    bot = llm_bot(model(first, retries=1))
    assert visible(list(answer(bot))) == [Meta(), Text("clean"), Done()]
    assert len(first.requests) == 2


def test_a_malformed_stream_after_text_ends_in_an_error(
    first: FakeLLM, second: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    first.default = Reply(chunks=("partial",), malformed=True)
    bot = llm_bot(model(first, retries=2), model(second))
    events = visible(list(answer(bot)))
    assert events == [Meta(), Text("partial"), Error(BROKE_OFF, allow_retry=True), Done()]
    assert "openai: invalid JSON in the stream" in caplog.text


@pytest.mark.parametrize(
    ("reply", "logged"),
    [
        (Reply(chunks=("Half an ", "answer"), cut=True), "openai"),
        (
            Reply(chunks=("Half an ", "answer"), unfinished=True),
            "openai: the stream ended without [DONE]",
        ),
    ],
    ids=["connection-cut", "ends-without-done"],
)
def test_a_failure_after_the_first_chunk_is_neither_retried_nor_replaced(
    first: FakeLLM, second: FakeLLM, caplog: pytest.LogCaptureFixture, reply: Reply, logged: str
) -> None:
    """A cut answer must not look whole: the user sees the text, then an error to retry,
    whether the connection dropped or the body ended without its end marker."""
    first.default = reply
    bot = llm_bot(model(first, retries=2), model(second))
    events = visible(list(answer(bot)))
    assert events == [
        Meta(),
        Text("Half an "),
        Text("answer"),
        Error(BROKE_OFF, allow_retry=True),
        Done(),
    ]
    assert (len(first.requests), len(second.requests)) == (1, 0)
    assert logged in caplog.text


def test_an_overloaded_event_before_text_is_retried(second: FakeLLM) -> None:
    second.script(Reply(chunks=(), error_event=True, message="Overloaded"), chunks("ok"))
    bot = llm_bot(model(second, retries=1))
    assert visible(list(answer(bot))) == [Meta(), Text("ok"), Done()]
    assert len(second.requests) == 2


def test_an_opener_that_raises_anything_is_a_retryable_failure() -> None:
    calls: list[str] = []

    def opener(model: CompiledModel, call: ModelCall) -> Any:
        calls.append(model.label)
        raise RuntimeError("SDK surprise")

    chain = [CompiledModel(OpenAIModel(provider="openai", name="x", retries=1))]
    call = ModelCall(system=None, messages=(ChatMessage("user", "hi"),))
    with pytest.raises(ModelFailure) as failure:
        list(stream_chain(chain, lambda _: call, opener, FAST, "b"))
    assert calls == ["openai:x", "openai:x"]
    assert failure.value.allow_retry and failure.value.user_text == UNAVAILABLE
    assert "RuntimeError: SDK surprise" in failure.value.detail


def test_a_body_that_ends_without_message_stop_before_text_is_retried(second: FakeLLM) -> None:
    second.script(Reply(chunks=(), unfinished=True), chunks("whole"))
    bot = llm_bot(model(second, retries=1))
    assert visible(list(answer(bot))) == [Meta(), Text("whole"), Done()]
    assert len(second.requests) == 2


def test_a_lone_surrogate_in_the_system_prompt_reaches_the_model_once(first: FakeLLM) -> None:
    """A template can write any code point, half an emoji too (a Jinja string escape here);
    the request carries U+FFFD instead, on the first try, rather than failing to encode
    three times and blaming the model."""
    first.script(chunks("fine"))
    system = r'Be kind {{ "\ud800" }}, {{ "\ud83d\ude00" }}'
    bot = llm_bot(model(first, retries=2), llm={"system": system})
    assert visible(list(answer(bot))) == [Meta(), Text("fine"), Done()]
    (request,) = first.requests
    assert request.messages[0] == {"role": "system", "content": "Be kind \ufffd, \U0001f600"}


@pytest.mark.parametrize(
    "bug",
    [
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        TypeError("create() got an unexpected keyword argument 'temperature'"),
        KeyError("content"),
    ],
)
def test_a_local_bug_is_reported_once_not_retried_as_an_outage(
    first: FakeLLM, second: FakeLLM, bug: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine's own failure before any request: no retry, no fallback, no "try again"."""
    calls: list[str] = []

    def opener(model: CompiledModel, call: ModelCall) -> Any:
        calls.append(model.label)
        raise bug

    bot = llm_bot(model(first, retries=2), model(second, retries=2))
    request = parse_query(query(user("hi")))
    events = visible(list(guarded(run(bot, request, opener=opener, timing=FAST), bot.name)))
    assert events == [Meta(), Error(UNEXPECTED, allow_retry=False), Done()]
    assert calls == ["openai:gpt-a"]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[1] is bug  # with its traceback
    assert "relay-test" in record.getMessage()


def test_a_bug_in_generated_suggestions_leaves_the_answer_standing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[ModelCall] = []

    def opener(model: CompiledModel, call: ModelCall) -> Any:
        calls.append(call)
        if len(calls) == 2:
            raise TypeError("a bug in the suggestion call")
        return ScriptedStream("The answer.", 0, "all")

    bot = llm_bot(openai_spec().model_dump(), suggest={"generate": 2})
    request = parse_query(query(user("hi")))
    events = visible(list(guarded(run(bot, request, opener=opener, timing=FAST), bot.name)))
    assert events == [Meta(), Text("The answer."), Done()]
    assert len(calls) == 2
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.exc_info is not None and "a bug in the suggestion call" in caplog.text


# ---------------------------------------------------------------------------- keep-alive


def test_a_silent_upstream_gets_keepalive_ticks(first: FakeLLM) -> None:
    first.default = Reply(chunks=("finally",), delay=0.45)
    bot = llm_bot(model(first))
    events = list(answer(bot, timing=RelayTiming(keepalive=0.05)))
    ticks = [event for event in events if isinstance(event, KeepAlive)]
    assert 4 <= len(ticks) <= 12
    assert visible(events) == [Meta(), Text("finally"), Done()]
    assert events.index(Text("finally")) > events.index(ticks[-1])


def test_retry_backoff_sends_ticks_too(first: FakeLLM) -> None:
    first.script(status(429), chunks("ok"))
    chain = [CompiledModel(openai_spec(), api_key="k", base_url=first.url)]
    call = ModelCall(system=None, messages=(ChatMessage("user", "hi"),))
    timing = RelayTiming(keepalive=0.05, backoff=0.3)
    items = list(stream_chain(chain, lambda _: call, open_stream, timing, "b"))
    assert items[-1] == Chunk("ok")
    assert sum(isinstance(item, Tick) for item in items) >= 2  # about 5; fewer under load


def openai_spec() -> OpenAIModel:
    return OpenAIModel(provider="openai", name="gpt-a", retries=1)


# ---------------------------------------------------------------------------- disconnects


def test_a_client_leaving_mid_stream_closes_the_upstream_call(first: FakeLLM) -> None:
    first.default = Reply(chunks=("one ", "two ", "three"), delay=[0, 3, 3])
    bot = llm_bot(model(first))
    events = answer(bot)
    assert next(events) == Meta()
    assert next(events) == Text("one ")
    time.sleep(0.2)  # the producer thread is blocked reading the socket by now
    left = time.monotonic()
    events.close()  # what the web layer does when Poe's connection goes away
    assert first.wait_for_disconnect(timeout=2.0) - left < 0.5
    assert not first.requests[0].completed


def test_a_client_leaving_while_the_upstream_is_silent_closes_it(second: FakeLLM) -> None:
    second.default = Reply(chunks=("late",), delay=5.0)
    bot = llm_bot(model(second))
    request = parse_query(query(user("hi")))
    events = cast(
        Generator[Event, None, None], run(bot, request, timing=RelayTiming(keepalive=0.05))
    )
    assert next(events) == Meta()
    # Keep-alives while the request reaches the upstream, which then stays silent.
    deadline = time.monotonic() + 5.0
    while not second.requests and time.monotonic() < deadline:
        assert next(events) == KeepAlive()
    assert next(events) == KeepAlive()
    left = time.monotonic()
    events.close()
    assert second.wait_for_disconnect(timeout=2.0) - left < 0.5


def test_after_a_disconnect_no_other_model_is_called(first: FakeLLM, second: FakeLLM) -> None:
    first.default = Reply(chunks=("a", "b"), delay=[0, 3])
    bot = llm_bot(model(first), model(second))
    events = answer(bot)
    assert [next(events), next(events)] == [Meta(), Text("a")]
    time.sleep(0.1)
    events.close()
    first.wait_for_disconnect(timeout=2.0)
    time.sleep(0.1)
    assert second.requests == []


# ---------------------------------------------------------------------------- writes


class _Reads:
    """A stream read the way the relay reads the providers' own readers: one list of
    chunks per socket read (engine/providers/wire.py), then None at the end."""

    pollable = True

    def __init__(self, *reads: list[Chunk]) -> None:
        self.reads = list(reads)

    def poll(self, timeout: float | None) -> list[Chunk] | None:
        return self.reads.pop(0) if self.reads else None

    def __iter__(self) -> Iterator[Chunk]:
        while (read := self.poll(None)) is not None:
            yield from read

    def close(self) -> None:
        self.reads.clear()


def test_chunks_read_together_leave_in_one_write_each_its_own_event() -> None:
    """A relay that falls behind finds several chunks per read: one write for them, not
    one each (5,000 conversations at once, bench/first_byte.py); alone, a chunk still
    leaves the moment it arrives."""
    reads = _Reads([Chunk("Once "), Chunk("upon "), Chunk("a ")], [Chunk("time")])
    bot = llm_bot(openai_spec().model_dump())
    request = parse_query(query(user("hi")))
    events = list(guarded(run(bot, request, opener=lambda *_: reads, timing=FAST), bot.name))
    assert events == [Meta(), Text("Once "), Text("upon "), Text("a "), Text("time"), Done()]
    writes = list(encoded(iter(events)))
    assert [piece.count(b"event: text") for piece in writes] == [0, 3, 1, 0]
    assert b"".join(writes) == b"".join(sse.encode(event) for event in events)
