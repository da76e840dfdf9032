"""Files the playground's user attaches: kept on disk until the server stops, served back at
`/play/files/<id>/<name>` so a bot (or a model) can read them as it would read Poe's.

The folder is made when the app is built, in the gunicorn master, so a worker started by
a reload still serves the files uploaded before it; the master removes it at exit (a
worker, which runs the same exit handlers, must not).
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Besides text/*: what Poe's `expand_text_attachments` reads as text too.
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/javascript",
        "application/x-sh",
        "application/csv",
    }
)


class TooLarge(ValueError):
    """The upload is over MAX_UPLOAD_BYTES."""


def make_folder() -> Path:
    """A private folder for this server's uploads, removed when the creating process ends."""
    folder = Path(tempfile.mkdtemp(prefix="engine-play-files-"))
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked worker: the master still serves them
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def store(folder: Path, upload: FileStorage, base_url: str) -> dict[str, Any]:
    """Save the upload; the Attachment the browser puts on the user's message."""
    name = secure_filename(upload.filename or "") or "file"
    file_id = secrets.token_urlsafe(16)
    (folder / file_id).mkdir()
    path = folder / file_id / name
    upload.save(path)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        shutil.rmtree(folder / file_id, ignore_errors=True)
        raise TooLarge(f"the file is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    content_type = upload.mimetype or "application/octet-stream"
    return {
        "url": f"{base_url}play/files/{file_id}/{name}",
        "content_type": content_type,
        "name": name,
        "parsed_content": _text_of(path, content_type),
    }


def _text_of(path: Path, content_type: str) -> str | None:
    """A text file's UTF-8 text, as Poe's parsed_content gives it; None for anything else."""
    if not (content_type.startswith("text/") or content_type in _TEXT_TYPES):
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
