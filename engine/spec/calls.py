"""A call to an outside HTTP API, as written in a flow's `call` step or a `call` route."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ._base import Expr, StrictModel, Template

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
FLOW_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

VarName = Annotated[str, Field(pattern=NAME_PATTERN, examples=["order_id"])]
StepId = Annotated[str, Field(pattern=NAME_PATTERN, examples=["confirm"])]
FlowName = Annotated[str, Field(pattern=FLOW_NAME_PATTERN, examples=["refund"])]


class Branch(StrictModel):
    """Where a flow goes when something fails: a message, then a step, a flow or the end."""

    reply: Template | None = Field(
        None, description="Shown first (a template).", examples=["Let's stop here."]
    )
    goto: StepId | None = Field(None, description="Continue at this step of the same flow.")
    flow: FlowName | None = Field(None, description="Start this flow instead.")
    end: bool = Field(
        False, description="End the flow (the default without goto or flow).", examples=[True]
    )

    @model_validator(mode="after")
    def _one_target(self) -> Branch:
        if sum([self.goto is not None, self.flow is not None, self.end]) > 1:
            raise ValueError("choose one of goto, flow or end")
        return self


class CallSpec(StrictModel):
    """A call to an outside HTTP API; its JSON answer is read into `vars` by `extract`."""

    url: Template = Field(
        description="The URL, a template whose scheme and host are written out; values "
        "filled in are percent-encoded, so they stay inside their path segment or query "
        "value. The host must be listed in the bot's `allow_hosts`.",
        examples=["https://api.acme.example/orders/{{ vars.order_id }}"],
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = Field(
        "GET", description="The HTTP method.", examples=["POST"]
    )
    query: dict[str, Template] = Field(
        default_factory=dict,
        description="Query parameters added to the URL, each value a template.",
        examples=[{"email": "{{ vars.email }}"}],
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers; secrets only as `${ENV_VAR}` references, read from "
        "the environment at load and never logged.",
        examples=[{"Authorization": "Bearer ${ACME_API_TOKEN}"}],
    )
    body: Any = Field(
        None,
        description="A JSON body: any value, its strings rendered as templates.",
        examples=[{"order": "{{ vars.order_id }}", "reason": "{{ vars.reason }}"}],
    )
    timeout: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Seconds for each try, the whole answer included.",
        examples=[5],
    )
    retries: int = Field(
        2,
        ge=0,
        le=5,
        description="Further tries after a timeout or 502-504 (GET, PUT, "
        "DELETE and HEAD only; never POST or PATCH).",
        examples=[0],
    )
    max_bytes: int = Field(
        262_144,
        gt=0,
        le=10_485_760,
        description="The longest answer read, in bytes.",
        examples=[1_048_576],
    )
    status: Template | None = Field(
        None,
        description="Shown while the call runs, then replaced by the answer.",
        examples=["Looking up your order…"],
    )
    extract: dict[VarName, Expr] = Field(
        default_factory=dict,
        description="Variables saved from the JSON answer, each a JMESPath expression "
        "over it (null when it finds nothing).",
        examples=[{"status": "status", "total": "amount.total"}],
    )
    on_error: Branch | None = Field(
        None,
        description="What happens when the call fails (refused, timeout, not 2xx, too "
        "large, not JSON); default: an apology and the flow ends.",
        examples=[{"reply": "Our order system is down; please try later.", "end": True}],
    )
