"""Stopping a stream early: close its generator now rather than when it is collected."""

from __future__ import annotations

from collections.abc import Iterable


def close_iterator(iterator: Iterable[object]) -> None:
    """Close a generator (or anything with `close()`), running its `finally` blocks now:
    a bot's answer holds its model call open until then. Plain iterators need nothing."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
