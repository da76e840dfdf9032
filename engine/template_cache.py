"""A disk cache of compiled templates, like Python's `__pycache__` for bot files.

Compiling Jinja templates is most of the time it takes to load a bots folder (about
0.6 ms per template; a large folder has thousands). A template's compiled code depends
only on its text, the prompt names it may include, the context names, and the Jinja and
Python versions, so it is stored under a hash of exactly those: an unchanged template is
never compiled twice, across restarts, workers and `validate` runs. Only templates that
passed every load-time check are stored, so a hit needs no re-check. Any problem with the
cache (unwritable folder, damaged file) only costs the speed-up, never a load.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import CodeType

import jinja2

log = logging.getLogger("engine.templates")

# Bump when the engine changes how it generates or checks templates.
CACHE_FORMAT = "1"
DISABLED = ("off", "0", "false", "no")


class TemplateCache:
    """Compiled template code in one folder, one file per template."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writable = True
        self._salt = "\0".join(
            (CACHE_FORMAT, jinja2.__version__, sys.implementation.cache_tag or sys.version)
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TemplateCache | None:
        """ENGINE_CACHE_DIR, or ~/.cache/poe-yaml-bots; `off` turns the cache off."""
        setting = environ.get("ENGINE_CACHE_DIR", "")
        if setting.lower() in DISABLED:
            return None
        if setting:
            return cls(Path(setting))
        base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(base) / "poe-yaml-bots")

    def key(self, source: str, prompt_names: Iterable[str], context_names: Iterable[str]) -> str:
        parts = (self._salt, source, "\0".join(prompt_names), "\0".join(context_names))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def load(self, key: str) -> CodeType | None:
        try:
            code = marshal.loads((self.folder / key[:2] / key).read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        return code if isinstance(code, CodeType) else None

    def store(self, key: str, code: CodeType) -> None:
        if not self._writable:
            return
        target = self.folder / key[:2] / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader (another worker) never sees half a file.
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(handle, "wb") as file:
                file.write(marshal.dumps(code))
            os.replace(temporary, target)
        except OSError as exc:
            self._writable = False
            log.warning(
                "template cache %s is not writable (%s); loading without it", self.folder, exc
            )
