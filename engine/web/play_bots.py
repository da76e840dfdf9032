"""What the playground says about each bot: kind, validation status, settings, diagram.

Local bots come from the EngineState (the last good version of each file, and every
file's problems); remote bots, connected with `engine play --connect`, are asked for
their settings as Poe would ask. Nothing here ever returns an access key.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..compiled import CompiledBot
from ..errors import SpecError, place

if TYPE_CHECKING:
    from . import EngineState

log = logging.getLogger("engine.playground")

REMOTE_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class RemoteBot:
    """A bot served elsewhere (another engine, a fastapi_poe server) the playground talks
    to over the Poe protocol, with the key it reads from `key_variable`."""

    name: str
    url: str
    key_variable: str

    @property
    def key(self) -> str | None:
        return os.environ.get(self.key_variable) or None


def remote_key_variable(name: str) -> str:
    """`PLAY_<NAME>_ACCESS_KEY`, NAME upper-cased, anything but letters and digits as `_`."""
    return f"PLAY_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_ACCESS_KEY"


def kind_of(bot: CompiledBot) -> str:
    """`flows` if the bot has flows, else `model` if anything in it asks a model."""
    if bot.flows:
        return "flows"
    return "model" if bot.models() else "rules"


def listed(state: EngineState, remotes: Mapping[str, RemoteBot]) -> list[dict[str, Any]]:
    """Every bot, every broken file no bot answers for, and every remote bot, by name."""
    by_file = problems_by_file(state.problems)
    entries = {
        name: local_entry(bot, by_file.get(bot.file, [])) for name, bot in state.bots.items()
    }
    answering = {bot.file for bot in state.bots.values()}
    for file, problems in by_file.items():
        if file not in answering and any(not p.is_warning for p in problems):
            entries.setdefault(Path(file).stem, broken_entry(file, problems))
    for name, remote in remotes.items():
        entries.setdefault(name, remote_entry(remote))
    return [entries[name] for name in sorted(entries)]


def problems_by_file(problems: tuple[SpecError, ...]) -> dict[str, list[SpecError]]:
    grouped: dict[str, list[SpecError]] = defaultdict(list)
    for problem in sorted(problems, key=place):
        grouped[problem.file].append(problem)
    return dict(grouped)


def local_entry(bot: CompiledBot, problems: list[SpecError]) -> dict[str, Any]:
    if any(not p.is_warning for p in problems):
        status = "stale"  # the file's last good version still answers
    else:
        status = "warnings" if problems else "ok"
    return {
        "name": bot.name,
        "description": bot.spec.description,
        "kind": kind_of(bot),
        "file": bot.file,
        "status": status,
        "problems": [str(p) for p in problems],
    }


def broken_entry(file: str, problems: list[SpecError]) -> dict[str, Any]:
    return {
        "name": Path(file).stem,
        "description": None,
        "kind": None,  # nothing loaded, so nothing says what the bot is
        "file": file,
        "status": "broken",
        "problems": [str(p) for p in problems],
    }


def remote_entry(remote: RemoteBot, problems: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": remote.name,
        "description": f"connected: {remote.url}",
        "kind": "remote",
        "file": None,
        "status": "broken" if problems else "ok",
        "problems": problems or [],
    }


def detail(
    name: str, state: EngineState, remotes: Mapping[str, RemoteBot]
) -> dict[str, Any] | None:
    """The list entry plus the settings Poe would fetch and the diagram; None: no such bot."""
    bot = state.bots.get(name)
    if bot is not None:
        problems = problems_by_file(state.problems).get(bot.file, [])
        body = state.settings_bodies.get(name)
        settings = json.loads(body) if body is not None else None
        return local_entry(bot, problems) | {"settings": settings, "diagram": diagram(bot)}
    if name in remotes:
        settings, problem = fetch_settings(remotes[name])
        entry = remote_entry(remotes[name], [problem] if problem else None)
        return entry | {"settings": settings, "diagram": None}
    for entry in listed(state, {}):
        if entry["name"] == name and entry["status"] == "broken":
            return entry | {"settings": None, "diagram": None}
    return None


def diagram(bot: CompiledBot) -> str | None:
    """The bot as Mermaid text (engine/graph.py); None if it cannot be drawn, which must
    not cost the creator the rest of the page."""
    try:
        from ..graph import mermaid
    except ImportError:
        return None
    try:
        return mermaid(bot)
    except Exception:  # a drawing bug must not hide the bot's settings and chat
        log.exception("bot %s: could not draw its diagram", bot.name)
        return None


def fetch_settings(remote: RemoteBot) -> tuple[dict[str, Any] | None, str | None]:
    """The remote bot's settings answer, or None and what went wrong, in words."""
    headers = {"Authorization": f"Bearer {remote.key}"} if remote.key else {}
    body = {"version": "1.2", "type": "settings"}
    try:
        with httpx.Client(timeout=REMOTE_TIMEOUT, trust_env=False) as client:
            response = client.post(remote.url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"settings request to {remote.url} failed: {exc or type(exc).__name__}"
    if response.status_code != 200:
        return None, f"settings request to {remote.url}: HTTP {response.status_code}"
    try:
        settings = response.json()
    except ValueError:
        return None, f"settings request to {remote.url}: the answer is not JSON"
    if not isinstance(settings, dict):
        return None, f"settings request to {remote.url}: the answer is not a JSON object"
    return settings, None
