"""Shared fixtures: build bots from YAML text, apps over a folder of bots, clean env."""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.compiled import CompiledBot
from engine.errors import SpecErrors
from engine.loader import load_text
from engine.settings import Settings
from engine.web import create_app

from .fake_llm import FakeLLM

if TYPE_CHECKING:
    from ._redis import RedisServer

REPO = Path(__file__).resolve().parent.parent
# The engine's own example bots. A creator's bots beside them in bots/ are for `python -m
# engine validate` and `test` to check; they must never make this suite fail.
EXAMPLE_BOTS = (
    "acme-help",
    "acme-router",
    "claude-editor",
    "gpt-tutor",
    "hello",
    "image-studio",
    "polyglot",
    "refund-desk",
    "storyteller",
)


def _examples_folder() -> Path:
    """A folder holding a copy of the example bots and nothing else, made once per run."""
    folder = Path(tempfile.mkdtemp(prefix="engine-examples-")) / "bots"
    folder.mkdir()
    atexit.register(shutil.rmtree, folder.parent, True)
    for name in EXAMPLE_BOTS:
        shutil.copy(REPO / "bots" / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


BOTS_DIR = _examples_folder()
KEY = "K" * 32
# Every variable an example bot or model reads, set, so the examples load without warnings.
EXAMPLE_ENV = {
    name: KEY
    for path in sorted(BOTS_DIR.glob("*.yaml"))
    for name in re.findall(r"^access_key: \$\{(\w+)\}", path.read_text(), re.MULTILINE)
} | {
    "OPENAI_API_KEY": "sk-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "ENGINE_STATE_SECRET": "example-state-secret-" + "s" * 16,
}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that configures logging (engine.logs.configure replaces the root's handlers
    and level) leaves the next test the logging it found."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _fresh_model_connections() -> Iterator[None]:
    """No test reuses a model connection another test opened: a test's fake model server
    may get the port of an earlier one whose kept-alive connection still answers."""
    yield
    from engine.providers.transport import POOL

    POOL.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's own HOST, PORT or keys."""
    server_vars = ("HOST", "PORT", "BOTS_DIR", "MAX_BODY_BYTES", "WEB_CONCURRENCY")
    for name in (*server_vars, "REDIS_URL", "STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -c code args` in the repository, in a fresh interpreter, output captured."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def compile_bot(yaml_text: str, env: dict[str, str] | None = None) -> CompiledBot:
    """A CompiledBot from YAML text, failing loudly on any spec error."""
    bot, problems = load_text(textwrap.dedent(yaml_text), "bot.yaml", env or {})
    errors = [p for p in problems if not p.is_warning]
    if bot is None:
        raise SpecErrors(errors)
    return bot


@pytest.fixture
def openai_api() -> Iterator[FakeLLM]:
    """A local server speaking OpenAI's chat-completions streaming wire format."""
    with FakeLLM("openai") as fake:
        yield fake


@pytest.fixture
def anthropic_api() -> Iterator[FakeLLM]:
    """A local server speaking Anthropic's messages streaming wire format."""
    with FakeLLM("anthropic") as fake:
        yield fake


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port (tests/_redis.py)."""
    from ._redis import running_redis  # not at the top: it imports _server, which imports us

    yield from running_redis(tmp_path)


@pytest.fixture
def make_bot() -> Callable[..., CompiledBot]:
    return compile_bot


@pytest.fixture
def bots_dir(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write {file name: YAML text} into a fresh folder and return it."""

    def write(files: dict[str, str]) -> Path:
        folder = tmp_path / "bots"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
        return folder

    return write


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    """create_app over a folder, on loopback settings, with an explicit environment; limits
    and remembered vars in the test's own folder unless `state_dir` says otherwise."""

    def build(folder: Path, env: dict[str, str] | None = None, **settings: object) -> Flask:
        settings.setdefault("state_dir", tmp_path / "state")
        app = create_app(folder, Settings(**settings), env=env or {})  # type: ignore[arg-type]
        app.testing = True
        return app

    return build


@pytest.fixture
def example_client(make_app: Callable[..., Flask]) -> FlaskClient:
    """A test client over the real bots/ folder, with every access key set to KEY."""
    return make_app(BOTS_DIR, EXAMPLE_ENV).test_client()
