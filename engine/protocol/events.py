"""What a bot says, as plain values; encoders turn them into SSE or JSON.

`flush` (on `meta`, `text`, `replace_response` and `suggested_reply`) marks the last event
before the runtime waits for a model: the SSE writer sends everything gathered so far at
that point, and otherwise writes an answer in one piece. It is not part of an event's
identity, so `Text("a", flush=True) == Text("a")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Meta:
    """First event: how Poe should render the answer."""

    name: ClassVar[str] = "meta"
    content_type: str = "text/markdown"
    suggested_replies: bool = False
    refetch_settings: bool = False

    flush: bool = field(default=False, compare=False, repr=False)

    def data(self) -> dict[str, Any]:
        return {
            "content_type": self.content_type,
            "suggested_replies": self.suggested_replies,
            "refetch_settings": self.refetch_settings,
        }


@dataclass(frozen=True)
class Text:
    """A chunk appended to the visible answer."""

    name: ClassVar[str] = "text"
    text: str

    flush: bool = field(default=False, compare=False, repr=False)

    def data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True)
class Replace:
    """Replaces everything shown so far."""

    name: ClassVar[str] = "replace_response"
    text: str

    flush: bool = field(default=False, compare=False, repr=False)

    def data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True)
class Suggest:
    """One suggested-reply button."""

    name: ClassVar[str] = "suggested_reply"
    text: str

    flush: bool = field(default=False, compare=False, repr=False)

    def data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True)
class Data:
    """State Poe stores with this bot message and sends back later."""

    name: ClassVar[str] = "data"
    metadata: str

    def data(self) -> dict[str, Any]:
        return {"metadata": self.metadata}


@dataclass(frozen=True)
class File:
    """A file attached to the answer."""

    name: ClassVar[str] = "file"
    url: str
    content_type: str
    file_name: str
    inline_ref: str | None = None

    def data(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "content_type": self.content_type,
            "name": self.file_name,
            "inline_ref": self.inline_ref,
        }


@dataclass(frozen=True)
class Error:
    """Ends the answer with an error shown to the user."""

    name: ClassVar[str] = "error"
    text: str
    allow_retry: bool = False
    error_type: str | None = None

    def data(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"allow_retry": self.allow_retry, "text": self.text}
        if self.error_type is not None:
            payload["error_type"] = self.error_type
        return payload


@dataclass(frozen=True)
class KeepAlive:
    """Nothing to say yet: an SSE comment keeps Poe (and proxies) from timing out."""

    name: ClassVar[str] = "keepalive"

    def data(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Comment:
    """An SSE comment line carrying `text`: every client (Poe included) skips it. The
    playground reads one, the turn's trace, from its own server's answers."""

    name: ClassVar[str] = "comment"
    text: str

    def data(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Done:
    """Mandatory last event."""

    name: ClassVar[str] = "done"

    def data(self) -> dict[str, Any]:
        return {}


Event = Meta | Text | Replace | Suggest | Data | File | Error | KeepAlive | Comment | Done
