"""Routes: an optional condition plus exactly one action, tried in order."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Discriminator, Field, Tag

from ._base import Expr, StrictModel, Template
from .input import ErrorType

ACTION_KEYS = ("reply", "error")


class ErrorAction(StrictModel):
    """End the answer with a Poe `error` event."""

    text: Template = Field(description="Message shown to the user (a template).")
    allow_retry: bool = Field(False, description="Whether Poe offers the user a retry.")
    error_type: ErrorType | None = Field(None, description="Poe error type, if any.")


class _Route(StrictModel):
    kind: ClassVar[str]
    when: Expr | None = Field(
        None,
        alias="if",
        description="JMESPath condition over the context; no `if` makes this the fallback.",
        examples=["regex(message, '(?i)refund')"],
    )


class ReplyRoute(_Route):
    """Answer with a rendered template."""

    kind: ClassVar[str] = "reply"
    reply: Template = Field(description="The answer, a Jinja template over the context.")
    suggest: list[Template] | None = Field(
        None,
        description="Suggested replies (templates; blank results are dropped). "
        "Default: the bot's `suggested_replies`.",
    )


class ErrorRoute(_Route):
    """Refuse with a Poe error."""

    kind: ClassVar[str] = "error"
    error: ErrorAction = Field(description="The error to send.")


def _action_of(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in ACTION_KEYS if key in value]
        return present[0] if len(present) == 1 else None
    return getattr(value, "kind", None)


Route = Annotated[
    Annotated[ReplyRoute, Tag("reply")] | Annotated[ErrorRoute, Tag("error")],
    Discriminator(
        _action_of,
        custom_error_type="route_action",
        custom_error_message="a route needs exactly one action: " + " or ".join(ACTION_KEYS),
    ),
]
