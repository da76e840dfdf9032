"""`llm` routes: stream a model's answer as it is generated, then add suggested replies."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..compiled import CompiledLLM
from ..protocol.events import Error, Event, KeepAlive, Replace, Text
from ..providers.base import Chunk
from ..providers.relay import ModelFailure
from .prompting import build_messages
from .quota import over_limit
from .scope import Scope
from .suggestions import generated, render_static, suggest_events

log = logging.getLogger("engine.runtime")


def run_llm(scope: Scope, route: CompiledLLM) -> Iterator[Event]:
    system, messages = build_messages(route, scope.history, scope.message, scope.context)
    static = render_static(scope, route.suggest)
    if over := over_limit(scope.limiter, scope.bot, scope.request.user_id, "model_calls"):
        scope.trace.limited = "model_calls"
        yield over
        return
    answer = ""
    try:
        for item in scope.stream(route.chain, scope.model_call(system, messages)):
            if isinstance(item, Chunk):
                answer = item.text if item.replace else answer + item.text
                # Each chunk leaves the moment it arrives; chunks that arrived together
                # (`more`: the next one is already here) leave in one write.
                flush = not item.more
                yield (
                    Replace(item.text, flush=flush)
                    if item.replace
                    else Text(item.text, flush=flush)
                )
            else:
                yield KeepAlive()
    except ModelFailure as failure:
        log.error("bot %s: %s: %s", scope.bot.name, route.loc, failure.detail)
        yield Error(failure.user_text, allow_retry=failure.allow_retry)
        return
    yield from suggest_events(static, route.suggest)
    yield from generated(scope, route.suggest, answer, messages)
