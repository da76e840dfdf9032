"""Closing a stream early runs its `finally` blocks at once."""

from __future__ import annotations

from collections.abc import Iterator

from engine.iterators import close_iterator


def test_a_generator_is_closed_at_once() -> None:
    stopped: list[str] = []

    def answer() -> Iterator[str]:
        try:
            yield "first"
            yield "second"
        finally:
            stopped.append("model call closed")

    events = answer()
    assert next(events) == "first"
    close_iterator(events)
    assert stopped == ["model call closed"]
    assert list(events) == []


def test_an_iterator_without_close_needs_nothing() -> None:
    events = iter(["a", "b"])
    close_iterator(events)
    assert list(events) == ["a", "b"]
