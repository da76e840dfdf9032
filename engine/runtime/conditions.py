"""Conditions evaluated while answering: a failing one is the creator's to fix, so it
becomes a RunError that logs where and why, and tells the user the bot could not decide."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jmespath.exceptions import JMESPathError

from ..errors import RunError
from ..expressions import Condition


def holds(condition: Condition, context: Mapping[str, Any], where: str, user_text: str) -> bool:
    """Whether `condition` is true of `context`; RunError(user_text) if it fails."""
    return bool(_evaluated(condition.matches, condition, context, where, user_text))


def search(condition: Condition, context: Mapping[str, Any], where: str, user_text: str) -> Any:
    """The value of `condition` over `context`; RunError(user_text) if it fails."""
    return _evaluated(condition.search, condition, context, where, user_text)


def _evaluated(
    evaluate: Callable[[Mapping[str, Any]], Any],
    condition: Condition,
    context: Mapping[str, Any],
    where: str,
    user_text: str,
) -> Any:
    try:
        return evaluate(context)
    except JMESPathError as exc:
        raise RunError(user_text, f"{where}: condition {condition.source!r} failed: {exc}") from exc
