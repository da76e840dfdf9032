"""The interpreter: from a compiled bot and a query to a stream of events. No HTTP here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ..compiled import (
    CompiledBot,
    CompiledCallRoute,
    CompiledEscape,
    CompiledFlowRoute,
    CompiledLLM,
    CompiledRoute,
    GenerateSuggestions,
    PoeSuggests,
    suggestions_of,
)
from ..errors import RunError
from ..limits import Limiter
from ..protocol.events import Error, Event, Meta
from ..protocol.requests import QueryRequest
from ..providers import open_stream
from ..providers.relay import Opener, RelayTiming
from ..state import FlowState
from .actions import run_route
from .conditions import holds
from .context import build_context, split_conversation
from .files import Uploader, upload
from .flows import FlowRunner, pick_escape, read_state
from .input import check_input
from .quota import over_limit, recall
from .scope import Fetcher, FlowTrace, Scope, fetch

__all__ = ["NO_MESSAGE", "NO_ROUTE", "NO_ROUTE_LOC", "run"]

log = logging.getLogger("engine.runtime")
DEFAULT_TIMING = RelayTiming()

NO_MESSAGE = "The request carried no user message to answer."
NO_ROUTE = "Sorry, this bot has no answer for that message."
NO_ROUTE_LOC = "routes"  # on a trace's path: no route matched
BROKEN_CONDITION = "Sorry, this bot could not decide how to answer. Its creator has been told."


def run(
    bot: CompiledBot,
    request: QueryRequest,
    now: datetime | None = None,
    *,
    opener: Opener = open_stream,
    timing: RelayTiming = DEFAULT_TIMING,
    limiter: Limiter | None = None,
    fetcher: Fetcher = fetch,
    uploader: Uploader = upload,
    trace: FlowTrace | None = None,
) -> Iterator[Event]:
    """Every answer starts with `meta`; failures the creator must fix end in one `error`.

    `opener` starts model calls (tests and `engine test` pass a scripted one); `timing`
    sets keep-alive and retry pacing; `limiter` counts the bot's `limits` and keeps its
    remembered vars (None: nothing counted or remembered); `fetcher` makes `call` steps'
    requests; `uploader` sends a reply's files to Poe (`engine test` and `chat` pass
    `preview`, which sends nothing); `trace` (tests, the playground) records what the turn
    did.
    """
    trace = FlowTrace() if trace is None else trace
    conversation = split_conversation(request)
    turned_away = _turned_away(bot, request, conversation is not None, limiter)
    if turned_away is not None or conversation is None:
        if conversation is not None:
            trace.limited = "messages"
        yield Meta()
        yield turned_away or Error(NO_MESSAGE, allow_retry=False)
        return
    history, message = conversation
    context = build_context(bot, request, history, message, now or datetime.now(UTC))
    # Remembered vars first: what this conversation carries is newer.
    context["vars"] = recall(limiter, bot, request.user_id) | context["vars"]
    scope = Scope(
        bot,
        request,
        message,
        history,
        context,
        opener,
        timing,
        limiter=limiter,
        fetcher=fetcher,
        uploader=uploader,
        trace=trace,
    )
    state = read_state(bot, history, request.conversation_id)
    try:
        refusal, escape, route = _decide(bot, context, state, scope.trace.path)
    except RunError as exc:
        yield Meta()
        yield _logged(bot, exc)
        return
    if state is not None:  # a flow is running: the message answers it
        yield Meta(flush=bot.flows_wait)
        yield from _resumed(scope, state, refusal, escape)
    else:
        yield from _routed(scope, route, refusal)


def _turned_away(
    bot: CompiledBot, request: QueryRequest, has_message: bool, limiter: Limiter | None
) -> Error | None:
    """Why the request gets no answer at all: no user message, or over a message limit."""
    if not has_message:
        return Error(NO_MESSAGE, allow_retry=False)
    return over_limit(limiter, bot, request.user_id, "messages")


def _decide(
    bot: CompiledBot, context: dict[str, Any], state: FlowState | None, path: list[str]
) -> tuple[Error | None, CompiledEscape | None, CompiledRoute | None]:
    """The input rules' refusal, then an escape (a flow is running) or the route to take;
    the loc of what was decided goes on `path`."""
    refusal = check_input(bot.input, context, path) if bot.input is not None else None
    if state is None:
        return refusal, None, None if refusal else _pick_route(bot, context, path)
    context["vars"].update(state.vars)
    return refusal, None if refusal else pick_escape(bot, context, path), None


def _routed(scope: Scope, route: CompiledRoute | None, refusal: Error | None) -> Iterator[Event]:
    """Route first, then `meta`: only the route knows whether Poe should suggest replies.
    A route that asks a model sends `meta` at once (flush); others answer in one write."""
    poe_suggests = isinstance(suggestions_of(route), PoeSuggests)
    yield Meta(suggested_replies=poe_suggests, flush=_waits(scope.bot, route))
    if refusal is not None or route is None:
        yield refusal or Error(NO_ROUTE, allow_retry=False)
        return
    try:
        yield from run_route(scope, route)
    except RunError as exc:
        yield _logged(scope.bot, exc)


def _resumed(
    scope: Scope, state: FlowState, refusal: Error | None, escape: CompiledEscape | None
) -> Iterator[Event]:
    """The running flow answers: kept as it was when input rules refuse the message,
    stopped by an escape, or resumed with the message as the answer to its question."""
    runner = FlowRunner(scope)
    try:
        if refusal is not None:
            yield from runner.keep(state)
            yield refusal
        elif escape is not None:
            reply = escape.reply.render(scope.context) if escape.reply else None
            yield from runner.escape(reply, escape.flow, state)
        else:
            yield from runner.resume(state)
    except RunError as exc:
        yield _logged(scope.bot, exc)


def _waits(bot: CompiledBot, route: CompiledRoute | None) -> bool:
    """Whether answering this route waits for a model or an outside call (or may: a flow
    of a bot whose flows have such steps)."""
    if isinstance(route, CompiledLLM | CompiledCallRoute):
        return True
    if isinstance(route, CompiledFlowRoute):
        return bot.flows_wait
    return isinstance(suggestions_of(route), GenerateSuggestions)


def _logged(bot: CompiledBot, exc: RunError) -> Error:
    log.error("bot %s: %s", bot.name, exc.detail)
    return Error(exc.user_text, allow_retry=exc.allow_retry)


def _pick_route(
    bot: CompiledBot, context: dict[str, object], path: list[str]
) -> CompiledRoute | None:
    """The first route whose condition holds; `routes` goes on `path` when none does."""
    for route in bot.routes:
        if route.condition is None or holds(
            route.condition, context, f"{route.loc}.if", BROKEN_CONDITION
        ):
            path.append(route.loc)
            return route
    path.append(NO_ROUTE_LOC)
    return None
