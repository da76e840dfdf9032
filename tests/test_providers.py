"""The real `openai` and `anthropic` SDKs (and the `poe` provider), through `open_stream`,
against local fake APIs.

Each test checks the exact request the SDK put on the wire and the chunks that came back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic  # noqa: F401 - imported once here: the first import takes about a second
import openai  # noqa: F401
import pytest

from engine.compiled import CompiledModel
from engine.providers import open_stream
from engine.providers.base import ChatMessage, Chunk, ModelCall, ProviderError, Sampling
from engine.spec.models import AnthropicModel, OpenAIModel, PoeModel

from .conftest import run_python
from .fake_llm import POE_BOT, FakeLLM, Kind, Reply, chunks, status


def model_for(fake: FakeLLM, api_key: str | None = "sk-test", **fields: Any) -> CompiledModel:
    """A model of the fake's provider pointing at it; `fields` go into the spec."""
    spec: OpenAIModel | AnthropicModel | PoeModel
    if fake.kind == "openai":
        spec = OpenAIModel(provider="openai", name="gpt-test", **fields)
    elif fake.kind == "anthropic":
        spec = AnthropicModel(provider="anthropic", name="claude-test", **fields)
    else:  # a Poe bot is called with the caller's key, which the call carries
        spec = PoeModel(provider="poe", bot=POE_BOT, base_url=fake.url, **fields)
    return CompiledModel(spec, api_key=api_key, base_url=fake.url)


def call(
    *messages: tuple[str, str], system: str | None = None, sampling: Sampling | None = None
) -> ModelCall:
    return ModelCall(
        system=system,
        messages=tuple(ChatMessage(role, text) for role, text in messages),  # type: ignore[arg-type]
        sampling=sampling or Sampling(),
        access_key="poe-key",  # read by `poe` models only
    )


def texts(model: CompiledModel, model_call: ModelCall) -> list[str]:
    stream = open_stream(model, model_call)
    try:
        return [chunk.text for chunk in stream]
    finally:
        stream.close()


CONVERSATION = (
    ("user", "What is 2+2?"),
    ("assistant", "4."),
    ("user", "And 3+3?"),
)


# ---------------------------------------------------------------------------- OpenAI


def test_openai_request_is_exactly_what_the_bot_declared(openai_api: FakeLLM) -> None:
    openai_api.script(chunks("6", "."))
    sampling = Sampling(temperature=0.7, max_tokens=55, top_p=0.9, stop=("END", "STOP"))
    got = texts(model_for(openai_api), call(*CONVERSATION, system="Be brief.", sampling=sampling))
    assert got == ["6", "."]
    (request,) = openai_api.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": "gpt-test",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?"},
        ],
        "temperature": 0.7,
        "max_tokens": 55,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
    }


def test_openai_unset_parameters_are_left_out(openai_api: FakeLLM) -> None:
    texts(model_for(openai_api), call(("user", "hi")))
    body = openai_api.requests[0].body
    assert body == {
        "model": "gpt-test",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_openai_the_sdk_retries_nothing_itself(openai_api: FakeLLM) -> None:
    """max_retries=0: one failed request, not three; the engine decides about retries."""
    openai_api.script(status(503))
    with pytest.raises(ProviderError):
        texts(model_for(openai_api), call(("user", "hi")))
    time.sleep(0.2)
    assert len(openai_api.requests) == 1


# ---------------------------------------------------------------------------- Anthropic


def test_anthropic_request_puts_the_system_prompt_in_its_own_field(anthropic_api: FakeLLM) -> None:
    anthropic_api.script(chunks("6", "."))
    sampling = Sampling(max_tokens=77, stop=("END",))
    got = texts(
        model_for(anthropic_api), call(*CONVERSATION, system="Be brief.", sampling=sampling)
    )
    assert got == ["6", "."]
    (request,) = anthropic_api.requests
    assert request.path == "/v1/messages"
    # anthropic 2.x sends the key as a Bearer token (older SDKs used x-api-key).
    auth = request.headers.get("authorization") or request.headers.get("x-api-key")
    assert auth in ("Bearer sk-test", "sk-test")
    assert "anthropic-version" in request.headers
    assert request.body == {
        "model": "claude-test",
        "stream": True,
        "system": "Be brief.",
        "max_tokens": 77,
        "stop_sequences": ["END"],
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?"},
        ],
    }


def test_anthropic_merges_consecutive_roles_and_starts_with_the_user(
    anthropic_api: FakeLLM,
) -> None:
    messages = (
        ("assistant", "Welcome!"),  # a greeting before the user spoke: dropped
        ("user", "one"),
        ("user", "two"),
        ("assistant", "a"),
        ("assistant", "b"),
        ("user", "three"),
    )
    texts(model_for(anthropic_api), call(*messages))
    body = anthropic_api.requests[0].body
    assert body["messages"] == [
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "a\n\nb"},
        {"role": "user", "content": "three"},
    ]
    assert "system" not in body
    assert body["max_tokens"] == 1024  # the API requires it; the engine's default


def test_anthropic_sampling_that_the_api_refuses_is_not_sent(anthropic_api: FakeLLM) -> None:
    """anthropic 2.x raises TypeError for temperature/top_p; the API (2026-10-21) says 400."""
    sampling = Sampling(temperature=0.5, top_p=0.5, max_tokens=10)
    assert texts(model_for(anthropic_api), call(("user", "hi"), sampling=sampling)) == [
        "Hello",
        " world",
    ]
    body = anthropic_api.requests[0].body
    assert "temperature" not in body and "top_p" not in body
    assert body["max_tokens"] == 10


# ---------------------------------------------------------------------------- both


@pytest.fixture(params=["openai", "anthropic"])
def api(request: pytest.FixtureRequest) -> Iterator[FakeLLM]:
    kind: Kind = request.param
    with FakeLLM(kind) as fake:
        yield fake


def test_chunks_come_out_one_by_one(api: FakeLLM) -> None:
    """Each chunk reaches the caller before the server has even written the next one."""
    api.script(chunks("one ", "two ", "three ", "four", delay=0.12))
    stream = open_stream(model_for(api), call(("user", "count")))
    arrived: list[tuple[str, float]] = []
    for chunk in stream:
        assert isinstance(chunk, Chunk) and not chunk.replace
        arrived.append((chunk.text, time.monotonic()))
    assert [text for text, _ in arrived] == ["one ", "two ", "three ", "four"]
    sent = api.requests[0].sent
    assert len(sent) == 4
    for index in range(3):
        assert arrived[index][1] < sent[index + 1], f"chunk {index} waited for the next one"


def test_a_closed_stream_ends_the_upstream_connection(api: FakeLLM) -> None:
    api.script(chunks("first", "second", delay=[0, 5]))
    stream = open_stream(model_for(api), call(("user", "hi")))
    assert next(iter(stream)).text == "first"
    closed = time.monotonic()
    stream.close()
    assert api.wait_for_disconnect(timeout=2) - closed < 1.0


@pytest.mark.parametrize(
    ("code", "retryable", "configuration"),
    [
        (429, True, False),
        (500, True, False),
        (502, True, False),
        (503, True, False),
        (529, True, False),  # Anthropic's "overloaded"
        (408, True, False),
        (401, False, True),
        (403, False, True),
        (404, False, True),
        (400, False, False),
        (422, False, False),
    ],
)
def test_http_statuses_are_classified(
    api: FakeLLM, code: int, retryable: bool, configuration: bool
) -> None:
    api.script(status(code, "no can do"))
    with pytest.raises(ProviderError) as failure:
        open_stream(model_for(api), call(("user", "hi")))
    error = failure.value
    assert (error.status, error.retryable, error.configuration) == (code, retryable, configuration)
    assert str(code) in error.detail and "no can do" in error.detail


def test_an_error_inside_the_stream_is_retryable(api: FakeLLM) -> None:
    """Anthropic's `overloaded_error` arrives inside a 200 stream: a busy model, not a bad bot."""
    api.script(Reply(chunks=("par",), error_event=True, message="Overloaded"))
    stream = open_stream(model_for(api), call(("user", "hi")))
    got: list[str] = []
    with pytest.raises(ProviderError) as failure:
        for chunk in stream:
            got.append(chunk.text)
    assert got == ["par"]
    assert failure.value.retryable and not failure.value.configuration
    assert "Overloaded" in failure.value.detail


def test_a_cut_connection_fails_after_the_text_received(api: FakeLLM) -> None:
    api.script(Reply(chunks=("half",), cut=True))
    stream = open_stream(model_for(api), call(("user", "hi")))
    got: list[str] = []
    with pytest.raises(Exception):  # noqa: B017 - SDKs differ; the relay maps any exception
        for chunk in stream:
            got.append(chunk.text)
    assert got == ["half"]


def test_a_malformed_line_fails_after_the_text_received(api: FakeLLM) -> None:
    api.script(Reply(chunks=("ok",), malformed=True))
    stream = open_stream(model_for(api), call(("user", "hi")))
    got: list[str] = []
    with pytest.raises(Exception):  # noqa: B017 - openai: ProviderError; anthropic: its SDK's JSON error
        for chunk in stream:
            got.append(chunk.text)
    assert got == ["ok"]


def test_a_server_that_is_not_there_is_retryable(api: FakeLLM) -> None:
    model = model_for(api)
    api.stop()
    with pytest.raises(ProviderError) as failure:
        open_stream(model, call(("user", "hi")))
    assert failure.value.retryable and failure.value.status is None


def test_a_missing_key_is_sent_as_a_placeholder_and_refused(api: FakeLLM) -> None:
    """No key: the SDK would refuse to start; the engine sends one the API answers 401 to."""
    api.script(status(401, "invalid x-api-key"))
    with pytest.raises(ProviderError) as failure:
        open_stream(model_for(api, api_key=None), call(("user", "hi")))
    assert failure.value.configuration and not failure.value.retryable
    headers = api.requests[0].headers
    assert "sk-test" not in str(headers)


# ---------------------------------------------------------------------------- all three


@pytest.fixture(params=["openai", "anthropic", "poe"])
def every_api(request: pytest.FixtureRequest) -> Iterator[FakeLLM]:
    kind: Kind = request.param
    with FakeLLM(kind) as fake:
        yield fake


def test_a_body_that_ends_without_the_end_marker_is_a_broken_stream(every_api: FakeLLM) -> None:
    """A connection closed mid-answer, with nothing in the framing to show it: only the
    missing `[DONE]`, `message_stop` or `done` tells a cut answer from a whole one."""
    every_api.script(Reply(chunks=("half ", "an answer"), unfinished=True))
    stream = open_stream(model_for(every_api), call(("user", "hi")))
    got: list[str] = []
    with pytest.raises(ProviderError) as failure:
        for chunk in stream:
            got.append(chunk.text)
    assert got == ["half ", "an answer"]
    assert failure.value.retryable and not failure.value.configuration
    assert "ended without" in failure.value.detail


def test_a_cut_connection_is_a_retryable_provider_error(every_api: FakeLLM) -> None:
    every_api.script(Reply(chunks=("half",), cut=True))
    stream = open_stream(model_for(every_api), call(("user", "hi")))
    with pytest.raises(ProviderError) as failure:
        list(stream)
    assert failure.value.retryable
    assert "RemoteProtocolError" in failure.value.detail


def test_an_emoji_split_across_chunks_arrives_whole(every_api: FakeLLM) -> None:
    """Each half is sent as a JSON escape (`"\\ud83d"`), as some servers split them."""
    every_api.script(chunks("I ", "\ud83d", "\ude00 you", "a\ude00b", "end \ud83d"))
    got = texts(model_for(every_api), call(("user", "hi")))
    assert got == ["I ", "\U0001f600 you", "a\ufffdb", "end ", "\ufffd"]
    assert "".join(got).encode()  # all of it is text an encoder writes


def test_lone_surrogates_in_the_request_are_sent_as_text(every_api: FakeLLM) -> None:
    """Half an emoji in a prompt (a template's string escape can write one): the request
    is sent, with the halves joined or replaced, not refused by the encoder on every try."""
    model_call = call(
        ("user", "pair \ud83d\ude00 and lone \udc00"),
        system="Prompt \ud800",
        sampling=Sampling(stop=("\ud800",)),
    )
    assert texts(model_for(every_api), model_call) == ["Hello", " world"]
    (request,) = every_api.requests
    sent = json.dumps(request.body, ensure_ascii=False)
    assert "Prompt \ufffd" in sent
    assert "pair \U0001f600 and lone \ufffd" in sent


PLATFORM_PROBE = """
import subprocess, sys
import openai
from openai._base_client import platform_headers
from engine.providers import preload
if sys.argv[1] == "preload":
    preload(["openai"])
def refused(*args, **kwargs):
    raise AssertionError("a subprocess was started")
subprocess.check_output = refused  # what platform.platform() runs `uname -p` with
print(platform_headers(openai.__version__, platform=None)["X-Stainless-OS"])
"""


def test_the_sdks_platform_facts_are_read_at_start_up_not_at_the_first_request() -> None:
    """Under gevent every request starting meanwhile ran its own `uname -p` subprocess."""
    preloaded = run_python(PLATFORM_PROBE, "preload")
    assert preloaded.returncode == 0, preloaded.stderr
    assert preloaded.stdout.strip() == "Linux"  # nothing left to run at the first request
    cold = run_python(PLATFORM_PROBE, "cold")
    assert cold.stdout.strip() == "Unknown"  # the SDK's answer when the subprocess failed
