"""A bot after loading: every template and condition compiled, ready for the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from limits import RateLimitItem

from .expressions import Condition
from .patterns import Pattern
from .spec import Bot, ErrorType
from .spec.models import AnthropicModel, OpenAIModel, PoeModel, ScriptedModel
from .templates import Renderable

if TYPE_CHECKING:  # engine.outbound imports httpx, which imports click: only where calls are
    from .outbound import HostPolicy, Origin

ModelSpec = OpenAIModel | AnthropicModel | PoeModel | ScriptedModel
# A sampling parameter: a number from the file, or a template rendered per request.
Param = float | int | Renderable | None
V = TypeVar("V")


@dataclass(frozen=True)
class CompiledModel:
    """One model of a fallback chain, its secrets resolved and its templates compiled."""

    spec: ModelSpec
    api_key: str | None = None
    base_url: str | None = None
    temperature: Param = None
    max_tokens: Param = None
    top_p: Param = None
    stop: tuple[Renderable, ...] = ()

    @property
    def label(self) -> str:
        """`openai:gpt-4o-mini`, `poe:Claude-Haiku-4.5`: how logs and messages name it."""
        spec = self.spec
        name = spec.bot if isinstance(spec, PoeModel) else getattr(spec, "name", "script")
        return f"{spec.provider}:{name}"

    @property
    def retries(self) -> int:
        return 0 if isinstance(self.spec, ScriptedModel) else self.spec.retries

    @property
    def total_timeout(self) -> float:
        return 600.0 if isinstance(self.spec, ScriptedModel) else self.spec.timeout.total

    @property
    def opens_at_once(self) -> bool:
        """Whether its answer starts without waiting on a network (a scripted model's), so
        the relay can open it in the answer's own thread, without a producer."""
        return isinstance(self.spec, ScriptedModel)


Chain = tuple[CompiledModel, ...]


@dataclass(frozen=True)
class GenerateSuggestions:
    """`suggest: {generate: N}`: ask a model for N follow-ups after the answer."""

    count: int
    chain: Chain


@dataclass(frozen=True)
class PoeSuggests:
    """`suggest: {poe: true}`: Poe suggests replies itself (`meta.suggested_replies`)."""


# Static/templated list, model-generated, or Poe's own; None: the bot's default.
Suggestions = tuple[Renderable, ...] | GenerateSuggestions | PoeSuggests | None


@dataclass(frozen=True)
class CompiledFile:
    """One entry of `files:`: a URL Poe downloads (`url`), or a template's text uploaded to
    Poe (`content`); exactly one is set."""

    loc: str
    name: str | None  # None: the URL's last path segment
    content_type: str | None  # None: guessed from the name
    inline: bool
    url: Renderable | None = None
    content: Renderable | None = None


@dataclass(frozen=True)
class CompiledReply:
    """`reply:` route."""

    loc: str
    condition: Condition | None
    reply: Renderable
    suggest: Suggestions
    files: tuple[CompiledFile, ...] = ()


@dataclass(frozen=True)
class CompiledError:
    """`error:` route."""

    loc: str
    condition: Condition | None
    text: Renderable
    allow_retry: bool
    error_type: ErrorType | None


@dataclass(frozen=True)
class CompiledLLM:
    """`llm:` route: a prompt sent to a model chain, its answer streamed."""

    loc: str
    condition: Condition | None
    system: Renderable | None
    prompt: Renderable
    chain: Chain
    history_messages: int | None
    history_chars: int | None
    suggest: Suggestions


@dataclass(frozen=True)
class CompiledFlowRoute:
    """`flow:` route: starts a flow."""

    loc: str
    condition: Condition | None
    flow: str


@dataclass(frozen=True)
class CompiledCallRoute:
    """`call:` route: a call then a reply, run as a flow of those two steps."""

    loc: str
    condition: Condition | None
    flow: CompiledFlow


CompiledRoute = CompiledReply | CompiledError | CompiledLLM | CompiledFlowRoute | CompiledCallRoute


@dataclass(frozen=True)
class Rule(Generic[V]):
    """One input rule: its value, and its own refusal message (None: the bot's `invalid`,
    else the built-in reason)."""

    value: V
    message: Renderable | None = None


@dataclass(frozen=True)
class CompiledInput:
    """Input rules with their patterns and messages compiled; None: no such rule."""

    min_length: Rule[int] | None
    max_length: Rule[int] | None
    # Every pattern, in as few searches as can be: this alone decides whether one is found.
    reject: tuple[Pattern, ...]
    # Each pattern on its own, with its message, in order; searched only after `reject`
    # found one, to tell which. Empty when no pattern has a message: then it cannot matter.
    reject_rules: tuple[Rule[Pattern], ...]
    attachments_required: Rule[bool] | None
    attachments_max: Rule[int] | None
    attachment_types: Rule[tuple[str, ...]] | None
    invalid: Renderable | None
    error_type: ErrorType


@dataclass(frozen=True)
class Allowance:
    """The limits on one kind of use: each user's, then the whole bot's, narrowest first."""

    per_user: tuple[RateLimitItem, ...] = ()
    whole_bot: tuple[RateLimitItem, ...] = ()


@dataclass(frozen=True)
class CompiledLimits:
    """`limits:`, parsed: what is counted (messages, model calls, outside calls)."""

    messages: Allowance
    model_calls: Allowance
    calls: Allowance
    fail_closed: bool = False


@dataclass(frozen=True)
class CompiledMemory:
    """`remember:`: the vars kept per user, and for how long."""

    names: frozenset[str]
    ttl_seconds: float


@dataclass(frozen=True)
class Branch:
    """Where a flow goes after a failure: a message, then a step, a flow, or (neither) the end."""

    reply: Renderable | None
    goto: int | None = None
    flow: str | None = None


@dataclass(frozen=True)
class AnswerCheck:
    """What an `ask` accepts: a type, a pattern or choices (exactly one is set)."""

    type: str = "text"
    pattern: Pattern | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class AskStep:
    """`ask`: a question; the next message, checked, is saved into `vars[save]`."""

    loc: str
    question: Renderable
    save: str
    check: AnswerCheck
    retry: Renderable | None
    tries: int
    on_fail: Branch


@dataclass(frozen=True)
class ReplyStep:
    """`reply`: a template said, then the next step."""

    loc: str
    text: Renderable
    files: tuple[CompiledFile, ...] = ()


@dataclass(frozen=True)
class LLMStep:
    """`llm`: a model's answer, streamed, then the next step."""

    loc: str
    llm: CompiledLLM


# A JSON body with its strings compiled as templates.
Body = Renderable | dict[str, "Body"] | list["Body"] | int | float | bool | None


@dataclass(frozen=True)
class CallStep:
    """`call`: one outside HTTP request; `extract` saves from its JSON answer."""

    loc: str
    method: str
    url: Renderable  # values filled in are percent-encoded
    origin: Origin  # what the URL must call once rendered
    query: tuple[tuple[str, Renderable], ...]
    headers: dict[str, str]  # `${ENV}` resolved at load: may hold secrets, never logged
    body: Body
    timeout: float
    retries: int
    max_bytes: int
    status: Renderable | None
    extract: tuple[tuple[str, Condition], ...]
    on_error: Branch


@dataclass(frozen=True)
class SetStep:
    """`set`: vars from templates (text) or JMESPath conditions (any JSON)."""

    loc: str
    values: tuple[tuple[str, Renderable | Condition], ...]


@dataclass(frozen=True)
class JumpStep:
    """`goto` (with or without `if`) and `switch`: the first case that holds is taken."""

    loc: str
    cases: tuple[tuple[Condition | None, int], ...]


@dataclass(frozen=True)
class StartFlowStep:
    """`flow`: another flow from its first step."""

    loc: str
    flow: str


@dataclass(frozen=True)
class EndStep:
    """`end`: the flow ends, with a last message or none."""

    loc: str
    text: Renderable | None


CompiledStep = (
    AskStep | ReplyStep | LLMStep | CallStep | SetStep | JumpStep | StartFlowStep | EndStep
)


@dataclass(frozen=True)
class CompiledFlow:
    """A flow's steps, jumps resolved to indexes; `digest` changes with its definition."""

    name: str
    steps: tuple[CompiledStep, ...]
    digest: str


@dataclass(frozen=True)
class CompiledEscape:
    """Checked before a running flow resumes: when it holds, the flow stops."""

    condition: Condition
    reply: Renderable | None
    flow: str | None


@dataclass(frozen=True)
class CompiledBot:
    """Everything the runtime needs to answer for one bot; built once per load."""

    name: str
    file: str
    spec: Bot
    access_key: str | None
    access_key_var: str | None
    routes: tuple[CompiledRoute, ...]
    suggested_replies: tuple[Renderable, ...]
    input: CompiledInput | None
    param_defaults: dict[str, Any] = field(default_factory=dict)
    # Poe bots this bot calls, and how many calls one user message can make to each.
    dependencies: dict[str, int] = field(default_factory=dict)
    limits: CompiledLimits | None = None
    remember: CompiledMemory | None = None
    flows: dict[str, CompiledFlow] = field(default_factory=dict)
    escapes: tuple[CompiledEscape, ...] = ()
    hosts: HostPolicy | None = None  # from `allow_hosts`; None: the bot makes no calls
    state_key: bytes = b""  # signs flow state (engine/state.py)

    @cached_property
    def flows_wait(self) -> bool:
        """Whether a turn of one of its flows may wait on something outside: a model, an
        outside call, or files to upload. Such a turn sends `meta` at once; the turns of
        flows that only ask, say and decide are answered in one write, as replies are
        (a flow can start any other, so this is the bot's, not one flow's)."""
        return any(
            isinstance(step, LLMStep | CallStep) or (isinstance(step, ReplyStep) and step.files)
            for flow in self.flows.values()
            for step in flow.steps
        )

    def models(self) -> list[CompiledModel]:
        """Every model any route or flow step can call, suggestion models included."""
        found = [model for route in self.routes for model in route_models(route)]
        for flow in self.flows.values():
            found += [m for step in flow.steps if isinstance(step, LLMStep) for m in step.llm.chain]
        return found


def route_models(route: CompiledRoute) -> list[CompiledModel]:
    """The models one message answered by this route may call: the answer's chain, then
    the chain generating suggestions."""
    found: list[CompiledModel] = list(route.chain) if isinstance(route, CompiledLLM) else []
    suggest = suggestions_of(route)
    if isinstance(suggest, GenerateSuggestions):
        found += suggest.chain
    return found


def suggestions_of(route: CompiledRoute | None) -> Suggestions:
    """The route's `suggest` plan; None for a route that takes none (or no route)."""
    match route:
        case CompiledReply() | CompiledLLM():
            return route.suggest
        case _:
            return None
