"""Everything one answer needs, gathered once: the bot, the request, the context, the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..compiled import Chain, CompiledBot, CompiledModel
from ..limits import Limiter
from ..protocol.requests import Message, QueryRequest
from ..providers.base import ChatMessage, Chunk, ModelCall
from ..providers.relay import Opener, RelayTiming, Tick, stream_chain
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
    """What flows did in one turn, for tests: vars at the end, the flow left running
    (None when it ended) and every call's request."""

    vars: dict[str, Any] | None = None
    running: str | None = None
    calls: list[OutboundRequest] = field(default_factory=list)


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

        return stream_chain(chain, build, self.opener, self.timing, self.bot.name)
