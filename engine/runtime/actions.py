"""One `run_<kind>` function per action, looked up by the route's kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..compiled import CompiledError, CompiledReply, CompiledRoute, GenerateSuggestions
from ..protocol.events import Error, Event, Text
from ..providers.base import ChatMessage
from .llm import run_llm
from .scope import Scope
from .suggestions import generated, render_static, suggest_events


def run_reply(scope: Scope, route: CompiledReply) -> Iterator[Event]:
    # Render everything before yielding, so a template error never follows half an answer.
    text = route.reply.render(scope.context)
    suggestions = render_static(scope, route.suggest)
    yield Text(text, flush=isinstance(route.suggest, GenerateSuggestions) and not suggestions)
    yield from suggest_events(suggestions, route.suggest)
    asked = (ChatMessage("user", scope.message.content),)
    yield from generated(scope, route.suggest, text, asked)


def run_error(scope: Scope, route: CompiledError) -> Iterator[Event]:
    yield Error(route.text.render(scope.context), route.allow_retry, route.error_type)


Runner = Callable[[Scope, Any], Iterator[Event]]
RUNNERS: dict[str, Runner] = {"reply": run_reply, "llm": run_llm, "error": run_error}


def run_route(scope: Scope, route: CompiledRoute) -> Iterator[Event]:
    return RUNNERS[route.kind](scope, route)
