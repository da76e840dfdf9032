"""Routes: an optional condition plus exactly one action, tried in order."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag

from ._base import Expr, StrictModel, Template
from .calls import CallSpec
from .files import FILES_DOC, Files
from .input import ErrorType
from .models import ModelChain

ACTION_KEYS = ("reply", "llm", "error", "flow", "call")


class ErrorAction(StrictModel):
    """End the answer with a Poe `error` event."""

    text: Template = Field(description="Message shown to the user (a template).")
    allow_retry: bool = Field(False, description="Whether Poe offers the user a retry.")
    error_type: ErrorType | None = Field(None, description="Poe error type, if any.")


class GenerateSuggestions(StrictModel):
    """Ask a model for follow-up suggestions after the answer."""

    generate: int = Field(ge=1, le=10, description="How many suggestions to ask for.")
    model: ModelChain | None = Field(
        None, description="A (cheaper) model for this; default: the route's or the bot's."
    )


class PoeSuggestions(StrictModel):
    """Let Poe generate the suggestions itself."""

    poe: Literal[True] = Field(description="Set `meta.suggested_replies` so Poe suggests.")


Suggest = list[Template] | GenerateSuggestions | PoeSuggestions
SUGGEST_DOC = (
    "Suggested replies: a list (templates; blank results are dropped), "
    "`{generate: N}` or `{poe: true}`. Default: the bot's `suggested_replies`."
)


class History(StrictModel):
    """How much of the conversation the model sees, newest kept first."""

    messages: int | None = Field(20, ge=0, description="Most earlier messages sent.")
    chars: int | None = Field(24_000, ge=0, description="Most characters of earlier messages.")


class LLMAction(StrictModel):
    """Send a prompt to a model and stream its answer."""

    system: Template | None = Field(
        None, description="System prompt: the name of a prompt in `prompts`, or a template."
    )
    prompt: Template = Field(
        "{{ message }}",
        description="The user turn sent: a prompt name or a template; default the message.",
    )
    model: ModelChain | None = Field(
        None, description="Model or fallback list for this route; default: the bot's `model`."
    )
    history: History = Field(default_factory=History, description="History budget.")


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
    files: Files = Field(default_factory=list, description=FILES_DOC)
    suggest: Suggest | None = Field(None, description=SUGGEST_DOC)


class LLMRoute(_Route):
    """Answer with a model, streamed as it is generated."""

    kind: ClassVar[str] = "llm"
    llm: LLMAction = Field(description="The model call.")
    suggest: Suggest | None = Field(None, description=SUGGEST_DOC)


class ErrorRoute(_Route):
    """Refuse with a Poe error."""

    kind: ClassVar[str] = "error"
    error: ErrorAction = Field(description="The error to send.")


class FlowRoute(_Route):
    """Start a flow: its steps answer this message and the next ones."""

    kind: ClassVar[str] = "flow"
    flow: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
        description="The name of a flow in `flows`.",
        examples=["refund"],
    )


class CallRoute(_Route):
    """Call an outside HTTP API, then answer with `reply`, which reads what `extract` saved."""

    kind: ClassVar[str] = "call"
    call: CallSpec = Field(description="The call (as in a flow's `call` step).")
    reply: Template = Field(
        description="The answer once the call succeeded, a template reading `vars`.",
        examples=["Order {{ vars.order_id }} is {{ vars.status }}."],
    )
    files: Files = Field(default_factory=list, description=FILES_DOC)


def _action_of(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in ACTION_KEYS if key in value]
        if "call" in present and "reply" in present:  # a call route answers with `reply`
            present.remove("reply")
        return present[0] if len(present) == 1 else None
    return getattr(value, "kind", None)


Route = Annotated[
    Annotated[ReplyRoute, Tag("reply")]
    | Annotated[LLMRoute, Tag("llm")]
    | Annotated[ErrorRoute, Tag("error")]
    | Annotated[FlowRoute, Tag("flow")]
    | Annotated[CallRoute, Tag("call")],
    Discriminator(
        _action_of,
        custom_error_type="route_action",
        custom_error_message="a route needs exactly one action: " + " or ".join(ACTION_KEYS),
    ),
]
