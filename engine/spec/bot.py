"""The root of the language: one bot per YAML file."""

from __future__ import annotations

from pydantic import Field

from ._base import EnvRef, StrictModel, Template
from .calls import FlowName
from .flows import Escape, Flow
from .input import InputRules
from .limits import RateLimits, Remember
from .models import ModelChain
from .poe_settings import PoeSettings
from .routes import Route
from .tests import TestCase

BOT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Bot(StrictModel):
    """A Poe server bot, answered entirely from this file."""

    name: str | None = Field(
        None,
        pattern=BOT_NAME_PATTERN,
        description="URL path of the bot (`POST /<name>`); default: the file name.",
    )
    poe_name: str | None = Field(
        None,
        pattern=BOT_NAME_PATTERN,
        description="The bot's name on Poe, which `python -m engine sync` sends its settings "
        "to; default: `name`.",
        examples=["AcmeHelp"],
    )
    description: str = Field("", description="What the bot does, for people and listings.")
    access_key: EnvRef | None = Field(
        None,
        description="`${ENV_VAR}` holding the Poe access key; never the key itself. "
        "Without one the bot is served only on a loopback address.",
    )
    greeting: str | None = Field(
        None, description="Markdown shown when a chat starts (Poe `introduction_message`)."
    )
    suggested_replies: list[Template] = Field(
        default_factory=list,
        description="Default suggested replies, sent after answers whose route has none.",
    )
    model: ModelChain | None = Field(
        None,
        description="Model for `llm` routes: one, or a list tried in order (fallback chain).",
    )
    prompts: dict[str, Template] = Field(
        default_factory=dict,
        description='Named templates; use one with `{% include "name" %}`.',
    )
    input: InputRules | None = Field(None, description="Checks on every user message.")
    routes: list[Route] = Field(
        min_length=1, description="Tried in order; the first whose `if` holds answers."
    )
    limits: RateLimits | None = Field(
        None,
        description="Rate limits and quotas, per user and for the whole bot "
        "(`messages: [20/minute, 500/day]`).",
    )
    remember: Remember | None = Field(
        None, description="Vars kept for each user across conversations."
    )
    flows: dict[FlowName, Flow] = Field(
        default_factory=dict,
        description="Named flows: steps that hold a conversation over several turns, "
        "started by a route's `flow:`.",
        examples=[{"refund": [{"ask": "Your order number?", "save": "order_id"}]}],
    )
    escapes: list[Escape] = Field(
        default_factory=list,
        description="Checked, in order, before a running flow is resumed: the first that "
        "holds stops the flow.",
        examples=[[{"if": "lower(trim(message)) == 'cancel'", "reply": "Cancelled."}]],
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="The only hosts `call` steps may reach: names, `*.example.com` "
        "wildcards or IP addresses. Private, loopback and link-local addresses are refused "
        "unless listed here as addresses (or `localhost`).",
        examples=[["api.acme.example", "*.shop.example"]],
    )
    settings: PoeSettings = Field(
        default_factory=PoeSettings, description="Poe settings sent to Poe."
    )
    tests: list[TestCase] = Field(
        default_factory=list, description="Conversations run by `python -m engine test`."
    )
