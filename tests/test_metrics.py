"""GET /metrics (issue 12, point 2): every kind of turn counted across two gevent workers of
a real `python app.py`, read through /metrics with prometheus_client's own parser; the
counts survive a worker's restart; and /metrics is protected off loopback."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from ._observed import Watched, every_kind, watched
from ._poe import query, user
from ._redis import needs_redis
from ._server import wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
RULE_TURNS = 12  # at least; more until both workers have served a few


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    folder = tmp_path_factory.mktemp("metrics")
    counts = folder / "counts"
    counts.mkdir()
    (counts / "counter_1.db").write_bytes(b"a stale file of an earlier run")
    running = watched(folder, workers=2, PROMETHEUS_MULTIPROC_DIR=str(counts))
    try:
        yield running
    finally:
        running.stop()


def _samples(watch: Watched) -> Samples:
    code, body = watch.server.get("/metrics")
    assert code == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _rule_turns_on_both_workers(watch: Watched) -> dict[int, int]:
    """Rule turns on fresh connections until each worker has answered at least three."""
    served: dict[int, int] = {}
    body = json.dumps(query(user("hello there")))
    for turn in range(200):
        connection = watch.server.connect()
        try:
            connection.request("POST", "/rules", body, watch.server.headers(watch.key("rules")))
            response = connection.getresponse()
            assert response.status == 200 and b"You said" in response.read()
            owner = watch.server.owner_of(connection)
        finally:
            connection.close()
        assert owner is not None
        served[owner] = served.get(owner, 0) + 1
        if turn + 1 >= RULE_TURNS and len(served) == 2 and min(served.values()) >= 3:
            return served
    pytest.fail(f"the kernel never spread 200 connections over both workers: {served}")


@pytest.fixture(scope="module")
def counted(watch: Watched) -> tuple[Samples, int]:
    every_kind(watch, "m")
    turns = sum(_rule_turns_on_both_workers(watch).values())
    total = turns + 3  # the rule, error and refused turns of every_kind

    def settled() -> bool:
        samples = _samples(watch)
        return _value(samples, "poe_engine_time_to_done_seconds_count", bot="rules") >= total and (
            _value(samples, "poe_engine_reactions_total", bot="rules", kind="like") == 1
        )

    wait_for(settled, "every request to be counted")
    return _samples(watch), turns


@needs_redis
def test_both_workers_count_into_the_folder_emptied_at_start(
    watch: Watched, counted: tuple[Samples, int]
) -> None:
    counts = Path(watch.server.log_path).parent / "counts"
    files = {path.name for path in counts.glob("*.db")}
    assert "counter_1.db" not in files
    for pid in watch.server.worker_pids():
        assert f"counter_{pid}.db" in files


@needs_redis
def test_requests_by_bot_type_and_outcome(counted: tuple[Samples, int]) -> None:
    samples, turns = counted
    requests = "poe_engine_requests_total"
    assert _value(samples, requests, bot="rules", type="query", outcome="answered") == turns + 1
    assert _value(samples, requests, bot="rules", type="query", outcome="error") == 1
    assert _value(samples, requests, bot="rules", type="query", outcome="refused") == 1
    assert _value(samples, requests, bot="model", type="query", outcome="answered") == 1
    assert _value(samples, requests, bot="limited", type="query", outcome="answered") == 1
    assert _value(samples, requests, bot="limited", type="query", outcome="limited") == 1
    assert _value(samples, requests, bot="rules", type="report_reaction", outcome="answered") == 1
    assert _value(samples, "poe_engine_reactions_total", bot="rules", kind="like") == 1
    assert _value(samples, "poe_engine_input_refusals_total", bot="rules", rule="input.reject[0]")
    assert _value(samples, "poe_engine_limit_refusals_total", bot="limited", limit="messages")


@needs_redis
def test_latency_histograms(counted: tuple[Samples, int]) -> None:
    samples, turns = counted
    for name in ("poe_engine_time_to_first_byte_seconds", "poe_engine_time_to_done_seconds"):
        assert _value(samples, f"{name}_count", bot="rules") == turns + 3
        assert _value(samples, f"{name}_bucket", bot="rules", le="+Inf") == turns + 3
        assert 0 < _value(samples, f"{name}_sum", bot="rules") < turns + 3  # seconds
        assert _value(samples, f"{name}_bucket", bot="model", le="+Inf") == 1
    # A model's answer sends `meta` at once; its retry waits 0.5 s before the end.
    first, done = "poe_engine_time_to_first_byte_seconds", "poe_engine_time_to_done_seconds"
    assert _value(samples, f"{first}_bucket", bot="model", le="0.25") == 1
    assert _value(samples, f"{done}_bucket", bot="model", le="0.25") == 0
    assert _value(samples, f"{done}_bucket", bot="rules", le="0.25") >= turns  # ms each


@needs_redis
def test_model_calls_failures_retries_and_fallbacks_by_provider(
    counted: tuple[Samples, int],
) -> None:
    samples, _ = counted
    assert _value(samples, "poe_engine_model_calls_total", provider="openai") == 3
    assert _value(samples, "poe_engine_model_failures_total", provider="openai") == 2
    assert _value(samples, "poe_engine_model_retries_total", provider="openai") == 1
    assert _value(samples, "poe_engine_model_fallbacks_total", provider="openai") == 1
    assert _value(samples, "poe_engine_streamed_characters_total", bot="model") == 11


@needs_redis
def test_no_label_holds_a_user_id(counted: tuple[Samples, int]) -> None:
    samples, _ = counted
    values = {value for _, labels in samples for _, value in labels}
    assert not {value for value in values if value.startswith(("u-", "c-", "m-"))}


@needs_redis
def test_counts_survive_a_worker_restart(watch: Watched, counted: tuple[Samples, int]) -> None:
    samples, _ = counted
    gone = min(watch.server.worker_pids())
    os.kill(gone, signal.SIGTERM)
    wait_for(
        lambda: gone not in watch.server.worker_pids() and len(watch.server.worker_pids()) == 2,
        "gunicorn to replace the worker",
    )
    after = _samples(watch)
    name = "poe_engine_requests_total"
    for labels in (("rules", "query", "answered"), ("model", "query", "answered")):
        bot, kind, outcome = labels
        assert _value(after, name, bot=bot, type=kind, outcome=outcome) == _value(
            samples, name, bot=bot, type=kind, outcome=outcome
        )


# ---------------------------------------------------------------- protection, in-process


@pytest.fixture
def app_for(
    make_app: Callable[..., Flask], bots_dir: Callable[[dict[str, str]], Path]
) -> Callable[..., Flask]:
    folder = bots_dir({"hi.yaml": "access_key: ${HI_KEY}\nroutes: [{reply: hi}]\n"})
    return lambda **settings: make_app(folder, {"HI_KEY": "k" * 32}, **settings)


def test_open_on_loopback(app_for: Callable[..., Flask]) -> None:
    answer = app_for().test_client().get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    assert b"poe_engine_requests_total" in answer.data


def test_through_a_proxy_on_loopback_it_needs_the_token(app_for: Callable[..., Flask]) -> None:
    client = app_for().test_client()
    answer = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 403 and b"METRICS_TOKEN" in answer.data


def test_off_loopback_without_a_token_it_refuses(app_for: Callable[..., Flask]) -> None:
    answer = app_for(host="0.0.0.0").test_client().get("/metrics")
    assert answer.status_code == 403 and b"METRICS_TOKEN" in answer.data


def test_with_a_token_only_the_token_opens_it(app_for: Callable[..., Flask]) -> None:
    client = app_for(host="0.0.0.0", metrics_token="t" * 40).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    right = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 40})
    assert right.status_code == 200


def test_metrics_off(app_for: Callable[..., Flask]) -> None:
    answer = app_for(metrics=False).test_client().get("/metrics")
    assert answer.status_code == 404  # the bot-URL check: no bot named metrics
