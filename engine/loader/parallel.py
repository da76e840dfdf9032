"""Loading a large bots folder on every core: forked processes send their results back pickled.

Why a plain fork and not `multiprocessing`: `python app.py` loads the bots in gunicorn's
master process after gevent has patched it, and multiprocessing's pools run helper threads
(greenlets, under gevent) in the parent. A fork and a pipe need nothing running, and the
child starts with the parent's imports and state, so nothing is imported or set up twice.
Any failure in a child costs only the speed-up: its share is loaded here instead.

Under gevent the OS's own fork and waitpid are used: with gevent's patched fork (which
starts a hub and a child watcher in the parent) the parent kept the pipe's write end open,
so reading the results never ended. The child only computes and writes, so it needs no
gevent set-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

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
    children: list[tuple[int, int]] = []
    try:
        children += (_start(function, share) for share in shares[1:])
        results = [[function(item) for item in shares[0]]]
        while children:
            results.append(_finish(children[0], function, shares[len(results)]))
            children.pop(0)
    finally:
        for pid, read_end in children:  # only after an exception here: stop and reap them
            with contextlib.suppress(OSError):
                os.close(read_end)
            _unpatched("waitpid")(pid, 0)
    merged: list[R] = [None] * len(items)  # type: ignore[list-item]  # every slot is filled
    for index, share_results in enumerate(results):
        merged[index::jobs] = share_results
    return merged


def _start(function: Callable[[T], R], share: Sequence[T]) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = _unpatched("fork")()
    if pid == 0:
        os.close(read_end)
        _child(function, share, write_end)
    os.close(write_end)
    return pid, read_end


def _child(function: Callable[[T], R], share: Sequence[T], write_end: int) -> NoReturn:
    """Work, send the pickled results, and leave without running the parent's exit hooks."""
    status = 1
    try:
        payload = pickle.dumps([function(item) for item in share], pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        status = 0
    except KeyboardInterrupt:
        pass  # the parent was interrupted too and says so
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def _finish(child: tuple[int, int], function: Callable[[T], R], share: Sequence[T]) -> list[R]:
    pid, read_end = child
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = _unpatched("waitpid")(pid, 0)
    if status == 0:
        try:
            results: list[R] = pickle.loads(payload)
            return results
        except Exception:  # noqa: BLE001 - any damage only costs the speed-up
            log.exception("could not read the results of a loading process")
    log.warning(
        "a loading process failed (exit code %s); loading its %d files here instead",
        os.waitstatus_to_exitcode(status),
        len(share),
    )
    return [function(item) for item in share]


def _unpatched(name: str) -> Callable[..., Any]:
    """`os.<name>` as the OS provides it, even after gevent's monkey-patching."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        return monkey.get_original("os", name)  # type: ignore[no-any-return]
    return getattr(os, name)  # type: ignore[no-any-return]
