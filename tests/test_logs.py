"""LOG_FORMAT=json (issue 12, point 1): one JSON line per request with what the turn did,
every other line JSON too, and no configured secret anywhere in the whole log of a real
`python app.py` run at LOG_LEVEL=debug that serves every kind of turn."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.logs import REDACTED, Redacting, configure, formatter
from engine.settings import Settings

from ._observed import Watched, every_kind, watched
from ._redis import needs_redis
from ._server import wait_for


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    running = watched(
        tmp_path_factory.mktemp("logs"), workers=1, LOG_FORMAT="json", LOG_LEVEL="debug"
    )
    try:
        every_kind(running, "a")
        # A request for a "bot" named like a secret: its name is logged, and the safety
        # net must catch it there.
        code, _ = running.server.post(f"/{running.env['OPENAI_API_KEY']}", {}, key="x")
        assert code == 404
        liked = re.compile(r'"reaction": ?"like"')  # request lines are written by orjson
        wait_for(lambda: liked.search(running.server.log()) is not None, "the reaction's line")
        yield running
    finally:
        running.stop()


def _lines(log: str) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    parsed = []
    for line in log.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return parsed


def _request_lines(watch: Watched) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    found: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for line in _lines(watch.server.log()):
        if line["logger"] == "engine.requests":
            found.setdefault((line["type"], line.get("message_id")), []).append(line)
    return found


def _one(watch: Watched, message_id: str, kind: str = "query") -> dict[str, Any]:
    lines = _request_lines(watch).get((kind, message_id), [])
    assert len(lines) == 1, lines
    return lines[0]


@needs_redis
def test_every_line_is_json_with_time_level_logger_and_message(watch: Watched) -> None:
    lines = _lines(watch.server.log())
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "engine.server", "engine.requests"} <= loggers
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("+00:00")


@needs_redis
def test_a_rule_turn(watch: Watched) -> None:
    line = _one(watch, "m-rule-a")
    assert line["message"].startswith("bot rules: query 200 answered in ")
    assert line | {"duration_ms": 0, "first_byte_ms": 0} == {
        **line,
        "bot": "rules",
        "type": "query",
        "status": 200,
        "outcome": "answered",
        "path": ["routes[1]"],
        "rule": None,
        "provider": None,
        "model": None,
        "model_calls": 0,
        "retries": 0,
        "fallbacks": 0,
        "user_id": "u-log",
        "conversation_id": "c-rule-a",
        "message_id": "m-rule-a",
        "characters": len("You said: hello there"),
        "error_type": None,
        "duration_ms": 0,
        "first_byte_ms": 0,
    }
    assert 0 < line["first_byte_ms"] <= line["duration_ms"]
    assert "user_message" not in line  # LOG_MESSAGES is off


@needs_redis
def test_an_error_route(watch: Watched) -> None:
    line = _one(watch, "m-error-a")
    assert (line["outcome"], line["path"], line["allow_retry"]) == ("error", ["routes[0]"], False)
    assert line["detail"] == "error (no retry)"


@needs_redis
def test_an_input_refusal_names_its_rule(watch: Watched) -> None:
    line = _one(watch, "m-refused-a")
    assert (line["outcome"], line["rule"], line["path"]) == (
        "refused",
        "input.reject[0]",
        ["input.reject[0]"],
    )


@needs_redis
def test_a_model_turn_with_a_retry_and_a_fallback(watch: Watched) -> None:
    line = _one(watch, "m-model-a")
    assert line["outcome"] == "answered"
    assert (line["provider"], line["model"]) == ("openai", "openai:second-model")
    assert (line["model_calls"], line["retries"], line["fallbacks"]) == (3, 1, 1)
    assert line["characters"] == len("Fine thanks")
    assert line["path"] == ["routes[0]"]


@needs_redis
def test_a_limited_turn(watch: Watched) -> None:
    assert _one(watch, "m-counted-a")["outcome"] == "answered"
    line = _one(watch, "m-limited-a")
    assert (line["outcome"], line["limit"], line["allow_retry"]) == ("limited", "messages", True)


@needs_redis
def test_a_reaction_names_the_message_it_concerns(watch: Watched) -> None:
    line = _one(watch, "m-rule-a", kind="report_reaction")
    assert (line["bot"], line["reaction"], line["conversation_id"]) == ("rules", "like", "c-rule-a")
    assert line["outcome"] == "answered"


@needs_redis
def test_no_secret_value_anywhere_in_the_log(watch: Watched) -> None:
    log = watch.server.log()
    secrets = {name: value for name, value in watch.env.items()}
    secrets["REDIS_URL password"] = watch.redis.password
    for name, value in secrets.items():
        assert value not in log, f"{name}'s value is in the log"
        assert json.dumps(value)[1:-1] not in log, f"{name}'s value is in the log"
    assert "hello there" not in log and "forbidden word" not in log  # what users wrote
    # The one secret that reached a logger (the requested bot name: in the request line and
    # in gunicorn's debug line of the path) was caught, and it was the only one: nothing
    # else tried to log a secret.
    redacted = [line for line in _lines(log) if REDACTED in json.dumps(line)]
    assert [line.get("outcome") or line["message"] for line in redacted] == [
        f"POST /{REDACTED}",
        "no_such_bot",
    ]
    assert redacted[1]["message"].startswith(f"bot '{REDACTED}': request 404 no such bot")


def _capture(secrets: list[str], **settings: Any) -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    configure(Settings(**settings), environ={}, stream=stream).protect(secrets)
    return stream, logging.getLogger("engine.test")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    configure(Settings(log_format="text"), environ={}, stream=io.StringIO())
    root.handlers[:] = handlers


def test_the_safety_net_redacts_secrets_as_written_and_json_escaped(
    restore_logging: None,
) -> None:
    secret = 'pa"ss\\word-123'
    stream, log = _capture([secret], log_format="json")
    log.warning("plain %s", secret)
    log.warning("in a field", extra={"header": f"Bearer {secret}"})
    try:
        raise ValueError(secret)
    except ValueError:
        log.exception("failed")
    written = stream.getvalue()
    assert secret not in written and json.dumps(secret)[1:-1] not in written
    assert written.count(REDACTED) == 3
    lines = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    assert lines[1]["header"] == f"Bearer {REDACTED}"


def test_text_lines_are_redacted_too_and_short_values_left_alone(restore_logging: None) -> None:
    stream, log = _capture(["s3cret-value", "en"], log_format="text")
    log.warning("key s3cret-value in en")
    assert stream.getvalue().endswith(f"WARNING engine.test: key {REDACTED} in en\n")


def test_records_do_not_look_up_the_thread(restore_logging: None) -> None:
    """No line shows it, and under gevent the lookup makes a dummy thread per request."""
    configure(Settings(log_format="json"), environ={}, stream=io.StringIO())
    record = logging.getLogger("engine.test").makeRecord(
        "engine.test", logging.INFO, "x.py", 1, "line", (), None
    )
    assert record.thread is None and record.threadName is None
    assert record.process is not None  # gunicorn's text lines show the pid


def test_the_secrets_known_at_start(tmp_path: Path) -> None:
    from engine.logs import secret_values

    (tmp_path / "a.yaml").write_text("headers: {X-Key: 'Bearer ${WEATHER}'}\n")
    environ = {"WEATHER": "weather-value", "MY_API_TOKEN": "token-value", "HOME": "/root/x"}
    settings = Settings(
        bots_dir=tmp_path,
        redis_url="redis://:redis-password@127.0.0.1:6379/0",
        metrics_token="metrics-token-value",
    )
    found = secret_values(settings, environ)
    assert {"weather-value", "token-value", "redis-password", "metrics-token-value"} <= found
    assert "/root/x" not in found


def test_text_is_the_default_and_auto_follows_the_terminal() -> None:
    assert Settings().log_format == "text" and not Settings().json_logs
    assert isinstance(formatter(False), logging.Formatter)
    assert Settings(log_format="json").json_logs
    assert (
        Redacting(formatter(True))
        .format(logging.LogRecord("x", logging.INFO, "", 0, "m", None, None))
        .startswith("{")
    )
