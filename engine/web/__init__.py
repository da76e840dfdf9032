"""The Flask app factory: every bot in one folder, served over the Poe protocol, and
reloaded in place when the folder changes (`reload_app`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from flask import Flask

from ..compiled import CompiledBot
from ..errors import EngineError, SpecError, SpecErrors
from ..limits import Limiter
from ..loader import MIN_ACCESS_KEY_LENGTH, BotRegistry, RefreshReport, is_weak
from ..protocol.settings import settings_response
from ..providers import preload
from ..settings import Settings
from ..store import Store
from . import health, poe

__all__ = ["EngineState", "StartupError", "create_app", "describe_served", "reload_app"]

log = logging.getLogger("engine.web")

# Where create_app keeps, in `app.extensions`, what reload_app needs beside the state.
_REGISTRY = "engine.registry"
_ENDPOINT = "engine.endpoint"


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
    *,
    keep_going: bool = False,
) -> Flask:
    """Load and check every bot, then build the app.

    A broken bot file stops the start-up, unless `keep_going` (the playground, where the
    creator fixes it while the server runs): then it is logged, listed in
    `EngineState.problems`, and the good bots are served.
    """
    settings = settings or Settings()
    _check_playground(settings)
    registry = BotRegistry([bots_dir or settings.bots_dir], env)
    report = registry.load(settings.load_jobs)
    if report.errors and not keep_going:
        raise SpecErrors(report.errors)
    _log_problems(report.problems, "not served")
    _check_keys(report.bots, settings)
    preload(_providers(report.bots.values()))
    app = Flask(__name__)
    state = EngineState(
        bots=report.bots,
        settings_bodies={name: _settings_body(bot) for name, bot in report.bots.items()},
        settings=settings,
        limiter=_limiter(report.bots, settings),
        problems=tuple(report.problems),
        trace_token=secrets.token_urlsafe(32) if settings.playground else None,
    )
    app.extensions["engine"] = state
    app.extensions[_REGISTRY] = registry
    app.register_blueprint(health.blueprint)
    endpoint = poe.PoeEndpoint(app.wsgi_app, state)
    app.wsgi_app = app.extensions[_ENDPOINT] = endpoint  # type: ignore[method-assign]
    if settings.metrics:
        import_module(".metrics_page", __package__).install(app, settings)
    if settings.playground:
        _install_playground(app)
    return app


def reload_app(app: Flask) -> RefreshReport:
    """Load again the bot files that changed and answer from the result from now on.

    A file whose edit has errors keeps its last good bot answering; its errors are logged
    and listed in `EngineState.problems`. Unchanged bots keep their objects and encoded
    settings. If the rate-limit store a new bot needs cannot be opened, nothing changes.
    """
    state: EngineState = app.extensions["engine"]
    registry: BotRegistry = app.extensions[_REGISTRY]
    report = registry.refresh()
    if not report.changed:
        return report
    _log_refresh(report)
    bots = _allowed(registry.bots, state.bots, state.settings)
    try:
        limiter = state.limiter or _limiter(bots, state.settings)
    except EngineError as exc:
        log.error("not reloading the bots: %s; the previous ones keep answering", exc)
        return report
    preload(_providers(bot for name, bot in bots.items() if state.bots.get(name) is not bot))
    new = dataclasses.replace(
        state,
        bots=bots,
        settings_bodies=_reused_bodies(bots, state),
        limiter=limiter,
        problems=tuple(registry.problems),
        version=state.version + 1,
    )
    app.extensions["engine"] = new
    app.extensions[_ENDPOINT].swap(new)
    return report


def describe_served(app: Flask, url: str) -> str:
    """The start-up line saying where the server is: `serving 6 bots on URL: a, b, ...`."""
    state = app.extensions.get("engine")
    if not isinstance(state, EngineState):  # an app not made by create_app (bench/)
        return f"serving on {url}"
    names = sorted(state.bots)
    count = f"{len(names)} bot{'' if len(names) == 1 else 's'}"
    return f"serving {count} on {url}" + (f": {_listed(names, ', ')}" if names else "")


def _settings_body(bot: CompiledBot) -> bytes:
    return json.dumps(settings_response(bot)).encode()


def _reused_bodies(bots: Mapping[str, CompiledBot], state: EngineState) -> dict[str, bytes]:
    """Settings answers, encoded again only for the bots that changed."""
    old, bodies = state.bots, state.settings_bodies
    return {
        name: bodies[name] if old.get(name) is bot else _settings_body(bot)
        for name, bot in bots.items()
    }


def _providers(bots: Iterable[CompiledBot]) -> Iterable[str]:
    return (model.spec.provider for bot in bots for model in bot.models())


def _check_playground(settings: Settings) -> None:
    """The playground talks to every bot with its key: off loopback only behind a token."""
    if settings.playground and not settings.is_loopback and settings.playground_token is None:
        raise StartupError(
            f"the playground needs PLAYGROUND_TOKEN off loopback (HOST={settings.host}): set "
            "it to a long random secret and open /play/?token=<it> once, or bind "
            "HOST=127.0.0.1, or turn PLAYGROUND off"
        )


def _install_playground(app: Flask) -> None:
    """Imported here, so a server without the playground never loads its code."""
    import_module(".playground", __package__).install(app)


def _log_refresh(report: RefreshReport) -> None:
    """One line per change, then the problems of each file loaded again."""
    for file in report.updated:
        log.info("reloaded %s", file)
    for name in report.added:
        log.info("added bot %s", name)
    for name in report.removed:
        log.info("removed bot %s", name)
    for file, problems in report.problems.items():
        fate = "its last good version keeps answering" if file in report.kept_last_good else ""
        _log_problems(problems, fate or "not served")


def _log_problems(problems: Iterable[SpecError], fate: str) -> None:
    """Per file with errors `bots/x.yaml: 2 errors; <fate>`, then each problem as
    `validate` prints it; warnings alone get no heading."""
    by_file: dict[str, list[SpecError]] = defaultdict(list)
    for problem in problems:
        by_file[problem.file].append(problem)
    for file, found in by_file.items():
        errors = [problem for problem in found if not problem.is_warning]
        if errors:
            plural = "" if len(errors) == 1 else "s"
            log.error("%s: %d error%s; %s", file, len(errors), plural, fate)
        for problem in errors:
            log.error("%s", problem)
        for problem in found:
            if problem.is_warning:
                log.warning("%s", problem)


def _allowed(
    bots: Mapping[str, CompiledBot], served: Mapping[str, CompiledBot], settings: Settings
) -> dict[str, CompiledBot]:
    """`bots`, less those a start-up would refuse (off loopback without a strong key): the
    version answering before keeps answering, if any."""
    if settings.is_loopback:
        return dict(bots)
    allowed = {}
    for name, bot in bots.items():
        if bot.access_key is not None and not is_weak(bot.access_key):
            allowed[name] = bot
            continue
        log.error(
            "%s: not serving bot %s on %s without an access key of %d characters or more",
            bot.file,
            name,
            settings.host,
            MIN_ACCESS_KEY_LENGTH,
        )
        if name in served:
            allowed[name] = served[name]
    return allowed


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
