"""Uploading a file to Poe for an answer, as fastapi_poe's `post_message_attachment` does.

fastapi_poe 0.0.83 (`upload_file`) POSTs a multipart body with one part, `file`, to
`<base>file_upload_3RD_PARTY_POST`, the bot's access key as the raw `Authorization` header
(no "Bearer"); Poe answers `attachment_url` and `mime_type`, and the bot then sends a
`file` event with them (an inline reference is the bot's own choice). The request goes
through engine.outbound, allowed to reach the configured base URL's host and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EngineError
from . import upload_url

ENDPOINT = "file_upload_3RD_PARTY_POST"
TIMEOUT = 60.0  # seconds for the whole upload; Poe's limit per file is 50 MB
MAX_ANSWER = 64 * 1024  # Poe answers a few hundred bytes of JSON


@dataclass(frozen=True)
class Upload:
    """One file to upload for the answer to `message_id`."""

    access_key: str
    message_id: str
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Uploaded:
    """Where Poe keeps the file, and its reference if Poe gave one."""

    url: str
    content_type: str
    inline_ref: str | None = None


class UploadError(EngineError):
    """Poe did not take the file; the text says why (never the key)."""


def upload(request: Upload, base_url: str | None = None) -> Uploaded:
    """Send the file to Poe; UploadError when Poe refuses it or cannot be reached.

    One try: the upload is a POST, and the user's retry (the error allows one) is the
    second. `base_url` defaults to POE_UPLOAD_URL, else Poe's."""
    import httpx  # with engine.outbound: only for bots that send files

    from ..outbound import CallError, HostPolicy, OutboundRequest, fetch
    from ..outbound.urls import Origin

    try:
        endpoint = httpx.URL((base_url or upload_url()) + ENDPOINT)
    except ValueError as exc:  # POE_UPLOAD_URL is wrong: say so in the logs
        raise UploadError(str(exc)) from None
    multipart = httpx.Request(
        "POST", endpoint, files={"file": (request.name, request.data, request.content_type)}
    )
    outbound = OutboundRequest(
        "POST",
        str(endpoint),
        headers={
            "Authorization": request.access_key,
            "Content-Type": multipart.headers["Content-Type"],
        },
        body=multipart.read(),
        timeout=TIMEOUT,
        max_bytes=MAX_ANSWER,
        retries=0,
        max_redirects=0,
        origin=Origin.of(endpoint),
    )
    policy = HostPolicy.from_entries([endpoint.host])
    try:
        return _uploaded(fetch(outbound, policy).json())
    except CallError as exc:
        raise UploadError(f"uploading {request.name!r} to Poe failed: {exc}") from None


def _uploaded(answer: Any) -> Uploaded:
    if not isinstance(answer, dict):
        raise UploadError(f"Poe's answer to the upload is not a JSON object: {answer!r:.200}")
    url, mime_type = answer.get("attachment_url"), answer.get("mime_type")
    if not isinstance(url, str) or not url or not isinstance(mime_type, str):
        raise UploadError(f"Poe's answer has no attachment_url and mime_type: {answer!r:.200}")
    ref = answer.get("inline_ref")
    return Uploaded(url, mime_type, ref if isinstance(ref, str) and ref else None)
