"""Deployment settings, read from the environment in one typed object."""

from __future__ import annotations

import ipaddress
import sys
import textwrap
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What a deployment sets; a mistyped variable fails at start-up with its name."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    host: str = Field(
        "127.0.0.1",
        description="Address to bind; off loopback (0.0.0.0 is every interface) every bot "
        "needs an access key.",
    )
    port: int = Field(8080, ge=0, le=65535, description="Port to bind.")
    bots_dir: Path = Field(Path("bots"), description="Folder of bot files.")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Larger request bodies get HTTP 413."
    )
    # Not one per core: in a container the cores Python sees are the host's, not its CPU
    # quota, and every worker holds all the bots. Two is what bench/ measures on two cores.
    web_concurrency: int = Field(
        2, ge=1, description="Worker processes; set it to the number of cores the server may use."
    )
    load_jobs: int | None = Field(
        None,
        ge=1,
        description="Processes loading the bots at start; default: one per 10 bot files, at "
        "most one per core.",
    )
    worker_connections: int = Field(10_000, ge=1, description="Open connections per worker.")
    graceful_timeout: int = Field(
        30, ge=1, description="Seconds open answers get to finish on SIGTERM."
    )
    request_read_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds a client gets to send a whole request, headers and body, from "
        "its first byte.",
    )
    keepalive_seconds: float = Field(
        10.0, gt=0, le=60, description="Seconds of model silence before a keep-alive comment."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error."
    )
    log_format: Literal["text", "json", "auto"] = Field(
        "text",
        description="text (one readable line per event), json (one JSON object per line, for "
        "a log collector) or auto (json when standard error is not a terminal).",
    )
    log_messages: bool = Field(
        False,
        description="Put what the user wrote in each request's log line (off: never logged).",
    )
    metrics: bool = Field(
        True,
        description="Serve Prometheus metrics at GET /metrics, every worker counted; off "
        "loopback only with METRICS_TOKEN.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, GET /metrics needs 'Authorization: Bearer <token>'; needed for "
        "/metrics off loopback (unset there: 403).",
    )
    # A secret: the URL may hold Redis's password. Logs show `Store.description` (redacted).
    redis_url: SecretStr | None = Field(
        None,
        description="Redis for rate limits and remembered vars, shared by every machine "
        "(redis://, rediss:// or redis+unix://); unset: a file in STATE_DIR, shared by this "
        "server's workers.",
    )
    state_dir: Path = Field(
        Path(".state"),
        description="Folder on a local disk holding rate-limit counts and remembered vars "
        "when REDIS_URL is unset.",
    )

    playground: bool = Field(
        False,
        description="Serve the browser playground at /play/ beside the bots (python -m engine "
        "play turns it on); it talks to every bot with the bot's own key.",
    )
    playground_token: SecretStr | None = Field(
        None,
        description="Needed for the playground off loopback: a browser opens /play/?token=... "
        "once; unset, the playground answers only on loopback.",
    )

    @property
    def json_logs(self) -> bool:
        """Whether log lines are JSON objects (LOG_FORMAT json, or auto off a terminal)."""
        if self.log_format == "auto":
            return not sys.stderr.isatty()
        return self.log_format == "json"

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def describe_invalid(exc: ValidationError) -> str:
    """`PORT: got 'abc'; input should be a valid integer`, one line per bad variable."""
    return "; ".join(
        f"{str(error['loc'][0]).upper()}: got {error.get('input')!r}; "
        f"{error['msg'][0].lower()}{error['msg'][1:]}"
        for error in exc.errors()
    )


def describe_settings(width: int = 100) -> str:
    """Every setting as `VARIABLE  default  meaning`, from the fields, so it cannot drift."""
    rows = [
        (name.upper(), _shown(field.default), field.description)
        for name, field in Settings.model_fields.items()
    ]
    names = max(len(row[0]) for row in rows) + 2
    defaults = max(len(row[1]) for row in rows) + 2
    indent = " " * (2 + names + defaults)
    return "\n".join(
        textwrap.fill(
            description or "",
            width,
            initial_indent=f"  {name:<{names}}{default:<{defaults}}",
            subsequent_indent=indent,
        )
        for name, default, description in rows
    )


def _shown(default: object) -> str:
    if default is None:
        return "-"
    return format(default, "g") if isinstance(default, float) else str(default)
