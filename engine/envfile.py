"""`.env`: the variables of `.env.example`, read from a file in the current folder.

`python app.py` and every `python -m engine` command read it first, the convention for
development; a variable already set in the environment wins over the file, so a real
deployment's settings are never overridden by a file left lying around. python-dotenv
reads it (quotes, `export`, comments, `${VAR}` expansion), as most Python tools do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv
from dotenv.parser import parse_stream

ENV_FILE = Path(".env")


@dataclass(frozen=True)
class EnvFile:
    """What reading the file did. Names only: a value may be a secret."""

    path: Path
    loaded: tuple[str, ...] = ()  # set from the file
    kept: tuple[str, ...] = ()  # already in the environment, which wins
    problems: tuple[str, ...] = ()  # lines or a file that could not be read

    @property
    def summary(self) -> str:
        text = f"read {_count(len(self.loaded))} from {self.path}"
        if self.kept:
            text += f" ({_count(len(self.kept))} already set in the environment, which wins)"
        return text


def load_env_file(path: Path = ENV_FILE) -> EnvFile | None:
    """Set the file's variables that the environment does not have; None without a file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return EnvFile(path, problems=(f"{path}: cannot read the file: {exc}",))
    bindings = list(parse_stream(io.StringIO(text)))
    problems = tuple(
        f"{path}:{binding.original.line}: cannot read this line, skipped "
        "(lines are NAME=value, # comments or blank)"
        for binding in bindings
        if binding.error
    )
    assigned = (b.key for b in bindings if b.key is not None and b.value is not None)
    names = list(dict.fromkeys(assigned))  # once each, in order
    before = set(os.environ)
    with _quiet("dotenv.main"):  # its warnings say what `problems` says, without the file
        load_dotenv(stream=io.StringIO(text), override=False)
    kept = tuple(name for name in names if name in before)
    loaded = tuple(name for name in names if name not in before and name in os.environ)
    return EnvFile(path, loaded, kept, problems)


def _count(count: int) -> str:
    return f"{count} variable{'' if count == 1 else 's'}"


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled
