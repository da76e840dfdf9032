"""Streams a model's answer with timeouts, retries, fallback and keep-alive ticks.

Each attempt opens the provider's stream in its own thread (a greenlet under gevent) and
hands it over through a queue, so the caller can send keep-alive ticks while the upstream
is silent (a model may take seconds to answer), enforce a total deadline, and close the
upstream call the moment the Poe client goes away. A stream the providers read from the
response body themselves (`pollable`, engine/providers/wire.py) is then read by the caller,
one socket read at a time with the time left to the next tick: a chunk costs no handover.
Any other stream (the SDKs' fallbacks) stays in its thread, chunk by chunk. A model whose
answer opens without a network (`opens_at_once`: scripted replies) needs no thread at all.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..compiled import CompiledModel
from ..cooperative import under_gevent
from .base import Chunk, ChunkStream, ModelCall, ProviderError

log = logging.getLogger("engine.providers")

Opener = Callable[[CompiledModel, ModelCall], ChunkStream]

NOT_CONFIGURED = "Sorry, this bot's model is not configured. Its creator has been told."
UNAVAILABLE = "Sorry, the model behind this bot is not answering right now. Please try again."
BROKE_OFF = "Sorry, the model stopped in the middle of its answer. Please try again."


@dataclass(frozen=True)
class Tick:
    """No text for a while: the caller should send a keep-alive comment."""


class ModelFailure(Exception):
    """Every model in the chain failed, or one failed after its text was relayed."""

    def __init__(self, user_text: str, detail: str, allow_retry: bool) -> None:
        super().__init__(detail)
        self.user_text, self.detail, self.allow_retry = user_text, detail, allow_retry


class TimedOut(ProviderError):
    """A model used up its `timeout.total`: the next model gets the time, not a retry."""


@dataclass(frozen=True)
class RelayTiming:
    """Keep-alive interval and retry backoff, in seconds (tests shorten them)."""

    keepalive: float = 10.0
    backoff: float = 0.5
    backoff_max: float = 4.0
    # The whole chain's budget: Poe drops an answer after 600 s, so stop trying before.
    answer_limit: float = 570.0


@dataclass
class ModelAttempt:
    """One try of one model, noted for the turn's log line and metrics: `retry` when it
    tries the same model again, `fallback` when it is a later model's first try."""

    provider: str
    model: str
    retry: bool = False
    fallback: bool = False
    failed: bool = False


_DONE = object()


@dataclass(frozen=True)
class _Opened:
    """A pollable stream, opened by the producer: the caller reads it from here on."""

    stream: Any


# What Python raises for a mistake in code, never for a network or a server: providers turn
# every failure of the upstream into a ProviderError, so one of these that still reaches the
# relay (a text the request encoder refuses, a wrong argument) is a bug. Retrying it would
# only repeat it, and call it an outage.
LOCAL_BUGS = (AttributeError, LookupError, TypeError, ValueError)


def stream_chain(
    chain: Sequence[CompiledModel],
    build_call: Callable[[CompiledModel], ModelCall],
    opener: Opener,
    timing: RelayTiming = RelayTiming(),
    bot_name: str = "",
    attempts: list[ModelAttempt] | None = None,
) -> Iterator[Chunk | Tick]:
    """Chunks from the first model that answers; retries and fallback only before any text.
    Each try is noted on `attempts` (the turn's trace), when given."""
    last: ProviderError | None = None
    chain_deadline = time.monotonic() + timing.answer_limit
    for index, model in enumerate(chain):
        call = build_call(model)
        for attempt in range(model.retries + 1):
            if time.monotonic() >= chain_deadline:
                raise _failure(last or TimedOut("no time left for another model", retryable=True))
            sent = False
            first_try = attempt == 0
            tried = ModelAttempt(
                model.spec.provider, model.label, not first_try, index > 0 and first_try
            )
            if attempts is not None:
                attempts.append(tried)
            try:
                for item in _attempt(model, call, opener, timing, chain_deadline):
                    sent = sent or isinstance(item, Chunk)
                    yield item
                return
            except ProviderError as exc:
                last = exc
                tried.failed = True
                log.warning("bot %s: %s (try %d): %s", bot_name, model.label, attempt + 1, exc)
                if sent:
                    raise ModelFailure(BROKE_OFF, exc.detail, allow_retry=True) from exc
                if not exc.retryable or isinstance(exc, TimedOut):
                    # The next model may be configured; this one will not improve, and
                    # a retry after a total timeout would run past Poe's 600 s limit.
                    break
                if attempt < model.retries:
                    yield from _pause(min(timing.backoff * 2**attempt, timing.backoff_max), timing)
    raise _failure(last)


def _failure(last: ProviderError | None) -> ModelFailure:
    if last is None:
        return ModelFailure(NOT_CONFIGURED, "no model is declared", allow_retry=False)
    if last.configuration or not last.retryable:
        return ModelFailure(NOT_CONFIGURED, last.detail, allow_retry=False)
    return ModelFailure(UNAVAILABLE, last.detail, allow_retry=True)


def _pause(seconds: float, timing: RelayTiming) -> Iterator[Tick]:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, timing.keepalive))
        if deadline - time.monotonic() > 0:
            yield Tick()


def _attempt(
    model: CompiledModel,
    call: ModelCall,
    opener: Opener,
    timing: RelayTiming,
    chain_deadline: float = math.inf,
) -> Iterator[Chunk | Tick]:
    started = time.monotonic()
    deadline = min(started + model.total_timeout, chain_deadline)
    opened: ChunkStream | None = None
    if model.opens_at_once:
        opened = _open_here(model, call, opener)
        if getattr(opened, "pollable", False):
            try:
                yield from _polled(opened, timing, deadline, model, started, chain_deadline)
            finally:
                opened.close()
            return
    handover: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    holder: list[ChunkStream] = []
    _start(_produce, (model, call, opener, handover, stop, holder, opened))
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut(_timeout_detail(model, started, chain_deadline), retryable=True)
            try:
                item = handover.get(timeout=min(timing.keepalive, left))
            except queue.Empty:
                yield Tick()
                continue
            if item is _DONE:
                return
            if type(item) is _Opened:
                yield from _polled(item.stream, timing, deadline, model, started, chain_deadline)
                return
            if isinstance(item, Exception):
                raise item  # a ProviderError, or a bug for the stream guard to report
            yield item
    finally:
        stop.set()
        if holder:
            holder[0].close()  # unblocks the producer and frees the upstream connection


def _polled(
    stream: Any,
    timing: RelayTiming,
    deadline: float,
    model: CompiledModel,
    started: float,
    chain_deadline: float,
) -> Iterator[Chunk | Tick]:
    """Chunks read from `stream` here, with a tick after `keepalive` seconds without one."""
    monotonic, keepalive = time.monotonic, timing.keepalive
    last = monotonic()
    while True:
        now = monotonic()
        if now >= deadline:
            raise TimedOut(_timeout_detail(model, started, chain_deadline), retryable=True)
        wait = min(last + keepalive, deadline) - now
        if wait <= 0:
            last = now
            yield Tick()
            continue
        try:
            chunks = stream.poll(wait)
        except TimeoutError:
            continue
        except (ProviderError, *LOCAL_BUGS):
            raise
        except Exception as exc:
            raise _surprise(model, exc) from exc
        if chunks is None:
            return
        if chunks:
            last = monotonic()
            yield from batched(chunks)


def batched(chunks: list[Chunk]) -> list[Chunk]:
    """The chunks of one read, every one but the last marked `more`: text that arrived
    together leaves together, in one write (engine/web/poe.py `encoded`), each chunk still
    its own event. A relay that falls behind (thousands of streams on a busy worker) finds
    several chunks in each read; written one by one they cost a write each, and the
    writes made it fall further behind."""
    if len(chunks) < 2:
        return chunks
    last = len(chunks) - 1
    return [Chunk(c.text, c.replace, more=True) if i < last else c for i, c in enumerate(chunks)]


def _timeout_detail(model: CompiledModel, started: float, chain_deadline: float) -> str:
    if started + model.total_timeout <= chain_deadline:
        return f"{model.label} timed out after {model.total_timeout:g} s"
    return f"{model.label} stopped: the answer's time budget ran out (Poe allows 600 s)"


def _start(target: Callable[..., None], args: tuple[Any, ...]) -> None:
    """The producer: a greenlet under the gevent worker, a daemon thread elsewhere.

    Under gevent a `threading.Thread` is a greenlet too, behind threading's bookkeeping
    (its locks and events, and a switch to the new greenlet and back while `start` waits
    for it to run): about 30 µs per model call, spawned directly.
    """
    if under_gevent():
        import gevent

        gevent.spawn(target, *args)
    else:
        threading.Thread(target=target, args=args, daemon=True).start()


def _open_here(model: CompiledModel, call: ModelCall, opener: Opener) -> ChunkStream:
    """The model's stream opened in this thread, failures mapped as `_produce` maps them."""
    try:
        return opener(model, call)
    except (ProviderError, *LOCAL_BUGS):
        raise
    except Exception as exc:
        raise _surprise(model, exc) from exc


def _surprise(model: CompiledModel, exc: Exception) -> ProviderError:
    """Anything else a model's stream raised (an SDK surprise): retryable, and logged by
    the chain with the model's label."""
    return ProviderError(f"{model.label}: {type(exc).__name__}: {exc}", retryable=True)


def _produce(
    model: CompiledModel,
    call: ModelCall,
    opener: Opener,
    handover: queue.Queue[Any],
    stop: threading.Event,
    holder: list[ChunkStream],
    opened: ChunkStream | None = None,
) -> None:
    try:
        stream = opener(model, call) if opened is None else opened
        holder.append(stream)
        if stop.is_set():
            stream.close()
            return
        if getattr(stream, "pollable", False):
            handover.put(_Opened(stream))
            return
        for chunk in stream:
            if stop.is_set():
                return
            handover.put(chunk)
        handover.put(_DONE)
    except (ProviderError, *LOCAL_BUGS) as exc:
        handover.put(exc)
    except Exception as exc:
        if not stop.is_set():
            handover.put(_surprise(model, exc))
