"""The production server: gunicorn with `WEB_CONCURRENCY` gevent worker processes.

gevent serves each open stream from a greenlet instead of a thread, so thousands of slow
answers stay open at once; gunicorn handles SIGTERM gracefully (stop accepting, let open
answers finish for `graceful_timeout` seconds) and restarts crashed workers.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from .settings import Settings


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn, configured from Settings, serving an app built (and checked) beforehand."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self._settings).items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app

    @property
    def settings(self) -> Settings:
        """Read by engine.worker.FairGeventWorker, which gets this object as its app."""
        return self._settings


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings; the README's deployment command uses the same ones."""
    return {
        "bind": [f"{_bracket(settings.host)}:{settings.port}"],
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


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
