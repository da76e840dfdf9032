"""`limits:` and `remember:` compiled: each limit parsed once, a bad one a located error."""

from __future__ import annotations

from limits import RateLimitItem

from ..compiled import Allowance, CompiledLimits, CompiledMemory
from ..errors import did_you_mean
from ..limits import parse_limit
from ..spec import Bot
from ..spec.flows import AskStep, CallStep, SetStep
from ..spec.limits import RateLimits, Remember
from ..spec.routes import CallRoute
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


def compile_memory(spec: Remember, bot: Bot, checker: SourceChecker) -> CompiledMemory:
    """The vars to keep; one that nothing saves is a warning (a typo, most likely)."""
    saved = saved_vars(bot)
    for index, name in enumerate(spec.vars):
        if name not in saved:
            hint = did_you_mean(name, sorted(saved)) or (
                "save it in a flow (`save:`, `set:` or a call's `extract:`)"
            )
            message = f"'{name}' is never saved, so it is never remembered"
            checker.report(("remember", "vars", index), message, hint, warning=True)
    return CompiledMemory(names=frozenset(spec.vars), ttl_seconds=spec.days * DAY_SECONDS)


def saved_vars(bot: Bot) -> set[str]:
    """Every var a flow step or a call route can save."""
    saved: set[str] = set()
    for route in bot.routes:
        if isinstance(route, CallRoute):
            saved |= set(route.call.extract)
    for steps in bot.flows.values():
        for step in steps:
            match step:
                case AskStep():
                    saved.add(step.save)
                case SetStep():
                    saved |= set(step.set)
                case CallStep():
                    saved |= set(step.call.extract)
    return saved


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
