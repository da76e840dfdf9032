"""`limits:` and `remember:` compiled: each limit parsed once, a bad one a located error."""

from __future__ import annotations

from limits import RateLimitItem

from ..compiled import Allowance, CompiledLimits, CompiledMemory
from ..limits import parse_limit
from ..spec.limits import RateLimits, Remember
from .checker import SourceChecker
from .yaml_marks import Loc

DAY_SECONDS = 86_400.0


def compile_limits(spec: RateLimits, checker: SourceChecker) -> CompiledLimits:
    """Every limit parsed, each kind's narrowest (shortest period) first."""
    whole: Loc = ("limits", "bot")

    def allowance(kind: str) -> Allowance:
        return Allowance(
            per_user=_parsed(getattr(spec, kind), ("limits", kind), checker),
            whole_bot=_parsed(getattr(spec.bot, kind), (*whole, kind), checker),
        )

    return CompiledLimits(
        messages=allowance("messages"),
        model_calls=allowance("model_calls"),
        calls=allowance("calls"),
        fail_closed=spec.fail_closed,
    )


def compile_memory(spec: Remember) -> CompiledMemory:
    return CompiledMemory(names=frozenset(spec.vars), ttl_seconds=spec.days * DAY_SECONDS)


def _parsed(
    written: str | list[str], loc: Loc, checker: SourceChecker
) -> tuple[RateLimitItem, ...]:
    texts = (
        [(written, loc)]
        if isinstance(written, str)
        else [(text, (*loc, index)) for index, text in enumerate(written)]
    )
    items = []
    for text, at in texts:
        try:
            items.append(parse_limit(text))
        except ValueError as exc:
            checker.report(at, str(exc), None)
    return tuple(sorted(items, key=lambda item: (item.get_expiry(), item.amount)))
