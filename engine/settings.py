"""Deployment settings, read from the environment in one typed object."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What a deployment sets; a mistyped variable fails at start-up with its name."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind (HOST).")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (PORT).")
    bots_dir: Path = Field(Path("bots"), description="Folder of bot files (BOTS_DIR).")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted (MAX_BODY_BYTES)."
    )
    web_concurrency: int = Field(
        2, ge=1, description="Worker processes, one per core by default (WEB_CONCURRENCY)."
    )
    load_jobs: int | None = Field(
        None,
        ge=1,
        description="Processes loading the bots at start (LOAD_JOBS); default: one per 10 "
        "files, at most one per core.",
    )
    worker_connections: int = Field(
        10_000, ge=1, description="Open connections per worker (WORKER_CONNECTIONS)."
    )
    graceful_timeout: int = Field(
        30, ge=1, description="Seconds open answers get to finish on SIGTERM (GRACEFUL_TIMEOUT)."
    )
    request_read_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds a client gets to send a whole request, headers and body, from "
        "its first byte (REQUEST_READ_TIMEOUT).",
    )
    keepalive_seconds: float = Field(
        10.0, gt=0, le=60, description="Seconds of model silence before a keep-alive comment."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error (LOG_LEVEL)."
    )

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
