"""Request lines and counts written per batch (the server's turn of its event loop): the
same lines, in one write, and the same metric values as when each request is written
alone (issue 12's cost per rule-based turn, bench/README.md)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.logs import FIELDS, configure, formatter, hold_lines, release_lines
from engine.metrics import LATENCY_BUCKETS, Metrics
from engine.settings import Settings
from engine.web import create_app
from engine.web.poe import batched

BOT = """\
name: echo
description: Says what it was told.
routes:
  - reply: "You said {{ message }}"
"""


class Writes(io.StringIO):
    """A log stream that remembers each `write` it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    (tmp_path / "echo.yaml").write_text(BOT)
    settings = Settings(bots_dir=tmp_path, log_level="info", log_format="json", metrics=False)
    app = create_app(settings=settings, env={}).wsgi_app
    yield lambda message_id: _post(app, message_id)
    logging.getLogger().handlers.clear()


def _post(app: Any, message_id: str) -> None:
    body = json.dumps(
        {
            "version": "1.2",
            "type": "query",
            "query": [{"role": "user", "content": "hi"}],
            "user_id": "u",
            "conversation_id": "c",
            "message_id": message_id,
        }
    ).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/echo",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    assert b"You said hi" in b"".join(app(environ, lambda *_: None))


def _request_lines(stream: Writes) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "engine.requests"]


def test_a_batch_writes_the_same_lines_at_once(turn: Callable[[str], None]) -> None:
    alone, together = Writes(), Writes()
    settings = Settings(log_level="info", log_format="json")
    configure(settings, environ={}, stream=alone)
    turn("m-1")
    turn("m-2")
    configure(settings, environ={}, stream=together)
    with batched():
        turn("m-1")
        turn("m-2")
        assert together.writes == []  # held until the batch ends
    assert len(alone.writes) == 2 and len(together.writes) == 1
    unstamped = [
        {k: v for k, v in line.items() if not k.endswith(("ms", "time")) and k != "message"}
        for line in _request_lines(alone) + _request_lines(together)
    ]
    assert unstamped[:2] == unstamped[2:]
    assert [line["message_id"] for line in unstamped] == ["m-1", "m-2"] * 2


def test_held_lines_keep_the_level_the_format_and_the_redaction() -> None:
    stream = Writes()
    formatter = configure(Settings(log_level="info"), environ={}, stream=stream)
    formatter.protect(["s3cret-value"])
    logger = logging.getLogger("engine.test_batches")
    held = hold_lines()
    logger.info("first s3cret-value")
    logger.debug("not at this level")
    logger.warning("second")
    assert stream.writes == []
    release_lines(held)
    (written,) = stream.writes
    assert [line.split(" ", 2)[2] for line in written.splitlines()] == [
        "INFO engine.test_batches: first [redacted]",
        "WARNING engine.test_batches: second",
    ]
    logger.info("after")  # no longer held: written at once
    assert len(stream.writes) == 2
    logging.getLogger().handlers.clear()


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_batch_counts_what_its_requests_alone_would() -> None:
    # Values on, between and beyond the buckets' bounds, and two bots.
    times = [0.0004, LATENCY_BUCKETS[0], 0.003, 0.003, 7.0, 1000.0]
    alone, together = Metrics(), Metrics()
    for sink in (alone, together):
        for at, seconds in enumerate(times):
            bot = "a" if at % 3 else "b"
            sink.request(bot, "query", "answered")
            sink.query(bot, seconds / 2, seconds, 5)
            sink.refused(bot, "input.max_length")
            if sink is alone:
                sink.commit()
        sink.commit()
    assert _samples(alone) == _samples(together)
    assert _samples(together)[("poe_engine_requests_total", _labels(bot="a"))] == 4
    assert _samples(together)[("poe_engine_time_to_done_seconds_count", (("bot", "b"),))] == 2


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"type": "query", "outcome": "answered", **labels}.items()))


def test_a_json_request_line_orjson_refuses_is_written_all_the_same() -> None:
    """Request lines are serialized by orjson, which refuses a lone surrogate: that line
    goes through the standard encoder instead, and is one JSON object like the others."""
    line_formatter = formatter(json_lines=True)

    def line(detail: str) -> dict[str, Any]:
        record = logging.LogRecord("engine.requests", logging.INFO, __file__, 1, "m", (), None)
        record.__dict__[FIELDS] = {"detail": detail, "path": ["routes[0]"], "ms": 1.5}
        parsed: dict[str, Any] = json.loads(line_formatter.format(record))
        return parsed

    plain, refused = line("answered"), line("lone \ud800")
    assert plain["detail"] == "answered" and refused["detail"] == "lone \ud800"
    assert (
        plain.keys()
        == refused.keys()
        == {"level", "logger", "message", "detail", "path", "ms", "time"}
    )
