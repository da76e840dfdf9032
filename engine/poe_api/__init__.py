"""Poe's own HTTP endpoints that a bot server calls: settings sync and file uploads.

Both base URLs come from the environment so that tests (and proxies) can stand in for
Poe; each defaults to the URL fastapi_poe uses. The two differ in host as they do in
fastapi_poe: settings live on api.poe.com, uploads on www.quora.com.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = [
    "API_URL_VAR",
    "DEFAULT_API_URL",
    "DEFAULT_UPLOAD_URL",
    "PROTOCOL_VERSION",
    "UPLOAD_URL_VAR",
    "api_url",
    "checked_base_url",
    "upload_url",
]

API_URL_VAR = "POE_API_URL"
DEFAULT_API_URL = "https://api.poe.com/bot/"
UPLOAD_URL_VAR = "POE_UPLOAD_URL"
DEFAULT_UPLOAD_URL = "https://www.quora.com/poe_api/"
PROTOCOL_VERSION = "1.2"  # the last part of the settings URLs, as fastapi_poe 0.0.83 sends


def api_url(environ: Mapping[str, str] = os.environ) -> str:
    """Base of `update_settings` (POE_API_URL, else Poe's), ending in `/`."""
    return checked_base_url(environ.get(API_URL_VAR) or DEFAULT_API_URL, API_URL_VAR)


def upload_url(environ: Mapping[str, str] = os.environ) -> str:
    """Base of the file upload endpoint (POE_UPLOAD_URL, else Poe's), ending in `/`."""
    return checked_base_url(environ.get(UPLOAD_URL_VAR) or DEFAULT_UPLOAD_URL, UPLOAD_URL_VAR)


def checked_base_url(url: str, name: str) -> str:
    """The URL with one trailing `/`; ValueError naming `name` when it cannot be called.

    The trailing slash matters: paths are appended to it (fastapi_poe's `base_url` needs
    one too, and without it the last segment would be replaced)."""
    try:
        parsed = urlsplit(url.strip())
        parsed.port  # noqa: B018 (reading it checks it)
    except ValueError as exc:
        raise ValueError(f"{name}: {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{name}: {url!r} must start with http:// or https:// and name a host")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError(f"{name}: {url!r} must have no query, fragment, user or password")
    return parsed.geturl().rstrip("/") + "/"
