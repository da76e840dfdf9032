"""The bot's access key, read from the variable its file names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..errors import SpecError
from ..spec._base import ENV_REF
from .locate import position
from .yaml_marks import MarkedDocument

# Poe's access keys have 32 characters; a key much shorter than that can be guessed.
MIN_ACCESS_KEY_LENGTH = 16


class AccessKey(NamedTuple):
    value: str | None  # None when the file names no variable, or it is unset or blank
    variable: str | None


def access_key(
    written: str | None, document: MarkedDocument, file: str, environ: Mapping[str, str]
) -> tuple[AccessKey, list[SpecError]]:
    """The key from the `${VARIABLE}` written, stripped: HTTP strips the header Poe sends it
    in, so a key kept with a stray newline or space could never match. A missing or short
    key is a warning: the bot still runs, on a loopback address."""
    match = ENV_REF.match(written or "")
    if match is None:
        return AccessKey(None, None), []
    variable = match.group(1)
    raw = environ.get(variable, "")
    value = raw.strip() or None
    problem = _key_problem(variable, raw, value)
    if problem is None:
        return AccessKey(value, variable), []
    message, hint = problem
    mark = position(document, ("access_key",))
    warning = SpecError(
        message, file, mark.line, mark.column, "access_key", hint, severity="warning"
    )
    return AccessKey(value, variable), [warning]


def is_weak(key: str) -> bool:
    """A key short enough to guess: served on loopback only, like no key at all."""
    return len(key) < MIN_ACCESS_KEY_LENGTH


def _key_problem(variable: str, raw: str, value: str | None) -> tuple[str, str] | None:
    if value is None:
        message = f"environment variable {variable} is " + ("blank" if raw else "not set")
        return message, "without a key the bot is served only on a loopback address"
    if is_weak(value):
        return (
            f"environment variable {variable} holds a {len(value)}-character key; "
            f"use at least {MIN_ACCESS_KEY_LENGTH} characters (Poe's own keys have 32)",
            "a short key can be guessed; it is served only on a loopback address",
        )
    return None
