"""Declared conversation tests: what a user says and what the bot must answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ._base import Regex, StrictModel
from .input import ErrorType


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
    expect: Expect | None = Field(None, description="Single-turn checks.")
    turns: list[Turn] | None = Field(None, min_length=1, description="Several turns, in order.")

    @model_validator(mode="after")
    def _one_form(self) -> TestCase:
        if self.say is None and self.turns is None:
            raise ValueError("a test needs `say` (one turn) or `turns` (several)")
        if self.say is not None and self.turns is not None:
            raise ValueError("a test needs either `say` (one turn) or `turns` (several), not both")
        single = self.expect or self.params or self.attachments or self.model_reply is not None
        if self.turns is not None and single:
            raise ValueError(
                "with `turns`, put `expect`, `params`, `attachments` and `model_reply` in each turn"
            )
        return self

    def all_turns(self) -> list[Turn]:
        """The conversation as turns, whichever form it was written in."""
        if self.turns is not None:
            return list(self.turns)
        assert self.say is not None
        return [
            Turn(
                say=self.say,
                params=self.params,
                attachments=self.attachments,
                model_reply=self.model_reply,
                expect=self.expect or Expect(),
            )
        ]
