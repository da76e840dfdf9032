"""A model without an API key is never called: the configuration error is known before any
network traffic (issue 8.1).

Nothing here may reach a provider's real host, even on a tree where the check is missing:
in-process, the SDKs' own variables (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, read when a client
is built without a `base_url`) point at local fakes that count requests, while the bot is
compiled from an environment without them; the command-line test runs without a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401 - imported once here: the first import takes about a second
import openai  # noqa: F401
import pytest

from engine.compiled import CompiledBot, CompiledModel
from engine.protocol.events import Done, Error, Event, Meta, Text
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.providers import open_stream
from engine.providers.base import ChatMessage, ModelCall, ProviderError
from engine.providers.relay import NOT_CONFIGURED, RelayTiming
from engine.runtime import run
from engine.spec.models import AnthropicModel, OpenAIModel

from ._poe import query, user
from .conftest import REPO, compile_bot
from .fake_llm import FakeLLM, chunks

FAST = RelayTiming(keepalive=60.0, backoff=0.01, backoff_max=0.02)
SPECS: dict[str, OpenAIModel | AnthropicModel] = {
    "openai": OpenAIModel(provider="openai", name="gpt-4o-mini"),
    "anthropic": AnthropicModel(provider="anthropic", name="claude-haiku-4-5"),
}
SDK_URL_VARIABLES = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}


@pytest.fixture
def sdk_defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeLLM]]:
    """Counting fakes where each SDK sends a request when it is given no `base_url`."""
    with FakeLLM("openai") as openai_fake, FakeLLM("anthropic") as anthropic_fake:
        fakes = {"openai": openai_fake, "anthropic": anthropic_fake}
        for provider, fake in fakes.items():
            fake.default = chunks("a junk key got through")
            monkeypatch.setenv(SDK_URL_VARIABLES[provider], fake.url)
            monkeypatch.delenv(f"{provider.upper()}_API_KEY", raising=False)
        yield fakes


def requests_made(fakes: dict[str, FakeLLM]) -> int:
    return sum(len(fake.requests) for fake in fakes.values())


def say_hi() -> ModelCall:
    return ModelCall(system=None, messages=(ChatMessage("user", "hi"),))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_opener_refuses_a_model_without_a_key_before_any_request(
    provider: str, sdk_defaults: dict[str, FakeLLM]
) -> None:
    model = CompiledModel(SPECS[provider], api_key=None, base_url=None)
    with pytest.raises(ProviderError) as refused:
        open_stream(model, say_hi())
    assert (refused.value.configuration, refused.value.retryable) == (True, False)
    variable = f"{provider.upper()}_API_KEY"
    assert refused.value.detail == (
        f"{provider}: no API key ({variable} is not set); the model was not called"
    )
    assert requests_made(sdk_defaults) == 0


def test_the_refusal_names_the_variable_the_model_declares(
    sdk_defaults: dict[str, FakeLLM],
) -> None:
    spec = OpenAIModel(provider="openai", name="gpt-4o-mini", api_key="${TUTOR_OPENAI_KEY}")
    with pytest.raises(ProviderError, match=r"\(TUTOR_OPENAI_KEY is not set\)"):
        open_stream(CompiledModel(spec), say_hi())
    assert requests_made(sdk_defaults) == 0


def test_a_server_of_its_own_is_called_without_a_key(openai_api: FakeLLM) -> None:
    """Ollama and other local OpenAI-compatible servers need no key."""
    openai_api.script(chunks("local"))
    model = CompiledModel(SPECS["openai"], api_key=None, base_url=openai_api.url)
    stream = open_stream(model, say_hi())
    try:
        assert [chunk.text for chunk in stream] == ["local"]
    finally:
        stream.close()
    assert len(openai_api.requests) == 1


# ---------------------------------------------------------------------------- the relay


def answer(bot: CompiledBot) -> list[Event]:
    events = guarded(run(bot, parse_query(query(user("hi"))), timing=FAST), bot.name)
    return [event for event in events if not isinstance(event, Meta)]


def llm_bot(*models: dict[str, Any], env: dict[str, str] | None = None) -> CompiledBot:
    spec = {"name": "keyless", "model": list(models), "routes": [{"llm": {}}]}
    return compile_bot(json.dumps(spec), env or {})


@pytest.mark.parametrize(
    "model",
    [
        {"provider": "openai", "name": "gpt-4o-mini"},
        {"provider": "anthropic", "name": "claude-haiku-4-5"},
        {"provider": "openai", "name": "gpt-4o-mini", "api_key": "${UNSET_KEY}"},
    ],
    ids=["openai", "anthropic", "declared-variable"],
)
def test_a_keyless_model_is_not_configured_and_offers_no_retry(
    model: dict[str, Any], sdk_defaults: dict[str, FakeLLM], caplog: pytest.LogCaptureFixture
) -> None:
    events = answer(llm_bot({**model, "retries": 2}))
    assert events == [Error(NOT_CONFIGURED, allow_retry=False), Done()]
    assert requests_made(sdk_defaults) == 0
    assert "no API key" in caplog.text and "(try 1)" in caplog.text
    assert "(try 2)" not in caplog.text  # a configuration error is not retried


def test_a_keyless_model_falls_back_to_the_next_one(sdk_defaults: dict[str, FakeLLM]) -> None:
    keyless = {"provider": "openai", "name": "gpt-4o-mini"}
    scripted = {"provider": "scripted", "replies": ["from the fallback"], "chunk": "all"}
    assert answer(llm_bot(keyless, scripted)) == [Text("from the fallback"), Done()]
    assert requests_made(sdk_defaults) == 0


def test_the_sdk_variable_for_the_server_counts_as_a_server_of_its_own(
    sdk_defaults: dict[str, FakeLLM],
) -> None:
    """OPENAI_BASE_URL in the bot's environment is a `base_url`: called without a key."""
    fake = sdk_defaults["openai"]
    bot = llm_bot({"provider": "openai", "name": "llama3"}, env={"OPENAI_BASE_URL": fake.url})
    assert answer(bot) == [Text("a junk key got through"), Done()]
    assert fake.requests[0].headers["authorization"] == "Bearer missing"


# ---------------------------------------------------------------------------- the terminal

KEYLESS_BOT = """\
name: keyless-tutor
model: {provider: openai, name: gpt-4o-mini}
routes: [{llm: {}}]
"""


def _offline(command: list[str]) -> list[str]:
    """`command` in a network namespace of its own: no route anywhere, even by mistake."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to run the chat without a network")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.decode().strip()}")
    return [unshare, "-n", *command]


def test_chat_with_a_keyless_model_says_it_is_not_configured(tmp_path: Path) -> None:
    """The issue's reproduction: `printf 'hello\\n/quit\\n' | python -m engine chat BOT`."""
    bot = tmp_path / "keyless-tutor.yaml"
    bot.write_text(KEYLESS_BOT, encoding="utf-8")
    unset = {"OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}
    env = {name: value for name, value in os.environ.items() if name not in unset}
    result = subprocess.run(
        _offline([sys.executable, "-m", "engine", "chat", str(bot)]),
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(REPO)},
        input="hello\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"error: {NOT_CONFIGURED} (no retry)" in result.stdout
    assert "not answering" not in result.stdout
    assert "environment variable OPENAI_API_KEY is not set" in result.stdout + result.stderr
