"""Reload a worker's bots the moment a bot file is saved: `python -m engine play`.

The reload happens inside the worker that answers, not by forking new workers as SIGHUP
does: from the moment the playground's version goes up, every turn is answered by the new
bots (a replaced worker would still take requests with the old ones for a moment), and
nothing else a worker holds is lost. Loading one changed file blocks the worker for a few
milliseconds, which a development server can afford.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from .web import reload_app

log = logging.getLogger("engine.watch")

# How long a burst of file events may last before the reload (an editor's save is several).
WATCH_DEBOUNCE_MS = 400
# How long with no new event ends a burst: the usual delay from a save to the reload.
WATCH_STEP_MS = 50


def reload_on_change(app: Flask, folder: Path) -> None:
    """In a gevent worker: reload `app`'s bots in this process whenever `folder` changes.

    The watcher thread only wakes the event loop (an async watcher is the one gevent object
    another thread may touch); the reload itself runs in a greenlet of the worker.
    """
    import gevent

    hub = gevent.get_hub()
    wake = hub.loop.async_()
    wake.start(lambda: gevent.spawn(_reload, app))
    start_watching(folder, wake.send)
    _reload(app)  # catch up with edits saved while this worker was starting


def _reload(app: Flask) -> None:
    try:
        reload_app(app)
    except Exception:  # noqa: BLE001 - a failed reload must not end the worker
        log.exception("reloading the bots failed; the previous ones keep answering")


def start_watching(folder: Path, on_change: Callable[[], None]) -> None:
    """Call `on_change` (from another OS thread) after each burst of bot-file changes.

    watchfiles blocks in Rust, so it runs on an OS thread: under gevent's monkey-patching
    threads are greenlets, and a blocked greenlet would stop the whole event loop.
    """
    import watchfiles  # only here: the production server never imports it

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # a line per change is noise
    _original_thread_starter()(_watch, (watchfiles, folder, on_change))
    log.info("watching %s for changes", shown_folder(folder))


def _watch(watchfiles: Any, folder: Path, on_change: Callable[[], None]) -> None:
    """The thread: nothing here logs or takes a lock the event loop's greenlets could hold.

    It blocks every signal first (the watcher's own threads inherit that), so the kernel
    delivers the process's signals to the main thread, where gunicorn handles them.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    changes = watchfiles.watch(
        folder,
        watch_filter=_is_bot_file,
        debounce=WATCH_DEBOUNCE_MS,
        step=WATCH_STEP_MS,
        rust_timeout=0,
        raise_interrupt=False,
    )
    for _ in changes:
        on_change()


def _is_bot_file(change: Any, path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def shown_folder(folder: Path) -> str:
    """`bots/`: as the creator named it, relative to here when it is below."""
    try:
        shown = folder.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = folder
    return f"{shown}/"


def _original_thread_starter() -> Callable[..., Any]:
    """`_thread.start_new_thread` as the OS provides it, even after gevent's patching."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey

        return monkey.get_original("_thread", "start_new_thread")  # type: ignore[no-any-return]
    import _thread

    return _thread.start_new_thread
