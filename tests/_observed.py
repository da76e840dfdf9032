"""A server to watch (tests/test_logs.py, tests/test_metrics.py): bots answering every kind
of turn, secrets of every kind configured, and one function sending each kind of turn.

The bots: `rules` (a reply, an `error` route, input rules refusing long messages and one
word), `model` (a chain of two OpenAI-compatible models on tests/fake_llm.py, the first
with a retry) and `limited` (one message per user per minute, counted in Redis).
"""

from __future__ import annotations

import secrets
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._poe import query, user
from ._redis import REDIS_SERVER
from ._server import Server, free_port, wait_for
from .fake_llm import FakeLLM, chunks, status

RULES = """\
    access_key: ${RULES_ACCESS_KEY}
    input:
      max_length: 60
      reject:
        - pattern: '(?i)\\bforbidden\\b'
          message: Not that word.
    routes:
      - if: "contains(message, 'broken')"
        error: {text: This route fails on purpose., allow_retry: false}
      - reply: "You said: {{ message }}"
    """
MODEL = """\
    access_key: ${{MODEL_ACCESS_KEY}}
    model:
      - provider: openai
        name: first-model
        base_url: "{url}"
        api_key: "${{OPENAI_API_KEY}}"
        retries: 1
      - {{provider: openai, name: second-model, base_url: "{url}", api_key: "${{OPENAI_API_KEY}}"}}
    routes:
      - llm: {{}}
    """
LIMITED = """\
    access_key: ${LIMITED_ACCESS_KEY}
    limits: {messages: 1/minute}
    routes:
      - reply: Counted.
    """
KEY_VARIABLES = ("RULES_ACCESS_KEY", "MODEL_ACCESS_KEY", "LIMITED_ACCESS_KEY")


def write_bots(folder: Path, model_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("rules", RULES), ("model", MODEL.format(url=model_url))):
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (folder / "limited.yaml").write_text(textwrap.dedent(LIMITED), encoding="utf-8")
    return folder


class PasswordRedis:
    """A throwaway redis-server on loopback that needs a password."""

    def __init__(self, folder: Path) -> None:
        assert REDIS_SERVER is not None
        self.port, self.password = free_port(), "redis-pw-" + secrets.token_hex(12)
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(folder), "--requirepass", self.password]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, "redis-server with a password", 10)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def secret_env(redis_url: str) -> dict[str, str]:
    """Every kind of secret a deployment configures, each a fresh random value."""
    env = {name: secrets.token_urlsafe(24) for name in KEY_VARIABLES}
    return env | {
        "OPENAI_API_KEY": "sk-" + secrets.token_urlsafe(24),
        "ANTHROPIC_API_KEY": "sk-ant-" + secrets.token_urlsafe(24),
        "ENGINE_STATE_SECRET": secrets.token_hex(32),
        "REDIS_URL": redis_url,
    }


@dataclass
class Watched:
    """A running server over the bots above, the fake model and the secrets it holds."""

    server: Server
    fake: FakeLLM
    env: dict[str, str]
    redis: PasswordRedis

    def key(self, bot: str) -> str:
        return self.env[f"{bot.upper()}_ACCESS_KEY"]

    def ask(self, bot: str, text: str, tag: str, user_id: str = "u-log") -> bytes:
        """One query with ids made from `tag`: `m-<tag>`, `c-<tag>`."""
        body = query(user(text), message_id=f"m-{tag}", conversation_id=f"c-{tag}")
        body["user_id"] = user_id
        code, answer = self.server.post(f"/{bot}", body, key=self.key(bot))
        assert code == 200, answer
        return answer

    def stop(self) -> None:
        self.server.stop()
        self.fake.stop()
        self.redis.stop()


def watched(tmp: Path, workers: int, **env: str) -> Watched:
    fake = FakeLLM("openai").start()
    redis = PasswordRedis(tmp)
    secret = secret_env(redis.url)
    bots = write_bots(tmp / "bots", fake.url)
    try:
        server = Server(tmp / "server.log", workers=workers, BOTS_DIR=str(bots), **secret, **env)
    except BaseException:
        fake.stop()
        redis.stop()
        raise
    return Watched(server, fake, secret, redis)


def every_kind(watch: Watched, tag: str) -> dict[str, Any]:
    """One turn of each kind, ids tagged `<kind>-<tag>`; returns what each should log."""
    watch.ask("rules", "hello there", f"rule-{tag}")
    watch.ask("rules", "this is broken", f"error-{tag}")
    watch.ask("rules", "a forbidden word", f"refused-{tag}")
    watch.fake.script(status(500), status(503), chunks("Fine", " thanks"))
    watch.ask("model", "how are you?", f"model-{tag}")
    watch.ask("limited", "one", f"counted-{tag}", user_id=f"u-{tag}")
    watch.ask("limited", "two", f"limited-{tag}", user_id=f"u-{tag}")
    reaction = {
        "version": "1.2",
        "type": "report_reaction",
        "user_id": "u-log",
        "conversation_id": f"c-rule-{tag}",
        "message_id": f"m-rule-{tag}",
        "reaction": "like",
    }
    code, _ = watch.server.post("/rules", reaction, key=watch.key("rules"))
    assert code == 200
    return {"reaction": reaction}
