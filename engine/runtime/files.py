"""`files:` of a reply: each rendered, uploaded when it is a template's text, and turned
into `file` events sent before the reply's text (as fastapi_poe sends them, §3.3)."""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..compiled import CompiledFile
from ..errors import RunError
from ..poe_api.upload import Upload, Uploaded, UploadError
from ..protocol.events import File
from ..templates import Renderable

if TYPE_CHECKING:
    from .scope import Scope

log = logging.getLogger("engine.runtime")

# Uploads a file for an answer: engine.poe_api.upload.upload, or `preview` (tests, chat).
Uploader = Callable[[Upload], Uploaded]
MAX_FILE_BYTES = 10 * 1024 * 1024  # a template's text; Poe takes 50 MB, a chat answer less
NOT_SENT = "Sorry, this bot could not attach {name}. Please try again."


def upload(request: Upload) -> Uploaded:
    """engine.poe_api.upload.upload, imported at the first upload: it brings httpx."""
    from ..poe_api.upload import upload as poe_upload

    return poe_upload(request)


def preview(request: Upload) -> Uploaded:
    """No upload: the file as a `data:` URL, for `engine test`, `engine chat` and bots
    without an access key (served on loopback only, so never to Poe)."""
    encoded = base64.b64encode(request.data).decode("ascii")
    return Uploaded(f"data:{request.content_type};base64,{encoded}", request.content_type)


def attach(
    files: Iterable[CompiledFile],
    context: dict[str, Any],
    access_key: str | None,
    message_id: str,
    uploader: Uploader,
) -> tuple[list[Attached], dict[str, dict[str, Any]]]:
    """Each file rendered (and uploaded), in order, and the `files` the reply reads.

    Raises RunError on a template that fails, a URL that is not http(s), or a failed
    upload (the user may retry: nothing was sent yet)."""
    attached: list[Attached] = []
    for index, file in enumerate(files):
        attached.append(_one(file, index, context, access_key, message_id, uploader))
    return attached, {item.name: item.document() for item in attached}


@dataclass(frozen=True, slots=True)
class Attached:
    """One file ready to send: a `file` event's fields."""

    url: str
    content_type: str
    name: str
    inline_ref: str | None

    def event(self) -> File:
        return File(self.url, self.content_type, self.name, self.inline_ref)

    def document(self) -> dict[str, Any]:
        """What the reply's template reads as `files[name]`."""
        return {
            "name": self.name,
            "url": self.url,
            "content_type": self.content_type,
            "ref": self.inline_ref,
        }


def _one(
    file: CompiledFile,
    index: int,
    context: dict[str, Any],
    access_key: str | None,
    message_id: str,
    uploader: Uploader,
) -> Attached:
    ref = _inline_ref(message_id, index) if file.inline else None
    if file.url is not None:
        url = file.url.render(context).strip()
        if urlsplit(url).scheme not in ("http", "https"):
            detail = f"{file.loc}.url: rendered {url[:100]!r}, not an http(s) URL"
            raise RunError(NOT_SENT.format(name=file.name or "a file"), detail)
        name = file.name or _name_of(url)
        return Attached(
            url, file.content_type or _guess(name, "application/octet-stream"), name, ref
        )
    assert file.content is not None and file.name is not None
    data = file.content.render(context).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        detail = f"{file.loc}.template: {len(data):,} bytes, more than {MAX_FILE_BYTES:,}"
        raise RunError(NOT_SENT.format(name=file.name), detail)
    content_type = file.content_type or _guess(file.name, "text/plain")
    send = uploader if access_key else preview
    try:
        done = send(Upload(access_key or "", message_id, file.name, content_type, data))
    except UploadError as exc:
        raise RunError(
            NOT_SENT.format(name=file.name), f"{file.loc}: {exc}", allow_retry=True
        ) from None
    return Attached(
        done.url,
        done.content_type or content_type,
        file.name,
        (done.inline_ref or ref) if file.inline else None,
    )


def _inline_ref(message_id: str, index: int) -> str:
    """Eight letters and digits, as fastapi_poe's, the same for a message's file on every
    server (so an answer is reproducible), different from one message to the next."""
    digest = hashlib.sha256(f"{message_id}\0{index}".encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:8].lower()


def _name_of(url: str) -> str:
    """The URL's last path segment, as fastapi_poe's `get_filename_from_url`."""
    return unquote(posixpath.basename(urlsplit(url).path)) or "file"


def _guess(name: str, default: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or default


def reply_parts(
    scope: Scope, files: tuple[CompiledFile, ...], reply: Renderable
) -> tuple[list[File], str]:
    """A reply's `file` events and its text, which reads them as `files`: both are ready
    before anything is sent, so a failure never follows half an answer."""
    if not files:
        return [], reply.render(scope.context)
    attached, documents = attach(
        files, scope.context, scope.bot.access_key, scope.request.message_id, scope.uploader
    )
    text = reply.render({**scope.context, "files": documents})
    return [item.event() for item in attached], text
