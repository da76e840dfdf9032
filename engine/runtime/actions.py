"""One `run_<kind>` function per action, chosen by the compiled route's class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_never

from ..compiled import (
    CompiledCallRoute,
    CompiledError,
    CompiledFlowRoute,
    CompiledLLM,
    CompiledReply,
    CompiledRoute,
    GenerateSuggestions,
)
from ..protocol.events import Error, Event, Text
from ..providers.base import ChatMessage
from .files import reply_parts
from .flows import FlowRunner
from .llm import run_llm
from .scope import Scope
from .suggestions import generated, render_static, suggest_events


def run_reply(scope: Scope, route: CompiledReply) -> Iterator[Event]:
    # Render everything before yielding, so a template error never follows half an answer.
    files, text = reply_parts(scope, route.files, route.reply)
    suggestions = render_static(scope, route.suggest)
    yield from files
    yield Text(text, flush=isinstance(route.suggest, GenerateSuggestions) and not suggestions)
    yield from suggest_events(suggestions, route.suggest)
    asked = (ChatMessage("user", scope.message.content),)
    yield from generated(scope, route.suggest, text, asked)


def run_error(scope: Scope, route: CompiledError) -> Iterator[Event]:
    yield Error(route.text.render(scope.context), route.allow_retry, route.error_type)


def run_route(scope: Scope, route: CompiledRoute) -> Iterator[Event]:
    match route:
        case CompiledReply():
            return run_reply(scope, route)
        case CompiledLLM():
            return run_llm(scope, route)
        case CompiledError():
            return run_error(scope, route)
        case CompiledFlowRoute():
            return FlowRunner(scope).start(route.flow)
        case CompiledCallRoute():
            return FlowRunner(scope).run(route.flow)
        case _:
            assert_never(route)
