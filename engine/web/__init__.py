"""The Flask app factory: every bot in one folder, served over the Poe protocol."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from ..compiled import CompiledBot
from ..errors import EngineError, SpecErrors
from ..loader import load_paths
from ..protocol.settings import settings_response
from ..providers import preload
from ..settings import Settings
from . import health, poe

__all__ = ["EngineState", "StartupError", "create_app"]

log = logging.getLogger("engine.web")


class StartupError(EngineError):
    """The server must not start as configured; the message says why and what to change."""


@dataclass(frozen=True)
class EngineState:
    """What the request handlers read: the bots and their pre-encoded settings answers."""

    bots: Mapping[str, CompiledBot]
    settings_bodies: Mapping[str, bytes]
    settings: Settings


def create_app(
    bots_dir: str | Path | None = None,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
) -> Flask:
    """Load and check every bot, then build the app; broken bots stop the start-up."""
    settings = settings or Settings()
    report = load_paths([bots_dir or settings.bots_dir], env, settings.load_jobs)
    if report.errors:
        raise SpecErrors(report.errors)
    for warning in report.warnings:
        log.warning("%s", warning)
    _check_keys(report.bots, settings)
    preload(model.spec.provider for bot in report.bots.values() for model in bot.models())
    app = Flask(__name__)
    state = EngineState(
        bots=report.bots,
        settings_bodies={
            name: json.dumps(settings_response(bot)).encode() for name, bot in report.bots.items()
        },
        settings=settings,
    )
    app.extensions["engine"] = state
    app.register_blueprint(health.blueprint)
    app.wsgi_app = poe.PoeEndpoint(app.wsgi_app, state)  # type: ignore[method-assign]
    return app


def _check_keys(bots: Mapping[str, CompiledBot], settings: Settings) -> None:
    keyless = [bot for _, bot in sorted(bots.items()) if bot.access_key is None]
    if not keyless:
        return
    names = _listed([bot.name for bot in keyless], ", ")
    if settings.is_loopback:
        log.warning("serving %s without an access key: anyone on this machine can call them", names)
        return
    fixes = [
        f"export {bot.access_key_var}"
        if bot.access_key_var
        else f"add `access_key: ${{...}}` to {bot.file}"
        for bot in keyless
    ]
    raise StartupError(
        f"refusing to serve {names} on {settings.host} without an access key; "
        f"{_listed(fixes, '; ')} (or bind HOST=127.0.0.1)"
    )


def _listed(items: list[str], separator: str, shown: int = 10) -> str:
    """The first few items, then how many more: a folder of 1,000 bots makes one line."""
    more = len(items) - shown
    return separator.join(items[:shown]) + (f"{separator}and {more} more" if more > 0 else "")
