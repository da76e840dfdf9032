"""Everything one answer needs, gathered once: the bot, the request, the context, the models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..compiled import Chain, CompiledBot, CompiledModel
from ..limits import Limiter
from ..protocol.requests import Message, QueryRequest
from ..providers.base import ChatMessage, Chunk, ModelCall
from ..providers.relay import Opener, RelayTiming, Tick, stream_chain
from .sampling import sampling_for


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
