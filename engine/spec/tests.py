"""Declared conversation tests: what a user says and what the bot must answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from ._base import Regex, StrictModel
from .input import ErrorType

# A BCP 47 tag as Poe sends it and the request edge accepts it (protocol/requests.py reads
# anything else as `en`): a 2-3 letter language, then up to six subtags (script, region...).
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,6}")


def _check_tag(tag: str) -> str:
    if not LANGUAGE_TAG.fullmatch(tag):
        raise ValueError(f"got {tag!r}; expected a BCP 47 language tag such as en or pt-BR")
    return tag


def _in_utc(moment: datetime) -> datetime:
    """`now` in the context is UTC: a time with a zone is converted, one without is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


LanguageTag = Annotated[
    str,
    AfterValidator(_check_tag),
    Field(json_schema_extra={"pattern": f"^{LANGUAGE_TAG.pattern}$"}),
]
# Written unquoted, YAML reads it as a timestamp; quoted, it is parsed as ISO 8601.
Moment = Annotated[datetime, AfterValidator(_in_utc), Field(strict=False)]


class Attachment(StrictModel):
    """A file attached to a test message."""

    name: str = Field("file", description="File name.")
    content_type: str = Field(description="MIME type, such as `image/png`.")
    url: str = Field("https://example.invalid/file", description="Download URL.")
    parsed_content: str | None = Field(None, description="Text Poe would extract from it.")


class PromptMessage(StrictModel):
    """One message of the prompt sent to the model."""

    role: Literal["system", "user", "assistant"] = Field(description="Who says it.")
    content: str = Field(description="The exact text.")


class HttpReply(StrictModel):
    """The scripted answer to one `call` step: a status and JSON, or a failure."""

    status: int = Field(200, ge=100, le=599, description="The HTTP status.", examples=[200, 503])
    json_body: Any = Field(
        None,
        alias="json",
        description="The JSON answer (null: an empty body).",
        examples=[{"status": "delivered", "total": "$42.00"}],
    )
    error: (
        Literal["timeout", "connect", "refused_host", "refused_address", "too_large", "bad_json"]
        | None
    ) = Field(
        None,
        description="Fail the call this way instead of answering.",
        examples=["timeout"],
    )


HttpReplies = HttpReply | list[HttpReply]


class Expect(StrictModel):
    """Checks on one answer; every given check must hold."""

    contains: str | list[str] | None = Field(None, description="Text(s) the answer contains.")
    not_contains: str | list[str] | None = Field(
        None, description="Text(s) the answer must not contain."
    )
    equals: str | None = Field(None, description="The whole answer, exactly.")
    regex: Regex | None = Field(
        None, description="A regular expression (RE2 syntax) found in the answer."
    )
    suggested: list[str] | None = Field(
        None, description="The suggested replies, exactly and in order."
    )
    files: list[str] | None = Field(
        None,
        description="The names of the files sent with the answer, exactly and in order "
        "(tests upload nothing).",
        examples=[["report.csv"]],
    )
    error: bool | None = Field(
        None, description="True: the answer must end in an error; false: it must not."
    )
    error_type: ErrorType | None = Field(None, description="The error's Poe `error_type`.")
    allow_retry: bool | None = Field(None, description="The error's `allow_retry`.")
    prompt: list[PromptMessage] | None = Field(
        None, description="The messages sent to the model, exactly (system first)."
    )
    prompt_contains: str | list[str] | None = Field(
        None, description="Text(s) found in some message sent to the model."
    )
    vars: dict[str, Any] | None = Field(
        None,
        description="Flow variables after the answer, each given one equal to this value "
        "(others are not checked).",
        examples=[{"order_id": "AB123456", "confirmed": "Yes"}],
    )
    flow: str | Literal[False] | None = Field(
        None,
        description="The flow left running after the answer (waiting for the next "
        "message); `false`: none.",
        examples=["refund", False],
    )
    calls: list[str] | None = Field(
        None,
        description="The calls made, each as `METHOD URL`, exactly and in order.",
        examples=[["GET https://api.acme.example/orders/AB123456"]],
    )


class Turn(StrictModel):
    """One user message and the checks on the bot's answer."""

    say: str = Field(description="What the user sends.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameter-control values sent with the message."
    )
    attachments: list[Attachment] = Field(
        default_factory=list, description="Files attached to the message."
    )
    model_reply: str | list[str] | None = Field(
        None,
        description="What the model answers in this turn (a list: one per model call, "
        "such as the answer then generated suggestions). Tests never call real models.",
    )
    language: LanguageTag | None = Field(
        None,
        description="The user's language in this turn (`language` in conditions and "
        "templates), a BCP 47 tag; default: the test's `language`.",
        examples=["pt-BR"],
    )
    now: Moment | None = Field(
        None,
        description="When this turn is sent (`now`); default: the test's `now`.",
        examples=["2026-03-04T18:30:00Z"],
    )
    new_conversation: bool = Field(
        False,
        description="Start a new conversation with this turn (no history, another "
        "conversation id; the same user, so remembered vars and limits carry over).",
    )
    http_reply: HttpReplies | None = Field(
        None,
        description="How outside APIs answer this turn's `call` steps (a list: one per "
        "call, in order). Tests never call real APIs.",
        examples=[{"status": 200, "json": {"status": "delivered"}}, {"error": "timeout"}],
    )
    expect: Expect = Field(default_factory=Expect, description="Checks on the answer.")


class TestCase(StrictModel):
    """A conversation: one turn (`say`) or several (`turns`)."""

    __test__ = False  # not a pytest class

    name: str | None = Field(None, description="Shown in the test report.")
    say: str | None = Field(None, description="Single-turn shorthand: what the user sends.")
    params: dict[str, Any] = Field(default_factory=dict, description="Single-turn parameters.")
    attachments: list[Attachment] = Field(
        default_factory=list, description="Single-turn attachments."
    )
    model_reply: str | list[str] | None = Field(None, description="Single-turn model reply.")
    http_reply: HttpReplies | None = Field(None, description="Single-turn API answers.")
    expect: Expect | None = Field(None, description="Single-turn checks.")
    turns: list[Turn] | None = Field(None, min_length=1, description="Several turns, in order.")
    language: LanguageTag = Field(
        "en",
        description="The user's language (`language` in conditions and templates), a BCP 47 "
        "tag, in every turn that does not set its own.",
        examples=["pt-BR", "de", "zh-Hant-TW"],
    )
    now: Moment | None = Field(
        None,
        description="When the conversation happens (`now` in conditions and templates), in "
        "every turn that does not set its own; a time without a zone is UTC. Default: the "
        "real time, so set it when an answer depends on the time.",
        examples=["2026-03-04T09:30:00Z", "2026-03-04T09:30:00+01:00"],
    )
    user_id: str = Field(
        "u-test",
        description="The user's id (`user.id` in conditions and templates).",
        examples=["u-42"],
    )
    conversation_id: str = Field(
        "c-test",
        description="The conversation's id (`conversation.id` in conditions and templates).",
        examples=["c-7"],
    )

    @model_validator(mode="after")
    def _one_form(self) -> TestCase:
        if self.say is None and self.turns is None:
            raise ValueError("a test needs `say` (one turn) or `turns` (several)")
        if self.say is not None and self.turns is not None:
            raise ValueError("a test needs either `say` (one turn) or `turns` (several), not both")
        single = self.expect or self.params or self.attachments or self.model_reply is not None
        single = single or self.http_reply is not None
        if self.turns is not None and single:
            raise ValueError(
                "with `turns`, put `expect`, `params`, `attachments`, `model_reply` and "
                "`http_reply` in each turn"
            )
        return self

    def all_turns(self) -> list[Turn]:
        """The conversation as turns, whichever form it was written in, each with its
        language and time (the test's unless the turn sets its own)."""
        if self.turns is None:
            assert self.say is not None
            single = Turn(
                say=self.say,
                params=self.params,
                attachments=self.attachments,
                model_reply=self.model_reply,
                http_reply=self.http_reply,
                expect=self.expect or Expect(),
            )
            return [self._with_defaults(single)]
        return [self._with_defaults(turn) for turn in self.turns]

    def _with_defaults(self, turn: Turn) -> Turn:
        language = turn.language or self.language
        return turn.model_copy(update={"language": language, "now": turn.now or self.now})
