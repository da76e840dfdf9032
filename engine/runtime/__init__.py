"""The interpreter: from a compiled bot and a query to a stream of events. No HTTP here."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

from jmespath.exceptions import JMESPathError

from ..compiled import CompiledBot, CompiledRoute
from ..errors import RunError
from ..protocol.events import Error, Event, Meta
from ..protocol.requests import QueryRequest
from .actions import run_route
from .context import build_context, last_user_message
from .input import check_input

__all__ = ["NO_MESSAGE", "NO_ROUTE", "run"]

log = logging.getLogger("engine.runtime")

NO_MESSAGE = "The request carried no user message to answer."
NO_ROUTE = "Sorry, this bot has no answer for that message."
BROKEN_CONDITION = "Sorry, this bot could not decide how to answer. Its creator has been told."


def run(bot: CompiledBot, request: QueryRequest, now: datetime | None = None) -> Iterator[Event]:
    """Every answer starts with `meta`; failures the creator must fix end in one `error`."""
    yield Meta()
    message = last_user_message(request)
    if message is None:
        yield Error(NO_MESSAGE, allow_retry=False)
        return
    context = build_context(bot, request, message, now or datetime.now(UTC))
    try:
        if bot.input is not None and (refusal := check_input(bot.input, context)):
            yield refusal
            return
        route = _pick_route(bot, context)
        if route is None:
            yield Error(NO_ROUTE, allow_retry=False)
            return
        yield from run_route(bot, route, context)
    except RunError as exc:
        log.error("bot %s: %s", bot.name, exc.detail)
        yield Error(exc.user_text, allow_retry=exc.allow_retry)


def _pick_route(bot: CompiledBot, context: dict[str, object]) -> CompiledRoute | None:
    for route in bot.routes:
        if route.condition is None:
            return route
        try:
            if route.condition.matches(context):
                return route
        except (JMESPathError, re.error) as exc:  # re.error: a pattern built from user data
            detail = f"{route.loc}.if: condition {route.condition.source!r} failed: {exc}"
            raise RunError(BROKEN_CONDITION, detail) from exc
    return None
