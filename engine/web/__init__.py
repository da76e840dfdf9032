"""The Flask app factory: every bot in one folder, served over the Poe protocol."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from ..compiled import CompiledBot
from ..errors import EngineError, SpecError, SpecErrors
from ..limits import Limiter
from ..loader import MIN_ACCESS_KEY_LENGTH, is_weak, load_paths
from ..protocol.settings import settings_response
from ..providers import preload
from ..settings import Settings
from ..store import Store
from . import health, poe

__all__ = ["EngineState", "StartupError", "create_app", "describe_served"]

log = logging.getLogger("engine.web")


class StartupError(EngineError):
    """The server must not start as configured; the message says why and what to change."""


@dataclass(frozen=True)
class EngineState:
    """What the request handlers read: the bots and their pre-encoded settings answers."""

    bots: Mapping[str, CompiledBot]
    settings_bodies: Mapping[str, bytes]
    settings: Settings
    limiter: Limiter | None = None  # None when no bot has `limits` or `remember`
    # Every bot file's current problems, errors and warnings: a file whose edit broke it
    # keeps its last good bot in `bots` and its errors here (the playground lists both).
    problems: tuple[SpecError, ...] = ()
    version: int = 0  # one more at each reload
    # Set when the playground is on: a request carrying it in X-Engine-Trace gets the
    # route or flow step taken as an SSE comment. None: no request ever does.
    trace_token: str | None = None


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
        limiter=_limiter(report.bots, settings),
    )
    app.extensions["engine"] = state
    app.register_blueprint(health.blueprint)
    app.wsgi_app = poe.PoeEndpoint(app.wsgi_app, state)  # type: ignore[method-assign]
    return app


def describe_served(app: Flask, url: str) -> str:
    """The start-up line saying where the server is: `serving 6 bots on URL: a, b, ...`."""
    state = app.extensions.get("engine")
    if not isinstance(state, EngineState):  # an app not made by create_app (bench/)
        return f"serving on {url}"
    names = sorted(state.bots)
    count = f"{len(names)} bot{'' if len(names) == 1 else 's'}"
    return f"serving {count} on {url}" + (f": {_listed(names, ', ')}" if names else "")


def _limiter(bots: Mapping[str, CompiledBot], settings: Settings) -> Limiter | None:
    """One Limiter for every bot and worker, its store made here, in the master, before
    the workers fork (StoreDown, an EngineError, stops the start)."""
    users = sorted(name for name, bot in bots.items() if bot.limits or bot.remember)
    if not users:
        return None
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    try:
        store = Store.from_url(url, state_dir=settings.state_dir)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    store.prepare()
    log.info("limits and remembered vars of %s: in %s", _listed(users, ", "), store.description)
    return Limiter(store)


def _check_keys(bots: Mapping[str, CompiledBot], settings: Settings) -> None:
    """Off loopback every bot needs a key, and one that cannot be guessed."""
    ordered = [bot for _, bot in sorted(bots.items())]
    keyless = [bot for bot in ordered if bot.access_key is None]
    weak = [bot for bot in ordered if bot.access_key is not None and is_weak(bot.access_key)]
    if settings.is_loopback:
        if keyless:
            names = _listed([bot.name for bot in keyless], ", ")
            log.warning(
                "serving %s without an access key: anyone on this machine can call them", names
            )
        if weak:
            names = _listed([bot.name for bot in weak], ", ")
            log.warning("serving %s with a short access key: fine on loopback only", names)
        return
    refusals = []
    if keyless:
        refusals.append(
            f"refusing to serve {_listed([bot.name for bot in keyless], ', ')} on "
            f"{settings.host} without an access key; {_listed(_key_fixes(keyless), '; ')}"
        )
    if weak:
        variables = [f"{bot.access_key_var} ({bot.name})" for bot in weak]
        refusals.append(
            f"refusing to serve {_listed([bot.name for bot in weak], ', ')} on {settings.host} "
            f"with an access key shorter than {MIN_ACCESS_KEY_LENGTH} characters; set "
            f"{_listed(variables, ', ')} to the key Poe gave the bot"
        )
    if refusals:
        raise StartupError("; ".join(refusals) + " (or bind HOST=127.0.0.1)")


def _key_fixes(keyless: list[CompiledBot]) -> list[str]:
    return [
        f"export {bot.access_key_var}"
        if bot.access_key_var
        else f"add `access_key: ${{...}}` to {bot.file}"
        for bot in keyless
    ]


def _listed(items: list[str], separator: str, shown: int = 10) -> str:
    """The first few items, then how many more: a folder of 1,000 bots makes one line."""
    more = len(items) - shown
    return separator.join(items[:shown]) + (f"{separator}and {more} more" if more > 0 else "")
