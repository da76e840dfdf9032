"""The production server: gunicorn with `WEB_CONCURRENCY` gevent worker processes.

gevent serves each open stream from a greenlet instead of a thread, so thousands of slow
answers stay open at once; gunicorn handles SIGTERM gracefully (stop accepting, let open
answers finish for `graceful_timeout` seconds) and restarts crashed workers.

SIGHUP reloads the bots: gunicorn's arbiter calls `Server.reload()`, which loads again the
files that changed (in the master, last-good rule: engine.web.reload_app), then starts new
workers, which fork with the new bots, and stops the old ones gracefully, so their open
answers finish. With `watch`, a thread of the master sends that SIGHUP when a bot file
changes: one reload path for both servers.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.sock import TCP6Socket, TCPSocket
from gunicorn.util import is_ipv6

from .errors import EngineError
from .loader import BotRegistry
from .settings import Settings
from .web import describe_served, reload_app

log = logging.getLogger("engine.server")


class AddressUnavailable(EngineError):
    """The address to serve on cannot be bound: the server must not start."""


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn, configured from Settings, serving an app built (and checked) beforehand.

    Each worker listens on a socket of its own (`reuse_port`), which gunicorn binds in the
    worker, after the fork; its arbiter then had no address to log ("Listening at:  (pid)"),
    and a port already in use made every worker fail and be replaced, every 5 s, forever.
    So the arbiter binds the address first, without listening (a socket that does not listen
    gets no connections): a busy port stops the start-up at once with its reason, gunicorn
    logs the address, PORT=0 gets one port for all the workers, and no other program can
    take the port while the workers restart.
    """

    def __init__(self, app: Flask, settings: Settings, *, watch: bool = False) -> None:
        """`watch`: reload whenever a bot file in the app's folder changes (development)."""
        self._app = app
        self._settings = settings
        self._watch = watch
        self._watching = False
        self._held = _hold(settings.host, settings.port)
        super().__init__()

    def load_config(self) -> None:
        options = gunicorn_options(self._settings)
        options["bind"] = [_bind_text(*self._held.getsockname()[:2])]  # PORT=0: the kernel's
        options["when_ready"] = self._ready
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app

    def reload(self) -> None:
        """On SIGHUP, in the master, before the new workers fork: gunicorn's configuration
        again (the same held address, so no listener is closed or bound again), then the
        bots that changed. A failure keeps the bots answering as they were."""
        super().reload()
        try:
            reload_app(self._app)
        except Exception:  # noqa: BLE001 - the master must survive any failed reload
            log.exception("reloading the bots failed; the previous ones keep answering")

    def run(self) -> None:
        arbiter = _Arbiter(self)
        kind = TCP6Socket if self._held.family == socket.AF_INET6 else TCPSocket
        arbiter.LISTENERS = [_held_listener(kind, self._held, self.cfg, arbiter.log)]
        try:
            arbiter.run()
        except RuntimeError as exc:  # as gunicorn's own BaseApplication.run
            raise SystemExit(f"\nError: {exc}\n") from None

    def _ready(self, arbiter: Any) -> None:
        """Once the arbiter handles signals (a SIGHUP before would end the process)."""
        log.info("%s", describe_served(self._app, str(arbiter.LISTENERS[0])))
        if self._watch and not self._watching:
            self._watching = True
            watch_in_thread(self._bots_folder(), os.getpid())

    def _bots_folder(self) -> Path:
        """The folder the app was built from (create_app may be given another)."""
        registry = self._app.extensions.get("engine.registry")
        if isinstance(registry, BotRegistry) and registry.paths:
            return registry.paths[0]
        return self._settings.bots_dir

    @property
    def settings(self) -> Settings:
        """Read by engine.worker.FairGeventWorker, which gets this object as its app."""
        return self._settings


class _Arbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's arbiter, handling signals within a tenth of a second instead of one.

    Under gevent the arbiter waits for its signal queue in the event loop, which does not
    run a Python signal handler when a signal interrupts it: a SIGHUP (or SIGTERM) waited
    for the wait's one-second timeout. Waking ten times a second costs the master a few
    stat calls each time.
    """

    def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
        return super().wait_for_signals(min(timeout, SIGNAL_WAIT))  # type: ignore[no-any-return]


SIGNAL_WAIT = 0.1


def watch_in_thread(folder: Path, pid: int) -> None:
    """Send SIGHUP to `pid` whenever a bot file in `folder` is written, added or deleted.

    The watcher blocks in Rust, so it runs on an OS thread: the master is monkey-patched by
    gevent, whose threads are greenlets, and a blocked greenlet would stop the arbiter.
    """
    import watchfiles  # only here: the production server without watch never imports it

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # a line per change is noise
    start_thread = _original_thread_starter()
    start_thread(_watch, (watchfiles, folder, pid))
    log.info("watching %s for changes", _shown_folder(folder))


def _watch(watchfiles: Any, folder: Path, pid: int) -> None:
    """The thread: nothing here logs or takes a lock the master's greenlets could hold.

    It blocks every signal first (the watcher's own threads inherit that), so the kernel
    delivers the master's signals, its own SIGHUP included, to the main thread: one taken
    here left the arbiter asleep until its next one-second wake-up, delaying the reload.
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
        os.kill(pid, signal.SIGHUP)


# How long a burst of file events may last before the reload (an editor's save is several).
WATCH_DEBOUNCE_MS = 400
# How long with no new event ends a burst: the usual delay from a save to the reload.
WATCH_STEP_MS = 50


def _is_bot_file(change: Any, path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def _shown_folder(folder: Path) -> str:
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


def _hold(host: str, port: int) -> socket.socket:
    """The address, bound as gunicorn's workers bind it (so they can too), not listening."""
    held = socket.socket(socket.AF_INET6 if is_ipv6(host) else socket.AF_INET)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((host, port))
    except OSError as exc:
        held.close()
        reason = (exc.strerror or str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            reason += " (another server is running there; stop it or set PORT)"
        raise AddressUnavailable(f"cannot bind {_bind_text(host, port)}: {reason}") from None
    return held


def _held_listener(kind: type[Any], held: socket.socket, cfg: Any, logger: Any) -> Any:
    """`held` as gunicorn's arbiter holds a listener: it logs and closes it, and hands it to
    each worker, which binds its own socket instead (`reuse_port`)."""
    address = object.__new__(kind)  # not its __init__, which would bind and listen
    address.log, address.conf, address.sock = logger, cfg, held
    address.cfg_addr = held.getsockname()
    return address


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings (Server binds the address it holds; bench/serve.py reads them)."""
    return {
        "bind": [_bind_text(settings.host, settings.port)],
        "workers": settings.web_concurrency,
        # gunicorn's gevent worker, yielding between keep-alive requests (see engine/worker.py):
        # the stock one lets one busy connection starve the others (p99 2.2 s at 100 conns).
        "worker_class": "engine.worker.FairGeventWorker",
        "worker_connections": settings.worker_connections,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": 75,  # longer than typical load balancer idle timeouts
        # Each worker gets its own listening socket, so the kernel spreads new
        # connections evenly instead of one worker accepting most of them.
        "reuse_port": True,
        "loglevel": settings.log_level,
        "accesslog": None,
        "errorlog": "-",
        "proc_name": "poe-engine",
        "control_socket_disable": True,  # one shared path would clash between servers
    }


def _bind_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
