"""First bytes first (issue 13): answers under way make way for requests arriving, and a
scripted model is read where its answer is, without a thread of its own.

bench/first_byte.py measures the effect (5,000 conversations opened at once); these pin
down the mechanisms: engine/web/cooperative.py, `encoded` in engine/web/poe.py, the
scripted stream's `poll` and the relay's opening in place (engine/providers/).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import gevent
import pytest

from engine import cooperative
from engine.compiled import CompiledModel
from engine.protocol.events import Done, Event, KeepAlive, Meta, Text
from engine.providers import relay
from engine.providers.base import ModelCall, ProviderError
from engine.providers.relay import RelayTiming, stream_chain
from engine.providers.scripted import ScriptedStream
from engine.spec.models import ScriptedModel
from engine.web import poe

# ------------------------------------------------------------------ waiting for arrivals


@pytest.fixture
def arrivals() -> Iterator[None]:
    """The worker's count at 0 before and after (it is the process's)."""
    assert cooperative._arriving == 0
    yield
    while cooperative._arriving > 0:
        cooperative.arrived(-1)


def test_an_answer_goes_on_at_once_when_nothing_is_arriving(arrivals: None) -> None:
    started = time.monotonic()
    cooperative.make_way_for_arrivals()
    assert time.monotonic() - started < 0.05


def test_an_answer_waits_until_the_requests_arriving_have_their_first_bytes(
    arrivals: None,
) -> None:
    order: list[str] = []
    cooperative.arrived(1)
    cooperative.arrived(1)

    def chunk() -> None:
        cooperative.make_way_for_arrivals()
        order.append("chunk written")

    def first_bytes(name: str) -> None:
        order.append(f"{name} first bytes")
        cooperative.arrived(-1)

    waiting = gevent.spawn(chunk)
    gevent.sleep(0.02)
    assert order == []  # still waiting
    gevent.spawn(first_bytes, "a").join()
    gevent.sleep(0.02)
    assert order == ["a first bytes"]  # one request still arriving
    gevent.spawn(first_bytes, "b").join()
    waiting.join(timeout=1)
    assert order == ["a first bytes", "b first bytes", "chunk written"]


def test_waiting_answers_go_on_in_the_order_they_came(arrivals: None) -> None:
    order: list[int] = []
    cooperative.arrived(1)

    def chunk(number: int) -> None:
        cooperative.make_way_for_arrivals()
        order.append(number)

    waiting = [gevent.spawn(chunk, number) for number in range(5)]
    gevent.sleep(0.02)
    assert order == [] and len(cooperative._waiting) == 5
    cooperative.arrived(-1)
    gevent.joinall(waiting, timeout=1)
    assert order == [0, 1, 2, 3, 4]
    assert not cooperative._waiting


def test_an_answer_waits_for_arrivals_only_so_long(
    arrivals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst that never ends (or a count gone wrong) delays chunks, never stops them."""
    monkeypatch.setattr(cooperative, "WAIT_LIMIT", 0.1)
    cooperative.arrived(1)
    started = time.monotonic()
    cooperative.make_way_for_arrivals()
    assert 0.08 < time.monotonic() - started < 0.5
    assert not cooperative._waiting  # it left the queue


# ------------------------------------------------------------------ the answer's writes


def test_an_answer_makes_way_after_its_first_bytes_and_before_each_later_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(poe, "make_way", lambda: calls.append("make way"))
    monkeypatch.setattr(poe, "make_way_for_arrivals", lambda: calls.append("wait"))
    events: list[Event] = [
        Meta(flush=True),
        KeepAlive(),
        Text("a", flush=True),
        Text("b", flush=True),
        Done(),
    ]
    for piece in poe.encoded(iter(events)):
        calls.append(piece.split(b"\r\n", 1)[0].decode())
    assert calls == [
        "event: meta",
        "make way",  # the model is called after this
        "wait",
        ": ping",
        "wait",
        "event: text",
        "wait",
        "event: text",
        "event: done",  # the rest of the last piece, with nothing to wait for
    ]


def test_a_rule_based_answer_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(poe, "make_way", lambda: calls.append("make way"))
    monkeypatch.setattr(poe, "make_way_for_arrivals", lambda: calls.append("wait"))
    pieces = list(poe.encoded(iter([Meta(), Text("Hello."), Done()])))
    assert len(pieces) == 1 and calls == []


def test_making_way_does_nothing_outside_the_gevent_worker() -> None:
    assert not cooperative.under_gevent()  # the test process is not monkey-patched
    cooperative.make_way()


# ------------------------------------------------------------------ the scripted model


def test_a_scripted_reply_is_polled_part_by_part_on_its_schedule() -> None:
    stream = ScriptedStream("one two three", 0.05, "word")
    started = time.monotonic()
    assert stream.poll(None)[0].text == "one "  # type: ignore[index]
    with pytest.raises(TimeoutError):
        stream.poll(0.01)  # the next part is due later than that
    chunks = stream.poll(None)
    assert chunks is not None and chunks[0].text == "two "
    assert 0.04 < time.monotonic() - started < 0.5
    assert [c.text for c in stream.poll(None) or []] == ["three"]
    assert stream.poll(None) is None


def test_parts_that_fell_due_together_come_as_one_chunk() -> None:
    stream = ScriptedStream("one two three four", 0.02, "word")
    assert [c.text for c in stream.poll(None) or []] == ["one "]
    time.sleep(0.07)  # a busy relay, late: three parts are due
    assert [c.text for c in stream.poll(None) or []] == ["two three four"]


def test_a_closed_scripted_reply_ends() -> None:
    stream = ScriptedStream("one two three", 0.01, "word")
    assert next(iter(stream)).text == "one "
    stream.close()
    assert stream.poll(None) is None
    assert list(stream) == []


# ------------------------------------------------------------------ opening in place


SCRIPTED = CompiledModel(ScriptedModel(provider="scripted", replies=["alpha beta"], delay=0))
CALL = ModelCall(system=None, messages=())


def test_a_scripted_model_is_read_without_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(*_: Any, **__: Any) -> Any:
        raise AssertionError("a producer thread was started")

    monkeypatch.setattr(threading, "Thread", no_thread)  # the module the relay uses
    streamed = stream_chain([SCRIPTED], lambda model: CALL, _scripted_opener)
    assert [c.text for c in streamed] == ["alpha ", "beta"]  # type: ignore[union-attr]


def test_opening_in_place_maps_failures_as_the_producer_does() -> None:
    def broken(model: CompiledModel, call: ModelCall) -> Any:
        raise OSError("no such file")

    with pytest.raises(ProviderError) as failure:
        list(relay._attempt(SCRIPTED, CALL, broken, RelayTiming()))
    assert failure.value.retryable and "OSError: no such file" in failure.value.detail


def test_a_scripted_stream_opened_in_place_is_closed_when_the_answer_stops() -> None:
    opened: list[ScriptedStream] = []

    def opener(model: CompiledModel, call: ModelCall) -> ScriptedStream:
        opened.append(ScriptedStream("one two three", 0.01, "word"))
        return opened[-1]

    chunks = relay._attempt(SCRIPTED, CALL, opener, RelayTiming())
    assert isinstance(chunks, Generator)
    next(chunks)
    chunks.close()  # the client left
    assert opened[0].poll(None) is None


def _scripted_opener(model: CompiledModel, call: ModelCall) -> ScriptedStream:
    return ScriptedStream("alpha beta", 0, "word")


def test_the_relay_still_hands_over_streams_that_are_not_pollable() -> None:
    """Any other stream (the SDKs' fallbacks) stays in a producer thread, chunk by chunk."""

    class Plain:
        def __iter__(self) -> Iterator[Any]:
            assert threading.current_thread() is not threading.main_thread()
            yield from ScriptedStream("x y", 0, "word")

        def close(self) -> None:
            pass

    streamed = stream_chain([SCRIPTED], lambda model: CALL, lambda m, c: Plain())
    assert [c.text for c in streamed] == ["x ", "y"]  # type: ignore[union-attr]


def test_the_producer_is_a_plain_greenlet_under_gevent(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, object]] = []
    monkeypatch.setattr(relay, "under_gevent", lambda: True)
    relay._start(lambda value: ran.append((value, gevent.getcurrent())), ("opened",))
    gevent.sleep(0)
    ((value, where),) = ran
    assert value == "opened" and isinstance(where, gevent.Greenlet)
