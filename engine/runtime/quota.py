"""A bot's `limits:` and `remember:` at run time, over the server's one Limiter.

Keys name the bot, what is counted and whose: `(bot, "messages", "user", id)` for a user's
messages, `(bot, "model calls", "everyone")` for the whole bot's model calls. Each user's
limits are hit before the whole bot's, narrowest first, and the first refusal stops the
rest, so a refused message does not use up the bot's ceiling; all in one `hit_each`, one
store round trip. Without a limiter (a caller that counts nothing, such as bench/) every hit
is allowed and nothing is remembered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from ..compiled import Allowance, CompiledBot
from ..limits import Limiter, Verdict, retry_message
from ..protocol.events import Error

log = logging.getLogger("engine.runtime")

Kind = Literal["messages", "model_calls", "calls"]
# What each kind is called in its keys, and in the words the user reads.
_KEY = {"messages": "messages", "model_calls": "model calls", "calls": "calls"}
_NOUN = {"messages": "message", "model_calls": "model call", "calls": "outside call"}


def over_limit(limiter: Limiter | None, bot: CompiledBot, user_id: str, kind: Kind) -> Error | None:
    """Count one use of `kind`; the Poe error to answer with when a limit refuses it."""
    if limiter is None or bot.limits is None:
        return None
    allowance: Allowance = getattr(bot.limits, kind)
    if not (allowance.per_user or allowance.whole_bot):
        return None
    key = _KEY[kind]
    mine: tuple[str, ...] = (bot.name, key, "user", user_id)
    everyone: tuple[str, ...] = (bot.name, key, "everyone")
    # Without a user id (a hand-made request: Poe always sends one) no user's count is
    # known; only the whole bot's limits can count it.
    per_user = allowance.per_user if user_id else ()
    checks = [(item, mine) for item in per_user]
    checks += [(item, everyone) for item in allowance.whole_bot]
    if not checks:
        return None
    verdict, refused_by = limiter.hit_each(checks, fail_closed=bot.limits.fail_closed)
    if verdict.allowed:
        return None
    whole_bot = refused_by is not None and refused_by >= len(per_user)
    return _refused(bot, kind, verdict, whole_bot)


def _refused(bot: CompiledBot, kind: Kind, verdict: Verdict, whole_bot: bool) -> Error:
    text = retry_message(verdict, noun=_NOUN[kind], whole_bot=whole_bot)
    if verdict.store_down:
        log.warning("bot %s: refused a %s: limits fail closed", bot.name, _NOUN[kind])
    else:
        whose = "the whole bot's" if whole_bot else "a user's"
        log.info("bot %s: refused a %s: %s limit %s", bot.name, _NOUN[kind], whose, verdict.limit)
    return Error(text, allow_retry=True)


def recall(limiter: Limiter | None, bot: CompiledBot, user_id: str) -> dict[str, Any]:
    """The user's remembered vars for this bot ({} when it remembers none, or the store is
    down); a var the bot no longer lists in `remember` is left out."""
    if limiter is None or bot.remember is None or not user_id:
        return {}  # without a user id, whose vars they are is unknown
    found = limiter.store.recall(bot.name, user_id)
    return {name: value for name, value in found.items() if name in bot.remember.names}


def remember_changed(
    limiter: Limiter | None,
    bot: CompiledBot,
    user_id: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> None:
    """Keep each remembered var that this message set or changed (the expiry starts again)."""
    if limiter is None or bot.remember is None or not user_id:
        return
    for name in sorted(bot.remember.names):
        if name in after and (name not in before or after[name] != before[name]):
            limiter.store.remember(bot.name, user_id, name, after[name], bot.remember.ttl_seconds)
