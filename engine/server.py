"""The production server: gunicorn with `WEB_CONCURRENCY` gevent worker processes.

gevent serves each open stream from a greenlet instead of a thread, so thousands of slow
answers stay open at once; gunicorn handles SIGTERM gracefully (stop accepting, let open
answers finish for `graceful_timeout` seconds) and restarts crashed workers.

SIGHUP reloads the bots: gunicorn's arbiter calls `Server.reload()`, which loads again the
files that changed (in the master, last-good rule: engine.web.reload_app), then starts new
workers, which fork with the new bots, and stops the old ones gracefully, so their open
answers finish. With `watch` (the playground), each worker also reloads its own bots the
moment a file is saved (engine/watch.py), so no turn is answered by the old version after
the reload.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.sock import TCP6Socket, TCPSocket
from gunicorn.util import is_ipv6

from . import metrics
from .errors import EngineError
from .loader import BotRegistry
from .logs import GunicornLogger
from .settings import Settings
from .watch import reload_on_change
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
        self._held = _hold(settings.host, settings.port)
        if settings.metrics:
            metrics.prepare()  # before the workers fork: they inherit the folder
        super().__init__()

    def load_config(self) -> None:
        options = gunicorn_options(self._settings)
        options["bind"] = [_bind_text(*self._held.getsockname()[:2])]  # PORT=0: the kernel's
        options["when_ready"] = self._ready
        if self._watch:
            options["post_worker_init"] = self._watch_in_worker
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
        log.info("%s", describe_served(self._app, str(arbiter.LISTENERS[0])))

    def _watch_in_worker(self, worker: Any) -> None:
        """gunicorn's post_worker_init: in the worker, once its event loop exists."""
        reload_on_change(self._app, self._bots_folder())

    def _bots_folder(self) -> Path:
        """The folder the app was built from (create_app may be given another)."""
        registry = self._app.extensions.get("engine.registry")
        if isinstance(registry, BotRegistry) and registry.paths:
            return registry.paths[0]
        return self._settings.bots_dir

    @property
    def port(self) -> int:
        """The port bound (with PORT=0, the one the kernel chose)."""
        return int(self._held.getsockname()[1])

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
        # Its lines in the engine's format (JSON with LOG_FORMAT=json), secrets redacted.
        "logger_class": GunicornLogger,
        "proc_name": "poe-engine",
        "control_socket_disable": True,  # one shared path would clash between servers
        **(_METRICS_HOOKS if settings.metrics else {}),
    }


def _child_exit(server: Any, worker: Any) -> None:
    metrics.worker_exited(worker.pid)


def _on_exit(server: Any) -> None:
    metrics.finish()


# Multi-process metrics: a dead worker's files are marked, the master's folder removed.
_METRICS_HOOKS = {"child_exit": _child_exit, "on_exit": _on_exit}


def _bind_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
