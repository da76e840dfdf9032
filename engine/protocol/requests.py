"""Poe's request bodies, parsed leniently: unknown keys, roles and content types are ignored."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import EngineError

# Names seed-style clients use for the real request types.
TYPE_ALIASES = {"message": "query", "settings_update": "settings", "error": "report_error"}
REPORT_TYPES = frozenset({"report_feedback", "report_reaction", "report_error"})
KNOWN_ROLES = frozenset({"system", "user", "bot", "tool"})


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """`"parameters": null` and the like mean "not given": the protocol says be lenient."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Attachment(_Lenient):
    """A file the user attached."""

    url: str = ""
    content_type: str = ""
    name: str = ""
    parsed_content: str | None = None


class Message(_Lenient):
    """One message of the conversation Poe resends on every query."""

    role: str
    content: str = ""
    content_type: str = "text/markdown"
    message_id: str = ""
    timestamp: int = 0
    attachments: list[Attachment] = Field(default_factory=list)
    metadata: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class QueryRequest(_Lenient):
    """A `query`: the whole visible conversation, newest message last."""

    type: Literal["query"] = "query"
    version: str = ""
    query: list[Message]
    user_id: str = ""
    conversation_id: str = ""
    message_id: str = ""
    metadata: str = ""
    language_code: str = "en"


class RequestError(EngineError):
    """A request we cannot parse; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request, or a RequestError saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # `[[[[...` within the size limit would otherwise be a 500
        raise RequestError("the request body is nested too deeply to be a Poe request") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


def request_type(data: dict[str, Any]) -> str:
    """The request's `type`, aliases mapped to the real protocol names."""
    kind = data.get("type")
    if not isinstance(kind, str):
        raise RequestError("the request has no `type` (query, settings, report_*)")
    return TYPE_ALIASES.get(kind, kind)


def parse_query(data: dict[str, Any]) -> QueryRequest:
    """A query with the messages of unknown roles dropped, as the protocol asks."""
    try:
        request = QueryRequest.model_validate({**data, "type": "query"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RequestError(f"invalid query: {where}: {first['msg']}") from None
    known = [message for message in request.query if message.role in KNOWN_ROLES]
    return request.model_copy(update={"query": known})
