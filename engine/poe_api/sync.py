"""`engine sync`: push each bot's settings to Poe, as fastapi_poe's `sync_bot_settings` does.

Poe caches a bot's settings and offers no way to read them back: `fetch_settings` only
asks Poe to call the bot's own server again. So what changed is told against a record of
the last settings this machine sent successfully (`STATE_DIR/poe-sync.json`, one entry
per Poe base URL and bot); every selected bot is sent again all the same, since Poe's
copy may have been changed from elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..compiled import CompiledBot
from ..protocol.settings import settings_response
from . import PROTOCOL_VERSION

RECORD_FILE = "poe-sync.json"
TIMEOUT = 30.0  # seconds; fastapi_poe waits httpx's default 5 s, too short on a slow day
SHOWN_VALUE = 70  # characters of a value shown in a diff line

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """One bot to sync: who it is on Poe, its key, and the settings Poe would fetch."""

    bot: str  # the engine's name for it (URL path)
    file: str
    poe_name: str
    access_key: str | None
    access_key_var: str | None
    settings: dict[str, Any]

    @classmethod
    def of(cls, bot: CompiledBot) -> Target:
        return cls(
            bot.name,
            bot.file,
            bot.spec.poe_name or bot.name,
            bot.access_key,
            bot.access_key_var,
            settings_response(bot),
        )

    @property
    def label(self) -> str:
        named = "" if self.poe_name == self.bot else f" (Poe bot {self.poe_name})"
        return f"{self.bot}{named}"


class SyncRecord:
    """The settings last sent successfully from here, by base URL and Poe bot name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, dict[str, Any]] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}  # no record yet, or a damaged one: every bot reads as first synced
        if isinstance(loaded, dict):
            self._data = {k: v for k, v in loaded.items() if isinstance(v, dict)}

    def last(self, base_url: str, poe_name: str) -> dict[str, Any] | None:
        found = self._data.get(base_url, {}).get(poe_name)
        return found if isinstance(found, dict) else None

    def keep(self, base_url: str, poe_name: str, settings: dict[str, Any]) -> None:
        self._data.setdefault(base_url, {})[poe_name] = settings

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._data, indent=2, sort_keys=True), encoding="utf-8")
        temporary.replace(self.path)


def record_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the record lives: STATE_DIR (the server's state folder), default `.state`."""
    return Path(environ.get("STATE_DIR") or ".state") / RECORD_FILE


def dry_run(targets: Iterable[Target], echo: Echo) -> int:
    """Print what would be sent; nothing leaves the machine. Always succeeds."""
    for target in targets:
        note = "" if target.access_key else f" ({_no_key(target)}: `sync` would refuse it)"
        echo(f"{target.label}: would send{note}")
        echo(json.dumps(target.settings, indent=2, ensure_ascii=False))
    return 0


def sync(
    targets: list[Target],
    base_url: str,
    record: SyncRecord,
    echo: Echo,
    client: httpx.Client | None = None,
) -> int:
    """Send every target; 0 when all were accepted, 1 otherwise (each failure printed)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines hold the URL: the key
    keys = [target.access_key for target in targets if target.access_key]
    echo = _masking(echo, keys)
    failed = 0
    with client or httpx.Client(timeout=TIMEOUT, follow_redirects=False) as http:
        for target in targets:
            ok = _sync_one(http, target, base_url, record, echo)
            failed += not ok
            if ok:
                record.keep(base_url, target.poe_name, target.settings)
    if failed < len(targets):
        record.save()
    if failed:
        echo(f"sync failed for {failed} of {_count(len(targets), 'bot')}")
    return 1 if failed else 0


def _sync_one(
    http: httpx.Client, target: Target, base_url: str, record: SyncRecord, echo: Echo
) -> bool:
    if not target.access_key:
        echo(f"{target.label}: not synced: {_no_key(target)}")
        return False
    failure = push(http, base_url, target)
    if failure is not None:
        echo(f"{target.label}: not synced: {failure}")
        return False
    previous = record.last(base_url, target.poe_name)
    for line in summary(previous, target.settings):
        echo(f"{target.label}: {line}" if not line.startswith("  ") else line)
    return True


def push(http: httpx.Client, base_url: str, target: Target) -> str | None:
    """POST the settings to `update_settings`; None when Poe accepted them, else why not.

    The key is part of the URL (Poe's design): the text returned never quotes the URL, and
    `sync` masks keys in whatever it prints (Poe's answer might echo one)."""
    assert target.access_key is not None
    url = (
        f"{base_url}update_settings/{quote(target.poe_name, safe='')}/"
        f"{quote(target.access_key, safe='')}/{PROTOCOL_VERSION}"
    )
    try:
        response = http.post(url, json=target.settings)
    except httpx.TimeoutException:
        return f"Poe did not answer within {TIMEOUT:g} s at {base_url}"
    except httpx.HTTPError as exc:
        reason = type(exc).__name__ if not str(exc) else str(exc)
        return f"could not reach {base_url} ({reason})"
    if response.status_code == 200:
        return None
    said = " ".join(response.text.split())[:300] or "(no message)"
    hint = _status_hint(response.status_code, target)
    return f"Poe answered HTTP {response.status_code}: {said}{hint}"


def summary(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """The first line says what happened; indented lines list each key that changed."""
    if previous is None:
        lines = [f"sent {_count(len(current), 'key')} (no earlier sync recorded here)"]
        return lines + [f"  {key}: {_shown(current[key])}" for key in sorted(current)]
    changed = sorted(
        k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k)
    )
    if not changed:
        return ["unchanged since the last sync from here (sent again)"]
    lines = [f"{_count(len(changed), 'key')} changed, sent"]
    for key in changed:
        old = _shown(previous[key]) if key in previous else "(unset)"
        new = _shown(current[key]) if key in current else "(unset)"
        lines.append(f"  {key}: {old} -> {new}")
    return lines


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= SHOWN_VALUE else text[: SHOWN_VALUE - 3] + "..."


def _no_key(target: Target) -> str:
    if target.access_key_var is None:
        return "no access key (add `access_key: ${VARIABLE}` to " + target.file + ")"
    return f"no access key (environment variable {target.access_key_var} is not set)"


def _status_hint(status: int, target: Target) -> str:
    if status in (401, 403):
        return (
            f" (check that {target.access_key_var} holds the access key of the Poe bot "
            f"{target.poe_name}; set `poe_name:` if its name on Poe differs)"
        )
    if status == 404:
        return f" (is {target.poe_name} the bot's name on Poe? set `poe_name:` if it differs)"
    return ""


def _masking(echo: Echo, keys: list[str]) -> Echo:
    """`echo` with every key masked, wherever an answer or error might have echoed one."""
    secrets = sorted({form for key in keys for form in (key, quote(key, safe=""))}, key=len)

    def masked(text: str) -> None:
        for secret in reversed(secrets):  # longest first: a key may contain another
            text = text.replace(secret, "***")
        echo(text)

    return masked


def select(bots: Mapping[str, CompiledBot], names: Iterable[str]) -> list[Target]:
    """The bots named (by name, else by file name), or all of them, sorted by name;
    ValueError listing the names that match no bot."""
    chosen: dict[str, CompiledBot] = {}
    unknown: list[str] = []
    for name in names:
        bot = bots.get(name) or next((b for b in bots.values() if Path(b.file).stem == name), None)
        if bot is None:
            unknown.append(name)
        else:
            chosen[bot.name] = bot
    if unknown:
        known = ", ".join(sorted(bots)) or "none"
        raise ValueError(f"no bot named {', '.join(map(repr, unknown))}; bots: {known}")
    picked = chosen or dict(bots)
    return [Target.of(picked[name]) for name in sorted(picked)]
