"""A call as values: what to send, what came back, and why it failed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ..errors import EngineError
from .urls import Origin

CallErrorKind = Literal[
    "refused_host",  # the URL's host (or a redirect's) is not in allow_hosts, or moved
    "refused_address",  # the host resolved to a private address that is not listed
    "bad_request",  # the request cannot be sent: URL, method, header or body
    "timeout",  # no whole answer within `timeout` seconds
    "connect",  # could not connect, or the connection failed or broke HTTP
    "status",  # the answer's status is not 2xx (`status` holds it)
    "too_large",  # the answer is longer than `max_bytes`
    "bad_json",  # the answer is not JSON (raised by `OutboundResponse.json()`)
    "too_many_redirects",  # more than `max_redirects` redirects
]
RETRY_STATUSES = frozenset({502, 503, 504})
CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class OutboundRequest:
    """One call, its templates already rendered. Secrets belong in `headers` only."""

    method: str
    url: str  # every value filled into it passed through `quote_value`
    query: Mapping[str, str] = field(default_factory=dict)  # added to the URL's, encoded
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # sent as JSON; None sends no body; bytes (the engine's own) as they are
    timeout: float = 10.0  # seconds for each try: connecting, redirects and the whole answer
    max_bytes: int = 1 << 20  # the longest answer read (after gzip), in bytes
    retries: int = 2  # further tries, for GET, HEAD, PUT, DELETE and OPTIONS only
    max_redirects: int = 3  # 0: a redirect is an error
    origin: Origin | None = None  # `template_origin(url_template)`: the URL must call it

    def __post_init__(self) -> None:
        # The spec checks these ranges; this catches a wiring mistake (and never shows headers).
        limits = {"timeout": 0, "max_bytes": 0, "retries": -1, "max_redirects": -1}
        for name, below in limits.items():
            if not getattr(self, name) > below:
                raise ValueError(f"{name} must be above {below}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class OutboundResponse:
    """A 2xx answer, read whole (or, on a CallError of kind `status`, a non-2xx one)."""

    status: int
    headers: Mapping[str, str]  # names in lower case; a repeated header's values joined by ", "
    body: bytes
    method: str
    url: str  # the last one, after redirects; its query may hold secrets: do not log it
    elapsed: float  # seconds since `fetch` started, retries included

    @property
    def text(self) -> str:
        """The body decoded with its declared charset (UTF-8 if none), never failing."""
        match = CHARSET.search(self.headers.get("content-type", ""))
        try:
            return self.body.decode(match.group(1) if match else "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (None when it is empty); CallError `bad_json` if it is not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except RecursionError:
            reason = "it is nested too deeply"
        except ValueError as exc:
            reason = f"{exc}; it starts with {self.text[:40]!r}"
        host = httpx.URL(self.url).raw_host.decode("ascii")
        raise CallError("bad_json", f"the answer is not JSON ({reason})", self.method, host)


class CallError(EngineError):
    """A call without a usable answer. `kind` chooses the bot's error branch; the text,
    `METHOD host: what happened (how to fix it)`, is for the bot's creator and the logs."""

    def __init__(
        self,
        kind: CallErrorKind,
        detail: str,
        method: str,
        host: str,
        *,
        status: int | None = None,
        response: OutboundResponse | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.method = method
        self.host = host
        self.status = status  # the answer's status, for kind `status`
        self.response = response  # the non-2xx answer, when it was read
        self.tries = 1

    @property
    def retryable(self) -> bool:
        """Whether trying again may help (an idempotent call is retried only then)."""
        return self.kind in ("timeout", "connect") or self.status in RETRY_STATUSES

    def __str__(self) -> str:
        where = f"{self.method} {self.host}" if self.host else self.method
        tries = f" (after {self.tries} tries)" if self.tries > 1 else ""
        return f"{where}: {self.detail}{tries}"
