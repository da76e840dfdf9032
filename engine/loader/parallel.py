"""Loading a large bots folder on every core: forked processes send their results back pickled.

Why a plain fork and not `multiprocessing`: `python app.py` loads the bots in gunicorn's
master process after gevent has patched it, and multiprocessing's pools run helper threads
(greenlets, under gevent) in the parent. A fork and a pipe need nothing running, and the
child starts with the parent's imports and state, so nothing is imported or set up twice.
Any failure in a child costs only the speed-up: its share is loaded here instead.

Under gevent the OS's own fork, close and waitpid are used. gevent's close of a pipe waits
for its event loop to run once a hub exists (and its fork creates one), so the parent's copy
of the write end stayed open and reading the results never ended. The child only computes
and writes, so it needs no gevent set-up either.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Generic, NoReturn, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("engine.loader")

# Fewer items per process and forking costs about what it saves (measured: 6 bot files load
# in 12 ms in one process and 13 ms in two; 20 files in 42 ms and 30 ms).
MIN_ITEMS_PER_PROCESS = 10


def default_jobs(items: int) -> int:
    """One process per 10 items, at most one per available core."""
    if not can_fork():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), items // MIN_ITEMS_PER_PROCESS))


def can_fork() -> bool:
    """Linux only: macOS makes fork without exec unsafe for some system libraries."""
    return sys.platform == "linux" and hasattr(os, "fork")


def fork_map(function: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """`[function(item) for item in items]`, in order, shared among `jobs` processes."""
    jobs = min(jobs, len(items))
    if jobs <= 1 or not can_fork():
        return [function(item) for item in items]
    shares = [items[index::jobs] for index in range(jobs)]  # interleaved: similar work each
    children: list[_Child[T, R]] = []
    try:
        children += (_Child(function, share) for share in shares[1:])
        results = [[function(item) for item in shares[0]]]
        results += (child.results() for child in children)
    finally:
        for child in children:
            child.abandon()  # only those left running because this process failed first
    merged: list[R] = [None] * len(items)  # type: ignore[list-item]  # every slot is filled
    for index, share_results in enumerate(results):
        merged[index::jobs] = share_results
    return merged


class _Child(Generic[T, R]):
    """A forked process working through one share, and the pipe bringing its results back."""

    def __init__(self, function: Callable[[T], R], share: Sequence[T]) -> None:
        self._function, self._share = function, share
        self._pid: int | None = None
        self._read_end = -1
        try:
            read_end, write_end = os.pipe()
            pid = _unpatched("fork")()
        except OSError as exc:  # out of processes or memory: this process does the share
            log.warning("cannot start a loading process (%s); loading here instead", exc)
            return
        if pid == 0:
            _unpatched("close")(read_end)
            _work_and_exit(function, share, write_end)
        _unpatched("close")(write_end)
        self._pid, self._read_end = pid, read_end

    def results(self) -> list[R]:
        """The child's results; if it failed, the share worked through here instead."""
        if self._pid is None:
            return [self._function(item) for item in self._share]
        read_end, self._read_end = self._read_end, -1  # the file object closes it
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read()
        status = self._reap()
        try:
            results: list[R] = pickle.loads(payload)
            return results
        except Exception:  # noqa: BLE001 - a failed child only costs the speed-up
            log.warning(
                "a loading process failed (exit code %s); loading its %d files here instead",
                status,
                len(self._share),
            )
        return [self._function(item) for item in self._share]

    def abandon(self) -> None:
        if self._read_end >= 0:
            _unpatched("close")(self._read_end)  # the child's write fails, and it exits
            self._read_end = -1
        if self._pid is not None:
            self._reap()

    def _reap(self) -> int | None:
        """The child's exit code; None if something else (a SIGCHLD handler) reaped it."""
        pid, self._pid = self._pid, None
        try:
            _, status = _unpatched("waitpid")(pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)


def _work_and_exit(function: Callable[[T], R], share: Sequence[T], write_end: int) -> NoReturn:
    """Work, send the pickled results, and leave without running the parent's exit hooks."""
    status = 1
    try:
        payload = pickle.dumps([function(item) for item in share], pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        status = 0
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # the parent was interrupted too, or failed and stopped reading: it says why
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def _unpatched(name: str) -> Callable[..., Any]:
    """`os.<name>` as the OS provides it, even after gevent's monkey-patching."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        return monkey.get_original("os", name)  # type: ignore[no-any-return]
    return getattr(os, name)  # type: ignore[no-any-return]
