"""Sampling parameters rendered per request, validated and clamped to the provider's range."""

from __future__ import annotations

import logging
import math
from typing import Any

from ..compiled import CompiledModel, Param
from ..errors import RunError
from ..providers.base import Sampling
from ..templates import Renderable

log = logging.getLogger("engine.runtime")

# What each provider accepts; values outside are clamped rather than refused.
TEMPERATURE_MAX = {"openai": 2.0, "anthropic": 1.0, "poe": 2.0, "scripted": 2.0}
MAX_TOKENS_LIMIT = 200_000


def sampling_for(model: CompiledModel, context: dict[str, Any], bot_name: str) -> Sampling:
    """The model's parameters for this request; a template that is not a number is ignored."""
    provider = model.spec.provider
    temperature = _number(model.temperature, context, "temperature", bot_name)
    top_p = _number(model.top_p, context, "top_p", bot_name)
    max_tokens = _number(model.max_tokens, context, "max_tokens", bot_name)
    rendered = (_render(text, context, "stop", bot_name, "left out") for text in model.stop)
    stop = [text for text in rendered if text]
    return Sampling(
        temperature=_clamp(temperature, 0.0, TEMPERATURE_MAX[provider]),
        top_p=_clamp(top_p, 0.0, 1.0),
        max_tokens=None if max_tokens is None else int(min(max(max_tokens, 1), MAX_TOKENS_LIMIT)),
        stop=tuple(stop),
    )


def _render(
    template: Renderable, context: dict[str, Any], name: str, bot_name: str, fallback: str
) -> str:
    """The rendered text; "" when the template fails (a parameter the user's client never
    sent, say), logged for the creator with what happens instead."""
    try:
        return template.render(context)
    except RunError as exc:
        log.warning("bot %s: %s: %s; %s", bot_name, name, exc.detail, fallback)
        return ""


def _number(value: Param, context: dict[str, Any], name: str, bot_name: str) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    text = _render(value, context, name, bot_name, "using the default").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # NaN would reach the API as invalid JSON, or crash int()
        log.warning(
            "bot %s: %s rendered to %r, not a number; using the default", bot_name, name, text
        )
        return None
    return number


def _clamp(value: float | None, low: float, high: float) -> float | None:
    return None if value is None else min(max(value, low), high)
