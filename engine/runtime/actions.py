"""One `run_<kind>` function per action, looked up by the route's kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..compiled import CompiledBot, CompiledError, CompiledReply, CompiledRoute
from ..protocol.events import Error, Event, Suggest, Text
from ..templates import Renderable


def run_reply(bot: CompiledBot, route: CompiledReply, context: dict[str, Any]) -> Iterator[Event]:
    # Render everything before yielding, so a template error never follows half an answer.
    text = route.reply.render(context)
    suggestions = _suggestions(route.suggest, bot.suggested_replies, context)
    yield Text(text)
    for suggestion in suggestions:
        yield Suggest(suggestion)


def run_error(bot: CompiledBot, route: CompiledError, context: dict[str, Any]) -> Iterator[Event]:
    yield Error(route.text.render(context), route.allow_retry, route.error_type)


def _suggestions(
    own: tuple[Renderable, ...] | None,
    default: tuple[Renderable, ...],
    context: dict[str, Any],
) -> list[str]:
    rendered = (
        template.render(context).strip() for template in (own if own is not None else default)
    )
    return [text for text in rendered if text]


Runner = Callable[[CompiledBot, Any, dict[str, Any]], Iterator[Event]]
RUNNERS: dict[str, Runner] = {"reply": run_reply, "error": run_error}


def run_route(bot: CompiledBot, route: CompiledRoute, context: dict[str, Any]) -> Iterator[Event]:
    return RUNNERS[route.kind](bot, route, context)
