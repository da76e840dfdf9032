"""The only place that knows about files: YAML in, CompiledBot (or located errors) out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from .files import BOT_SUFFIXES, bot_files, load_text
from .keys import MIN_ACCESS_KEY_LENGTH, is_weak
from .registry import BotRegistry, LoadReport, RefreshReport

__all__ = [
    "BOT_SUFFIXES",
    "MIN_ACCESS_KEY_LENGTH",
    "BotRegistry",
    "LoadReport",
    "RefreshReport",
    "bot_files",
    "is_weak",
    "load_paths",
    "load_text",
]


def load_paths(
    paths: Iterable[str | Path],
    env: Mapping[str, str] | None = None,
    jobs: int | None = None,
) -> LoadReport:
    """Load every bot file, collecting all problems across files, duplicate names included.

    `jobs` processes share the files (default: one per 10 files, at most one per core); the
    report is the same whatever the number. A server keeps the `BotRegistry` instead, to
    load again only what changes.
    """
    return BotRegistry(paths, env).load(jobs)
