"""Input rules: checked on every user message before any route runs.

Every rule is written plainly (`max_length: 300`), or with its own refusal message
(`max_length: {value: 300, message: ...}`; a `reject` item as `{pattern: ..., message: ...}`).
A refused message shows its rule's message, else the bot's `invalid`, else the built-in
reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from ._base import Regex, StrictModel, Template

ErrorType = Literal[
    "user_message_too_long",
    "user_caused_error",
    "insufficient_fund",
    "privacy_authorization_error",
]

_MESSAGE_DOC = (
    "Shown when a message breaks this rule (a template over the context, like `invalid`, "
    "which it replaces for this rule)."
)


def _message(example: str) -> Any:
    return Field(description=_MESSAGE_DOC, examples=[example])


class RuleSpec(StrictModel):
    """A rule written as a mapping, with its own refusal `message`."""

    if TYPE_CHECKING:  # each rule declares it after its value, in the order editors show
        message: str
    # The union tag pydantic puts in an error's loc: the loader knows it is no YAML key.
    kind: ClassVar[str] = "rule"


class MinLengthRule(RuleSpec):
    """`min_length` with its own refusal message."""

    value: int = Field(ge=0, description="Fewest characters, after trimming.")
    message: Template = _message("Could you say a little more?")


class MaxLengthRule(RuleSpec):
    """`max_length` with its own refusal message."""

    value: int = Field(ge=1, description="Most characters.")
    message: Template = _message("Please keep it under 300 characters.")


class RejectRule(RuleSpec):
    """A refused pattern with its own refusal message."""

    pattern: Regex = Field(
        description="A regular expression (RE2 syntax); messages in which it is found are refused.",
        examples=[r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b"],
    )
    message: Template = _message("Please don't share phone numbers here.")


class RequiredRule(RuleSpec):
    """`required` with its own refusal message."""

    value: bool = Field(description="At least one file must be attached.")
    message: Template = _message("Please attach a photo.")


class MaxFilesRule(RuleSpec):
    """`max` with its own refusal message."""

    value: int = Field(ge=0, description="Most files one message may carry.")
    message: Template = _message("One image at a time, please.")


class TypesRule(RuleSpec):
    """`types` with its own refusal message."""

    value: list[str] = Field(
        min_length=1,
        description="Allowed MIME types; `*` matches any part (`image/*`).",
        examples=[["image/*", "application/pdf"]],
    )
    message: Template = _message("Only images, please.")


def _written_as(value: Any) -> str:
    """A mapping is the form with a message; anything else is the plain value (and a
    wrong type is reported against it: `got '20' (a string); expected an integer`)."""
    return "rule" if isinstance(value, dict | RuleSpec) else "plain"


_PLAIN_OR_RULE = Discriminator(_written_as)
MinLength = Annotated[
    Annotated[int, Field(ge=0), Tag("plain")] | Annotated[MinLengthRule, Tag("rule")],
    _PLAIN_OR_RULE,
]
MaxLength = Annotated[
    Annotated[int, Field(ge=1), Tag("plain")] | Annotated[MaxLengthRule, Tag("rule")],
    _PLAIN_OR_RULE,
]
Reject = Annotated[
    Annotated[Regex, Tag("plain")] | Annotated[RejectRule, Tag("rule")], _PLAIN_OR_RULE
]
Required = Annotated[
    Annotated[bool, Tag("plain")] | Annotated[RequiredRule, Tag("rule")], _PLAIN_OR_RULE
]
MaxFiles = Annotated[
    Annotated[int, Field(ge=0), Tag("plain")] | Annotated[MaxFilesRule, Tag("rule")],
    _PLAIN_OR_RULE,
]
Types = Annotated[
    Annotated[list[str], Field(min_length=1), Tag("plain")] | Annotated[TypesRule, Tag("rule")],
    _PLAIN_OR_RULE,
]
_OWN_MESSAGE = " Write `{value: ..., message: ...}` to give it its own refusal message."


class AttachmentRules(StrictModel):
    """How many files a message may carry, and of which types."""

    required: Required = Field(
        False, description="At least one file must be attached." + _OWN_MESSAGE
    )
    max: MaxFiles | None = Field(
        None, description="Most files one message may carry." + _OWN_MESSAGE
    )
    types: Types | None = Field(
        None,
        description="Allowed MIME types; `*` matches any part (`image/*`)." + _OWN_MESSAGE,
        examples=[["image/*", "application/pdf"]],
    )


class InputRules(StrictModel):
    """What a valid user message looks like; anything else gets an `error` event."""

    min_length: MinLength | None = Field(
        None,
        description="Fewest characters, after trimming." + _OWN_MESSAGE,
        examples=[2, {"value": 2, "message": "Could you say a little more?"}],
    )
    max_length: MaxLength | None = Field(
        None,
        description="Most characters; longer messages get `user_message_too_long`." + _OWN_MESSAGE,
        examples=[300, {"value": 300, "message": "Please keep it under 300 characters."}],
    )
    reject: list[Reject] = Field(
        default_factory=list,
        description="Messages in which any of these regular expressions (RE2 syntax) is found "
        "are refused. Write an item as `{pattern: ..., message: ...}` to give it its own "
        "refusal message; the first pattern found, in this order, decides.",
        examples=[
            [
                r"(?i)\bpassword\b",
                {
                    "pattern": r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b",
                    "message": "Please don't share phone numbers here.",
                },
            ]
        ],
    )
    attachments: AttachmentRules | None = Field(None, description="Rules for attached files.")
    invalid: Template | None = Field(
        None,
        description="Message shown when the input is refused by a rule without its own "
        "`message`; default: the specific reason.",
    )
    error_type: ErrorType = Field(
        "user_caused_error",
        description="Poe `error_type` for refused input other than length.",
    )

    @model_validator(mode="after")
    def _lengths_ordered(self) -> InputRules:
        low, high = rule_value(self.min_length), rule_value(self.max_length)
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_length {low} is above max_length {high}")
        return self

    def patterns(self) -> list[str]:
        """The `reject` patterns' sources, in order, whichever way each is written."""
        return [item if isinstance(item, str) else item.pattern for item in self.reject]


def rule_value(rule: int | MinLengthRule | MaxLengthRule | MaxFilesRule | None) -> int | None:
    """A number rule's value, whichever way it is written."""
    return rule if rule is None or isinstance(rule, int) else rule.value
