"""Deterministic replies declared in YAML: tests, demos and offline work, never a default."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence

from .base import Chunk

_WORDS = re.compile(r"\S+\s*|\s+")


class ScriptedStream:
    """Streams one reply in chunks, `delay` seconds apart; close stops it.

    Part `i` is due `i * delay` seconds after the first, as a model generates at its own
    pace whether or not the relay keeps up: a wake-up that comes late (a busy server)
    sends every part whose time has come, as one chunk, instead of sending one and
    pushing the rest later and later (with 5,000 streams at once on two workers, each
    reply took 8-15 s instead of 1, bench/first_byte.py).
    """

    def __init__(self, reply: str, delay: float, chunking: str) -> None:
        self._parts = split(reply, chunking)
        self._delay = delay
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Chunk]:
        parts, delay = self._parts, self._delay
        start = time.monotonic()
        index = 0
        while index < len(parts):
            wait = start + index * delay - time.monotonic()
            if wait > 0 and self._closed.wait(wait):
                return
            if self._closed.is_set():
                return
            due = int((time.monotonic() - start) / delay) + 1 if delay else index + 1
            end = min(len(parts), max(index + 1, due))
            yield Chunk(parts[index] if end == index + 1 else "".join(parts[index:end]))
            index = end

    def close(self) -> None:
        self._closed.set()


def split(text: str, chunking: str) -> Sequence[str]:
    if chunking == "all" or not text:
        return [text]
    if chunking == "char":
        return list(text)
    return _WORDS.findall(text)


def reply_for_turn(replies: Sequence[str], turn: int) -> str:
    """The reply scripted for this turn (1-based); the last one repeats."""
    return replies[min(turn, len(replies)) - 1]
