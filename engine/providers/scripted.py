"""Deterministic replies declared in YAML: tests, demos and offline work, never a default."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence

from .base import Chunk

_WORDS = re.compile(r"\S+\s*|\s+")


class ScriptedStream:
    """Streams one reply in chunks, waiting `delay` seconds between them; close stops it."""

    def __init__(self, reply: str, delay: float, chunking: str) -> None:
        self._parts = split(reply, chunking)
        self._delay = delay
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Chunk]:
        for index, part in enumerate(self._parts):
            if index and self._delay and self._closed.wait(self._delay):
                return
            if self._closed.is_set():
                return
            yield Chunk(part)

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
