"""Prometheus metrics of the requests served, every gunicorn worker counted.

prometheus_client's multi-process mode: each worker writes its counts to files of its own
in `PROMETHEUS_MULTIPROC_DIR`, and `GET /metrics`, in whichever worker serves it, adds up
the files of all of them, the workers that exited included (counters never go back).
The master makes the folder (or empties the one given) before the workers fork; gunicorn's
`child_exit` hook tells prometheus_client a worker is gone (`worker_exited`). Outside
gunicorn (an app made in-process, as tests do) the counts live in this process only.

Labels stay few: bot names (bounded by the bot files; a request for an unknown bot is
counted under the bot ""), request types and outcomes from fixed lists, providers,
input-rule locs and limit kinds from the files. Never a user id or a message.

prometheus_client is imported only when a count is first made (or by `prepare`, after it
has set the folder): it reads `PROMETHEUS_MULTIPROC_DIR` once, at import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .providers.relay import ModelAttempt

__all__ = ["FOLDER_VARIABLE", "Metrics", "metrics", "prepare", "render", "worker_exited"]

FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "poe_engine_"
# From a rule-based answer (under a millisecond) to the longest Poe waits for (600 s).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
REQUEST_TYPES = frozenset(
    {
        "request",  # not read: refused before its type was known
        "query",
        "query (json)",
        "settings",
        "report_feedback",
        "report_reaction",
        "report_error",
    }
)
# Poe's documented reactions and feedback types; anything else is counted as `other`.
REACTIONS = frozenset({"like", "dislike", "heart", "laughing", "surprised", "sad"})


def prepare() -> Path:
    """In the master, before any worker forks: the folder every worker writes its counts
    to, made (a temporary one) or, when PROMETHEUS_MULTIPROC_DIR names one, emptied of the
    last run's files, which would otherwise be added to this run's counts."""
    named = os.environ.get(FOLDER_VARIABLE)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="poe-engine-metrics-"))
        os.environ[FOLDER_VARIABLE] = str(folder)
        os.environ[_MADE_HERE] = str(folder)
    metrics()  # prometheus_client imported now, reading the folder; made once, for every worker
    return folder


_MADE_HERE = "POE_ENGINE_METRICS_TEMP"  # the folder `prepare` made, which `finish` removes


def finish() -> None:
    """When the master exits: remove the folder `prepare` made (one that was named is the
    operator's, and stays)."""
    made = os.environ.get(_MADE_HERE)
    if made and made == os.environ.get(FOLDER_VARIABLE):
        shutil.rmtree(made, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: the worker's live gauges go; its counts stay counted."""
    if os.environ.get(FOLDER_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render() -> tuple[bytes, str]:
    """The text Prometheus scrapes, and its content type: every worker's counts added up
    (multi-process mode), else this process's."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    if os.environ.get(FOLDER_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = metrics().registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Metrics:
    """The engine's counters and histograms. A request's counts are gathered in plain
    dicts and written by `commit`, once per batch of requests (engine/web/poe.py); each
    label combination's child is kept in a dict: `labels()` takes a lock and validates
    its arguments on every call."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Multi-process values are collected from the files, not from a registry.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if os.environ.get(FOLDER_VARIABLE) else self.registry

        def counter(name: str, help_text: str, labels: Iterable[str]) -> Any:
            return Counter(PREFIX + name, help_text, list(labels), registry=registry)

        def histogram(name: str, help_text: str) -> Any:
            return Histogram(
                PREFIX + name, help_text, ["bot"], registry=registry, buckets=LATENCY_BUCKETS
            )

        self._metrics: dict[str, Any] = {
            "requests": counter(
                "requests", "POST /<bot> requests answered", ("bot", "type", "outcome")
            ),
            "first_byte": histogram(
                "time_to_first_byte_seconds", "Queries: from the request to the first byte sent"
            ),
            "done": histogram("time_to_done_seconds", "Queries: from the request to the end"),
            "characters": counter(
                "streamed_characters", "Characters of answer text sent", ("bot",)
            ),
            "model_calls": counter("model_calls", "Model calls started", ("provider",)),
            "model_failures": counter("model_failures", "Model calls that failed", ("provider",)),
            "model_retries": counter(
                "model_retries", "Model calls that tried a model again", ("provider",)
            ),
            "model_fallbacks": counter(
                "model_fallbacks",
                "Model calls moved on to the chain's next model, by the provider given up on",
                ("provider",),
            ),
            "input_refusals": counter(
                "input_refusals", "Messages refused by input rules", ("bot", "rule")
            ),
            "limit_refusals": counter(
                "limit_refusals", "Turns refused by a bot's limits", ("bot", "limit")
            ),
            "call_failures": counter(
                "call_failures", "Outside API calls (flow `call` steps) that failed", ("bot",)
            ),
            "reactions": counter(
                "reactions", "Reactions and feedback reported by Poe", ("bot", "kind")
            ),
        }
        self._children: dict[tuple[str, ...], Any] = {}
        # What the requests of one batch (engine/web/poe.py) add, written by `commit`.
        self._counts: dict[tuple[str, ...], float] = {}
        self._observed: dict[tuple[str, ...], list[float]] = {}

    def child(self, name: str, *labels: str) -> Any:
        key = (name, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self._metrics[name].labels(*labels)
        return found

    def _add(self, key: tuple[str, ...], amount: float = 1) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + amount

    def commit(self) -> None:
        """Write what the requests since the last commit counted: each counter once, by
        the sum, and each histogram's buckets once, by how many fell in them.

        In multi-process mode every write is a locked write to a memory-mapped file (a
        FAQ turn made six); a batch of requests of one bot now makes as many as one did.
        """
        counts, self._counts = self._counts, {}
        for key, amount in counts.items():
            self.child(*key).inc(amount)
        observed, self._observed = self._observed, {}
        for key, values in observed.items():
            _observe_all(self.child(*key), values)

    def request(self, bot: str, kind: str, outcome: str) -> None:
        kind = kind if kind in REQUEST_TYPES else "other"
        self._add(("requests", bot, kind, outcome))

    def query(self, bot: str, first_byte: float, done: float, characters: int) -> None:
        observed = self._observed
        key = ("first_byte", bot)
        if key in observed:
            observed[key].append(first_byte)
            observed["done", bot].append(done)
        else:
            observed[key], observed["done", bot] = [first_byte], [done]
        if characters:
            self._add(("characters", bot), characters)

    def models(self, attempts: list[ModelAttempt]) -> None:
        previous: ModelAttempt | None = None
        for attempt in attempts:
            self._add(("model_calls", attempt.provider))
            if attempt.failed:
                self._add(("model_failures", attempt.provider))
            if attempt.retry:
                self._add(("model_retries", attempt.provider))
            if attempt.fallback and previous is not None:
                self._add(("model_fallbacks", previous.provider))
            previous = attempt

    def refused(self, bot: str, rule: str) -> None:
        self._add(("input_refusals", bot, rule))

    def limited(self, bot: str, limit: str) -> None:
        self._add(("limit_refusals", bot, limit))

    def call_failures(self, bot: str, count: int) -> None:
        self._add(("call_failures", bot), count)

    def reaction(self, bot: str, kind: str) -> None:
        self._add(("reactions", bot, kind if kind in REACTIONS else "other"))


def _observe_all(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v)` for each value, in one write per bucket touched and one to the
    sum. Reaches into prometheus_client's `_sum`, `_buckets` and `_upper_bounds` (the
    version is pinned); without them, observes one by one."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) == 1 or bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    falls: dict[int, int] = {}
    for value in values:
        # The first bound at or above the value, as `observe` finds it (+Inf catches all).
        at = bisect_left(bounds, value)
        falls[at] = falls.get(at, 0) + 1
    total.inc(sum(values))
    for at, count in falls.items():
        buckets[at].inc(count)


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's one set of metrics (prometheus_client refuses two of one name)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics
