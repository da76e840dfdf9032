"""The bots of a folder, kept current as its files change: what a running server reloads.

The registry remembers, per file, its stat signature, the bot it last loaded without
errors, and its current problems. `refresh()` loads again only the files whose signature
changed, and applies the last-good rule: an edit with errors leaves the file's previous bot
answering (its errors are recorded), a new broken file serves nothing, and a bot name taken
by another file is an error on the file that took it last. Other files are never touched.

Only the first `load()` shares the files among processes (`fork_map`). A reload runs in
gunicorn's master, whose SIGCHLD handler reaps any child that exits, a loading process
included; one changed file is cheaper to load than a fork anyway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..compiled import CompiledBot
from ..errors import SpecError, place
from .files import LoadedFile, bot_files, duplicate_name, load_file
from .parallel import default_jobs, fork_map

# A file written this recently may be written again within the same tick of the kernel's
# file clock (up to 10 ms), keeping its size and times: it is read again at the next
# refresh, and its digest tells whether it changed.
RACY_NS = 25_000_000


@dataclass
class LoadReport:
    """Every bot that loaded, and every problem found, errors and warnings alike."""

    bots: dict[str, CompiledBot] = field(default_factory=dict)
    problems: list[SpecError] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[SpecError]:
        return sorted((p for p in self.problems if not p.is_warning), key=place)

    @property
    def warnings(self) -> list[SpecError]:
        return sorted((p for p in self.problems if p.is_warning), key=place)


@dataclass(frozen=True)
class Signature:
    """What stat says of a file: any edit, replacement or `touch` changes one of these."""

    mtime_ns: int
    size: int
    inode: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> Signature | None:
        """None when the file cannot be stat'ed (gone, or never there)."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns)


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh changed: bot names for added and removed, files for the rest."""

    added: tuple[str, ...] = ()  # bots answering now that did not before
    updated: tuple[str, ...] = ()  # files whose new version now answers
    removed: tuple[str, ...] = ()  # bots no longer answering
    kept_last_good: tuple[str, ...] = ()  # files with errors whose last good bot answers
    not_served: tuple[str, ...] = ()  # files with errors and no bot answering
    deleted: tuple[str, ...] = ()  # files gone, whether or not they served a bot
    # The current problems of every file loaded again, errors and warnings.
    problems: Mapping[str, tuple[SpecError, ...]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.deleted or self.problems)


@dataclass
class _Entry:
    signature: Signature | None = None
    digest: bytes | None = None
    served: CompiledBot | None = None  # the last bot loaded without errors: it answers
    problems: list[SpecError] = field(default_factory=list)  # of the last load
    # Loaded without errors, but its name belongs to another file: it answers once free.
    waiting: CompiledBot | None = None
    clash: SpecError | None = None

    @property
    def current_problems(self) -> list[SpecError]:
        return self.problems + ([self.clash] if self.clash else [])


class BotRegistry:
    """Every bot file under `paths` (folders and files), with its last good bot."""

    def __init__(self, paths: Iterable[str | Path], env: Mapping[str, str] | None = None) -> None:
        self._paths = [Path(path) for path in paths]
        self._environ = dict(os.environ if env is None else env)
        self._entries: dict[Path, _Entry] = {}

    def load(self, jobs: int | None = None) -> LoadReport:
        """The first load, shared among `jobs` processes (default: one per 10 files, at most
        one per core); the report is the same whatever the number."""
        files = bot_files(self._paths)
        self._update(files, jobs or default_jobs(len(files)))
        return LoadReport(self.bots, self.problems, len(files))

    def refresh(self) -> RefreshReport:
        """Load again, in this process, the files whose signature changed; drop deleted ones."""
        before = self.bots
        files = bot_files(self._paths)
        listed = set(files)
        deleted = [path for path in self._entries if path not in listed]
        for path in deleted:
            del self._entries[path]
        changed = self._update(files, 1)
        return self._report(before, changed, deleted)

    @property
    def paths(self) -> list[Path]:
        """The folders and files given, as given."""
        return list(self._paths)

    @property
    def bots(self) -> dict[str, CompiledBot]:
        """The bots answering, by name, in file order."""
        return {e.served.name: e.served for e in self._entries.values() if e.served is not None}

    @property
    def problems(self) -> list[SpecError]:
        """Every file's current problems, in file order."""
        return [problem for entry in self._entries.values() for problem in entry.current_problems]

    def _update(self, files: list[Path], jobs: int) -> list[Path]:
        """Load the new and changed files among `files` and apply them; the files whose
        text changed (a rewrite with the same text changes nothing)."""
        racy_after = time.time_ns() - RACY_NS
        signatures = {path: Signature.of(path) for path in files}
        stale = [path for path in files if self._is_stale(path, signatures[path])]
        loaded = fork_map(partial(load_file, environ=self._environ), stale, jobs)
        owners = {bot.name: path for path, entry in self._entries.items() if (bot := entry.served)}
        changed = []
        for path, result in zip(stale, loaded, strict=True):
            entry = self._entries.setdefault(path, _Entry())
            signature = signatures[path]
            racy = signature is not None and signature.mtime_ns >= racy_after
            entry.signature = None if racy else signature  # None: read again next time
            if entry.digest is not None and entry.digest == result.digest:
                continue
            self._apply(path, entry, result, owners)
            changed.append(path)
        self._entries = {path: self._entries[path] for path in files if path in self._entries}
        self._serve_waiting(owners)
        return changed

    def _is_stale(self, path: Path, signature: Signature | None) -> bool:
        entry = self._entries.get(path)
        return entry is None or signature is None or entry.signature != signature

    @staticmethod
    def _apply(path: Path, entry: _Entry, result: LoadedFile, owners: dict[str, Path]) -> None:
        """The last-good rule for one file loaded again."""
        entry.digest, entry.problems = result.digest, result.problems
        entry.waiting, entry.clash = None, None
        bot = result.bot
        if bot is None:
            return  # errors: the last good bot, if any, keeps answering
        owner = owners.get(bot.name)
        if owner is not None and owner != path:
            entry.waiting, entry.clash = bot, duplicate_name(bot, str(owner))
            return
        if entry.served is not None and owners.get(entry.served.name) == path:
            del owners[entry.served.name]
        entry.served, owners[bot.name] = bot, path

    def _serve_waiting(self, owners: dict[str, Path]) -> None:
        """A file refused for its name gets it once the file that had it lets it go."""
        for path, entry in self._entries.items():
            bot = entry.waiting
            if bot is None or (owners.get(bot.name) not in (None, path)):
                continue
            if entry.served is not None and owners.get(entry.served.name) == path:
                del owners[entry.served.name]
            entry.served, entry.waiting, entry.clash = bot, None, None
            owners[bot.name] = path

    def _report(
        self, before: Mapping[str, CompiledBot], changed: list[Path], deleted: list[Path]
    ) -> RefreshReport:
        after = self.bots
        files_before = {bot.file: name for name, bot in before.items()}
        updated: list[str] = []
        kept: list[str] = []
        not_served: list[str] = []
        for path in changed:
            entry = self._entries[path]
            if any(not p.is_warning for p in entry.current_problems):
                (kept if entry.served is not None else not_served).append(str(path))
            elif entry.served is not None and files_before.get(str(path)) == entry.served.name:
                updated.append(str(path))
        return RefreshReport(
            added=tuple(name for name in after if name not in before),
            updated=tuple(updated),
            removed=tuple(name for name in before if name not in after),
            kept_last_good=tuple(kept),
            not_served=tuple(not_served),
            deleted=tuple(map(str, deleted)),
            problems={str(path): tuple(self._entries[path].current_problems) for path in changed},
        )
