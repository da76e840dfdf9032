"""Deterministic replies declared in YAML: tests, demos and offline work, never a default."""

from __future__ import annotations

import re
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

    `pollable`: the relay reads it itself, in the answer's own thread or greenlet (as it
    reads a real model's response body), so a part costs one sleep. Read from a thread
    of its own and handed over, each part cost a timed wait on each side, and the
    greenlets' switches: about a fifth of a server's CPU in that benchmark.
    """

    pollable = True

    def __init__(self, reply: str, delay: float, chunking: str) -> None:
        self._parts = split(reply, chunking)
        self._delay = delay
        self._index = 0
        self._start: float | None = None
        self._closed = False

    def poll(self, timeout: float | None) -> list[Chunk] | None:
        """The parts due now, as one chunk, after sleeping until the next is due; None at
        the end. Raises TimeoutError, having slept `timeout`, if the next part is due
        later than that (the relay sends a keep-alive and polls again)."""
        parts, index = self._parts, self._index
        if self._closed or index >= len(parts):
            return None
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + index * self._delay - time.monotonic()
        if wait > 0:
            if timeout is not None and timeout < wait:
                time.sleep(timeout)
                raise TimeoutError
            time.sleep(wait)
            if self._closed:
                return None
        due = int((time.monotonic() - self._start) / self._delay) + 1 if self._delay else index + 1
        end = min(len(parts), max(index + 1, due))
        self._index = end
        return [Chunk(parts[index] if end == index + 1 else "".join(parts[index:end]))]

    def __iter__(self) -> Iterator[Chunk]:
        while (chunks := self.poll(None)) is not None:
            yield from chunks

    def close(self) -> None:
        """Stop at the next part (the relay closes it from the thread that polls it)."""
        self._closed = True


def split(text: str, chunking: str) -> Sequence[str]:
    if chunking == "all" or not text:
        return [text]
    if chunking == "char":
        return list(text)
    return _WORDS.findall(text)


def reply_for_turn(replies: Sequence[str], turn: int) -> str:
    """The reply scripted for this turn (1-based); the last one repeats."""
    return replies[min(turn, len(replies)) - 1]
