"""Flows: named lists of steps that hold a conversation over several turns.

A route (or an escape, or another flow) starts a flow; its steps run in order until one
asks the user something (the answer resumes the flow at that step) or the flow ends.
Every flow of a bot shares one `vars` namespace, carried from turn to turn in the signed
metadata of the bot's last message (engine/state.py).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from ._base import Expr, Regex, StrictModel, Template
from .calls import Branch, CallSpec, FlowName, StepId, VarName
from .files import FILES_DOC, Files
from .routes import LLMAction

STEP_KEYS = ("ask", "reply", "llm", "call", "set", "goto", "switch", "flow", "end")


class Expectation(StrictModel):
    """What an answer must look like: one of `type`, `pattern` or `choices`."""

    type: Literal["text", "number", "integer", "email", "url", "date"] | None = Field(
        None,
        description="`text` (anything not blank), `number` and `integer` (saved as numbers), "
        "`email`, `url` (http or https) or `date` (YYYY-MM-DD, also 31/12/2026 read as "
        "day/month/year; saved as YYYY-MM-DD).",
        examples=["integer", "email"],
    )
    pattern: Regex | None = Field(
        None,
        description="A regular expression (RE2) the answer (trimmed) must match somewhere; "
        "anchor it with ^ and $ to match the whole answer.",
        examples=[r"^[A-Z]{2}\d{6}$"],
    )
    choices: list[str] | None = Field(
        None,
        min_length=1,
        description="The only answers accepted, shown as suggested replies and matched "
        "without regard to case; the choice is saved as written here.",
        examples=[["Yes", "No"]],
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        given = [k for k in ("type", "pattern", "choices") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("`expect` needs exactly one of type, pattern or choices")
        return self


class SetExpr(StrictModel):
    """A value computed by a JMESPath expression over the context (a number stays one)."""

    expr: Expr = Field(description="JMESPath over the context.", examples=["length(vars.items)"])


class _Step(StrictModel):
    kind: ClassVar[str]
    id: StepId | None = Field(
        None, description="A name for `goto`; without one a step is known by its index."
    )


class AskStep(_Step):
    """Ask the user something; the next message is the answer, saved into `vars`."""

    kind: ClassVar[str] = "ask"
    ask: Template = Field(
        description="The question (a template).", examples=["What's your order number?"]
    )
    save: VarName = Field(description="The variable the answer is saved into.")
    expect: Expectation | None = Field(
        None,
        description="What the answer must look like; default: any text.",
        examples=[{"type": "email"}, {"choices": ["Yes", "No"]}],
    )
    retry: Template | None = Field(
        None,
        description="Said when an answer does not fit, before the question is asked again.",
        examples=["Two letters and six digits, please."],
    )
    tries: int = Field(
        3, ge=1, le=20, description="How many answers the user may give.", examples=[2]
    )
    on_fail: Branch | None = Field(
        None,
        description="What happens when the tries run out; default: an apology, flow ends.",
        examples=[{"reply": "Let's stop here.", "end": True}],
    )


class ReplyStep(_Step):
    """Say something (a template) and go on."""

    kind: ClassVar[str] = "reply"
    reply: Template = Field(description="The text.", examples=["Order {{ vars.order_id }}."])
    files: Files = Field(default_factory=list, description=FILES_DOC)


class LLMStep(_Step):
    """Ask a model (its answer streamed) and go on."""

    kind: ClassVar[str] = "llm"
    llm: LLMAction = Field(description="The model call, as in routes.")


class CallStep(_Step):
    """Call an outside HTTP API and go on."""

    kind: ClassVar[str] = "call"
    call: CallSpec = Field(description="The call.")


class SetStep(_Step):
    """Save variables: each a template (text) or `{expr: ...}` (JMESPath, any JSON)."""

    kind: ClassVar[str] = "set"
    set: dict[VarName, Template | SetExpr] = Field(
        description="Variable name to value.",
        examples=[{"greeting": "Hi {{ vars.name }}", "count": {"expr": "length(vars.items)"}}],
    )


class GotoStep(_Step):
    """Jump to a step of the same flow, if a condition holds (always, without `if`)."""

    kind: ClassVar[str] = "goto"
    when: Expr | None = Field(
        None,
        alias="if",
        description="JMESPath condition; when false the flow goes on to the next step.",
        examples=["vars.status != 'delivered'"],
    )
    goto: StepId = Field(description="The `id` of the step to continue at.")


class Case(StrictModel):
    """One case of a `switch`: the first whose `if` holds is taken."""

    when: Expr | None = Field(
        None,
        alias="if",
        description="JMESPath condition; none: always (the default case).",
        examples=["vars.confirmed == 'Yes'"],
    )
    goto: StepId = Field(description="The `id` of the step to continue at.")


class SwitchStep(_Step):
    """Jump to the step of the first case that holds; none: go on to the next step."""

    kind: ClassVar[str] = "switch"
    switch: list[Case] = Field(
        min_length=1,
        description="Cases tried in order.",
        examples=[[{"if": "vars.confirmed == 'Yes'", "goto": "done"}, {"goto": "cancelled"}]],
    )


class FlowStep(_Step):
    """Start another flow (it does not come back); `vars` are shared."""

    kind: ClassVar[str] = "flow"
    flow: FlowName = Field(description="The flow to start.")


class EndStep(_Step):
    """End the flow, optionally with a last message."""

    kind: ClassVar[str] = "end"
    end: Literal[True] | Template = Field(
        description="`true`, or the last message (a template).", examples=["Refund started."]
    )


def _step_of(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in STEP_KEYS if key in value]
        return present[0] if len(present) == 1 else None
    return getattr(value, "kind", None)


Step = Annotated[
    Annotated[AskStep, Tag("ask")]
    | Annotated[ReplyStep, Tag("reply")]
    | Annotated[LLMStep, Tag("llm")]
    | Annotated[CallStep, Tag("call")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[SwitchStep, Tag("switch")]
    | Annotated[FlowStep, Tag("flow")]
    | Annotated[EndStep, Tag("end")],
    Discriminator(
        _step_of,
        custom_error_type="step_action",
        custom_error_message="a step needs exactly one of: " + ", ".join(STEP_KEYS),
    ),
]

Flow = Annotated[list[Step], Field(min_length=1)]


class Escape(StrictModel):
    """Checked before a running flow is resumed: when it holds, the flow stops."""

    when: Expr = Field(
        alias="if",
        description="JMESPath condition over the context.",
        examples=["lower(trim(message)) == 'cancel'"],
    )
    reply: Template | None = Field(None, description="Said instead.", examples=["Cancelled."])
    flow: FlowName | None = Field(None, description="Start this flow (from its first step).")

    @model_validator(mode="after")
    def _does_something(self) -> Escape:
        if self.reply is None and self.flow is None:
            raise ValueError("an escape needs `reply`, `flow` or both")
        return self
