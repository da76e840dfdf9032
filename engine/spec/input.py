"""Input rules: checked on every user message before any route runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import Regex, StrictModel, Template

ErrorType = Literal[
    "user_message_too_long",
    "user_caused_error",
    "insufficient_fund",
    "privacy_authorization_error",
]


class AttachmentRules(StrictModel):
    """How many files a message may carry, and of which types."""

    required: bool = Field(False, description="At least one file must be attached.")
    max: int | None = Field(None, ge=0, description="Most files one message may carry.")
    types: list[str] | None = Field(
        None,
        min_length=1,
        description="Allowed MIME types; `*` matches any part (`image/*`).",
        examples=[["image/*", "application/pdf"]],
    )


class InputRules(StrictModel):
    """What a valid user message looks like; anything else gets an `error` event."""

    min_length: int | None = Field(None, ge=0, description="Fewest characters, after trimming.")
    max_length: int | None = Field(
        None,
        ge=1,
        description="Most characters; longer messages get `user_message_too_long`.",
    )
    reject: list[Regex] = Field(
        default_factory=list,
        description="Messages in which any of these regular expressions (RE2 syntax) is found "
        "are refused.",
    )
    attachments: AttachmentRules | None = Field(None, description="Rules for attached files.")
    invalid: Template | None = Field(
        None,
        description="Message shown when the input is refused; default: the specific reason.",
    )
    error_type: ErrorType = Field(
        "user_caused_error",
        description="Poe `error_type` for refused input other than length.",
    )

    @model_validator(mode="after")
    def _lengths_ordered(self) -> InputRules:
        low, high = self.min_length, self.max_length
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_length {low} is above max_length {high}")
        return self
