"""Everything one answer needs, gathered once: the bot, the request, the context, the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..compiled import Chain, CompiledBot, CompiledModel
from ..limits import Limiter
from ..protocol.requests import Message, QueryRequest
from ..providers.base import ChatMessage, Chunk, ModelCall
from ..providers.relay import ModelAttempt, Opener, RelayTiming, Tick, stream_chain
from .files import Uploader, upload
from .sampling import sampling_for

if TYPE_CHECKING:
    from ..outbound import HostPolicy, OutboundRequest, OutboundResponse

# Makes a `call` step's request: engine.outbound.fetch, or a scripted one in tests.
Fetcher = Callable[["OutboundRequest", "HostPolicy"], "OutboundResponse"]


def fetch(request: OutboundRequest, policy: HostPolicy) -> OutboundResponse:
    """engine.outbound.fetch, imported at the first call: it brings httpx, which imports
    click, and the core stays free of both for bots that make no calls."""
    from ..outbound import fetch as outbound_fetch

    return outbound_fetch(request, policy)


@dataclass
class FlowTrace:
    """What one turn did, for tests and the playground: vars at the end, the flow left
    running (None when it ended), every call's request, and `path`, the locs of what was
    decided and run, in order, as `validate` names them: the input rule that refused the
    message (`input.max_length`, `input.reject[1]`, or `input.reject` when the patterns
    have no messages of their own and so are only searched together), the route taken
    (`routes[2]`, or `routes` when none matched), the escape taken (`escapes[0]`), each
    flow step run (`flows.refund[3]`, the question answered first when a flow resumes),
    and the branch followed when an answer did not fit (`flows.refund[0].retry`, `.on_fail`)
    or a call failed (`flows.refund[1].call.on_error`). The locs are the compiled
    objects' own strings: recording costs a list append per decision.

    For the request's log line and metrics too: `models`, every model tried (retries and
    fallbacks marked), `limited`, the kind of limit that refused the turn (`messages`,
    `model_calls`, `calls`), and `call_failures`, the outside calls that failed."""

    vars: dict[str, Any] | None = None
    running: str | None = None
    calls: list[OutboundRequest] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    models: list[ModelAttempt] = field(default_factory=list)
    limited: str | None = None
    call_failures: int = 0


@dataclass(frozen=True)
class Scope:
    """One query being answered. Actions read it; nothing in it changes."""

    bot: CompiledBot
    request: QueryRequest
    message: Message
    history: list[Message]
    context: dict[str, Any]
    opener: Opener
    timing: RelayTiming
    fetcher: Fetcher = fetch
    trace: FlowTrace = field(default_factory=FlowTrace)
    limiter: Limiter | None = None  # counts `limits`, keeps remembered vars
    uploader: Uploader = upload  # sends a reply's files made from templates to Poe

    def model_call(self, system: str | None, messages: tuple[ChatMessage, ...]) -> ModelCall:
        """A call carrying this request's identity, for providers that forward it (Poe)."""
        return ModelCall(
            system=system,
            messages=messages,
            turn=self.context["turn"],
            access_key=self.bot.access_key,
            poe_metadata=self.request.metadata,
            user_id=self.request.user_id,
            conversation_id=self.request.conversation_id,
        )

    def stream(self, chain: Chain, base: ModelCall) -> Iterator[Chunk | Tick]:
        """The chain's answer with each model's own sampling parameters."""

        def build(model: CompiledModel) -> ModelCall:
            return replace(base, sampling=sampling_for(model, self.context, self.bot.name))

        return stream_chain(
            chain, build, self.opener, self.timing, self.bot.name, self.trace.models
        )
