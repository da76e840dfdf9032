"""How the server's log lines look: text for a person, JSON for a log collector, and in
either case never a secret.

`configure` sets the root handler the engine's loggers write to; gunicorn's own lines
(`Booting worker`, `Listening at`) go through `GunicornLogger`, which uses the same
formatter, so with `LOG_FORMAT=json` every line on standard error is one JSON object.

Secrets are kept out first by not logging them (access keys, API keys and Redis URLs are
never passed to a logger); `Redacting` is the safety net under that: it knows the values
of the secrets configured (every `${VAR}` a bot file names, every variable whose name
says it is a key, token, secret or password, Redis's password) and replaces any of them
found in a formatted line, as written or JSON-escaped, by `[redacted]`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from gunicorn.glogging import Logger as _GunicornBase
from pythonjsonlogger.json import JsonFormatter

from .settings import Settings

__all__ = [
    "REDACTED",
    "GunicornLogger",
    "LineHandler",
    "Redacting",
    "configure",
    "hold_lines",
    "release_lines",
    "secret_values",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# Shorter values are left alone: redacting `en` or `1` would garble every line, and a
# secret that short protects nothing anyway.
MIN_SECRET_LENGTH = 6
# Variables whose values are secrets whether or not a bot file names them.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The standard fields of a JSON line, named as log collectors expect them.
_RENAMED = {"levelname": "level", "name": "logger"}


class Redacting(logging.Formatter):
    """Another formatter's lines with every known secret value replaced by `[redacted]`.

    Works on the finished line, so whatever carried the secret (the message, its
    arguments, an exception's traceback, a JSON field) is covered. A line without any
    secret, the usual case, costs one substring search per secret.
    """

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        # One box shared with the formatters made by `around`: `protect` reaches them too.
        self._needles: list[tuple[str, ...]] = [()]
        self.protect(secrets)

    def protect(self, secrets: Iterable[str]) -> None:
        """Add secret values to look for: each as written and as JSON escapes it."""
        found = set(self._needles[0])
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                found.add(secret)
                found.add(json.dumps(secret)[1:-1])
                found.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        # Longest first, so a secret that contains another is replaced whole.
        self._needles[0] = tuple(sorted(found, key=len, reverse=True))

    def around(self, inner: logging.Formatter) -> Redacting:
        """Another formatter, redacting the same secrets."""
        wrapped = Redacting(inner)
        wrapped._needles = self._needles
        return wrapped

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for needle in self._needles[0]:
            if needle in line:
                line = line.replace(needle, REDACTED)
        return line


def formatter(json_lines: bool) -> logging.Formatter:
    """The formatter of one line: `TEXT_FORMAT`, or a JSON object holding the same
    fields plus whatever the call passed in `extra` (the request lines' fields)."""
    if not json_lines:
        return _TextLines(TEXT_FORMAT)
    return _JsonLines(
        "{levelname}{name}{message}",
        style="{",
        rename_fields=_RENAMED,
        timestamp="time",  # ISO 8601 in UTC, as collectors parse it
        json_ensure_ascii=False,
    )


FIELDS = "_fields"  # the `extra` key of a line's own fields (engine/web/poe.py)


class _TextLines(logging.Formatter):
    """The standard formatter, its `asctime` made once per second: every line of a second
    shares its date and time but the milliseconds, and `time.strftime` was a fifth of a
    request line's formatting."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        msec_format = self.default_msec_format
        if datefmt is not None or msec_format is None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, time.localtime(second)))
        return msec_format % (self._second[1], record.msecs)


class _JsonLines(JsonFormatter):
    """python-json-logger's formatter, adding a request line's fields faster: they come as
    one dict (`extra={FIELDS: {...}}`), added as they are, where the library would look
    through each of the record's 40-odd attributes for extras (a quarter of a line's cost,
    and the lines are written once per request)."""

    def format(self, record: logging.LogRecord) -> str:
        """A request line's JSON: what the library's `format` makes of it (no exception,
        stack or dict message to add), without the steps that find nothing to do, and
        serialized by orjson (a JSON request line cost 35 µs with the standard encoder,
        27 µs with orjson, in a batch of 100 under gevent; bench/README.md)."""
        fields = record.__dict__.get(FIELDS)
        if (
            fields is None
            or isinstance(record.msg, dict)
            or record.exc_info
            or record.exc_text
            or record.stack_info
            or "asctime" in self._required_fields
        ):
            return super().format(record)
        record.message = record.getMessage()
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, {})
        log_data = self.process_log_record(log_data)
        if not self.prefix:
            # The fields are plain strings, numbers, None and lists of strings, which
            # orjson writes in a fifth of the standard encoder's time (without spaces
            # after `:` and `,`); what it refuses (a lone surrogate) goes the usual way.
            try:
                return orjson.dumps(log_data).decode()
            except orjson.JSONEncodeError:
                pass
        return self.serialize_log_record(log_data)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        fields = record.__dict__.get(FIELDS)
        if fields is None:
            super().add_fields(log_data, record, message_dict)
            return
        names = self.__dict__.get("_names")
        if names is None:  # the fields of `fmt`, each under the name the line gives it
            names = self._names = [(self._get_rename(f), f) for f in self._required_fields]
        attributes = record.__dict__
        for name, field in names:
            log_data[name] = attributes.get(field)
        log_data.update(fields)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """The library's `json.dumps(..., cls=..., default=...)` with its encoder made once,
        not per line (building it was a third of serializing a request line)."""
        if self.json_serializer is not json.dumps:
            return super().jsonify_log_record(log_data)
        encoder = self.__dict__.get("_encoder")
        if encoder is None:
            encoder = self._encoder = (self.json_encoder or json.JSONEncoder)(
                default=self.json_default,
                indent=self.json_indent,
                ensure_ascii=self.json_ensure_ascii,
            )
        return str(encoder.encode(log_data))


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard stream handler, which can hold its lines for a moment: the request
    lines of one turn of the event loop (engine/web/poe.py) then leave in one `write`.

    Standard error is line-buffered, so each line written alone is a system call of its
    own; held, a batch of them is one. Everything else is the standard handler's: its
    level, filters, formatter (the redaction with it) and lock, line by line.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        held = self._held
        if held is None:
            super().emit(record)
            return
        try:
            held.append(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as the standard handler: report, go on
            self.handleError(record)

    def hold(self) -> None:
        if self._held is None:
            self._held = []

    def write_held(self) -> None:
        """Write the held lines at once, and hold no more (`release` is the lock's)."""
        held, self._held = self._held, None
        if not held:
            return
        self.acquire()
        try:
            self.stream.write("".join(held))
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a log that cannot be written must not stop serving
            if logging.raiseExceptions:
                sys.stderr.write(f"--- Logging error ---\n{sys.exc_info()[1]!r}\n")
        finally:
            self.release()


def hold_lines() -> list[LineHandler]:
    """Hold the lines of the root's `LineHandler`s until `release_lines`."""
    held = [h for h in logging.getLogger().handlers if isinstance(h, LineHandler)]
    for handler in held:
        handler.hold()
    return held


def release_lines(held: list[LineHandler]) -> None:
    """Write what `hold_lines` held, one write per handler."""
    for handler in held:
        handler.write_held()


# Set by `configure` in the master, before the workers fork: gunicorn's logger and the
# request lines read them.
_formatter: Redacting = Redacting(logging.Formatter(TEXT_FORMAT))
_json_lines = False


def json_lines() -> bool:
    """Whether the request lines carry their fields as JSON (LOG_FORMAT json)."""
    return _json_lines


def configure(
    settings: Settings, environ: Mapping[str, str] | None = None, stream: Any = None
) -> Redacting:
    """Send every log record to standard error (or `stream`) in the configured format,
    with the configured secrets redacted; returns the formatter (more secrets may be
    added to it once the bots are loaded)."""
    global _formatter, _json_lines
    environ = os.environ if environ is None else environ
    _json_lines = settings.json_logs
    _formatter = Redacting(formatter(_json_lines), secret_values(settings, environ))
    handler = LineHandler(stream or sys.stderr)
    handler.setFormatter(_formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # warnings.warn lines in the same format
    # No line shows the thread or the process's name, so records do not look them up
    # (logging's documented switches): under gevent each request is a greenlet of its own,
    # for which `threading.current_thread()` makes a dummy thread object, about 8 µs of
    # a request line's record. The pid stays: gunicorn's text lines show it.
    logging.logThreads = False
    logging.logMultiprocessing = False
    return _formatter


def secret_values(settings: Settings, environ: Mapping[str, str]) -> set[str]:
    """Every value a log line must never show: the variables the bot files name as
    `${VAR}` (access keys, API keys, call headers), the variables named like a key,
    token, secret or password, and the password in REDIS_URL."""
    names = {name for name in environ if SECRET_NAME.search(name)}
    names |= _referenced(settings.bots_dir)
    values = {environ[name] for name in names if environ.get(name)}
    for secret in (settings.metrics_token, settings.playground_token):
        if secret is not None:
            values.add(secret.get_secret_value())
    if settings.redis_url is not None:  # the URL itself is logged, its password masked
        url = settings.redis_url.get_secret_value()
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            values.add(password)
    return values


def _referenced(folder: Path) -> set[str]:
    """The `${VAR}` names written in the bot files under `folder`."""
    names: set[str] = set()
    if not folder.is_dir():
        return names
    for path in folder.rglob("*"):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                names.update(ENV_REFERENCE.findall(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError):
                continue  # the loader reports unreadable files
    return names


class GunicornLogger(_GunicornBase):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, its lines redacted as the engine's are: with LOG_FORMAT=json in
    the engine's JSON; as text in its own `[time] [pid] [LEVEL] message` format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            inner = handler.formatter or logging.Formatter()
            handler.setFormatter(_formatter if _json_lines else _formatter.around(inner))
