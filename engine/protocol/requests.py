"""Poe's request bodies, parsed leniently: unknown keys, roles and content types are ignored."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import EngineError
from ..text import clean_data, clean_text

# Names seed-style clients use for the real request types.
TYPE_ALIASES = {"message": "query", "settings_update": "settings", "error": "report_error"}
REPORT_TYPES = frozenset({"report_feedback", "report_reaction", "report_error"})
KNOWN_ROLES = frozenset({"system", "user", "bot", "tool"})
# A BCP 47 language tag: a 2-3 letter language, then up to six subtags (script, region...).
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,6}")


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
    # Poe's ids are about 30 characters; they key counters and remembered vars, so a
    # hand-made request cannot make them megabytes long.
    user_id: str = Field("", max_length=256)
    conversation_id: str = Field("", max_length=256)
    message_id: str = ""
    metadata: str = ""
    language_code: str = "en"

    @field_validator("language_code", mode="before")
    @classmethod
    def _bcp47_or_english(cls, value: Any) -> Any:
        """Poe sends a BCP 47 tag (`en`, `pt-BR`); templates may print it, so anything
        else, which only a hand-made request can send, is read as the default `en`."""
        if isinstance(value, str) and _LANGUAGE_TAG.fullmatch(value):
            return value
        return "en"


class RequestError(EngineError):
    """A request we cannot parse; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


# A surrogate written as a JSON escape (`\\ud800`), or as the raw bytes `json.loads` reads
# with `surrogatepass` (ED A0..BF xx). Rare, so the body is searched before its data is walked.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request, or a RequestError saying what is wrong with it.

    Lone surrogates in its strings become U+FFFD here, at the edge, so no later encoder
    (the SSE answer, a model's request body) meets text it cannot write.
    """
    try:
        data = json.loads(body)
    except RecursionError:  # `[[[[...` within the size limit would otherwise be a 500
        raise RequestError("the request body is nested too deeply to be a Poe request") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise RequestError(f"the request body is not valid JSON: {_reason(exc)}") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    if _MAYBE_SURROGATE.search(body) is not None:
        try:
            return {clean_text(key): clean_data(value) for key, value in data.items()}
        except RecursionError:  # cleaning recurses deeper than json.loads did
            raise RequestError(
                "the request body is nested too deeply to be a Poe request"
            ) from None
    return data


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return str(exc)
    # Python refuses to read integers over 4,300 digits (a guard against slow conversions).
    return "it holds a number too long to read (over 4,300 digits)"


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
    if len(known) == len(request.query):
        return request  # the usual case: no copy of the whole request
    return request.model_copy(update={"query": known})
