"""Rate limits and quotas (`20/minute`, `500/day`) counted by the `limits` library in a Store.

`Limiter.hit("20/minute", bot, "messages", "user", user_id)` counts one hit and says whether
it is allowed, how many are left and, when refused, in how many seconds to retry. The keys
name the bot, what is counted and for whom: two limits with the same rate and keys share a
counter. When the store is unreachable a hit is allowed (fail open) unless the caller asks
to fail closed; `Store` logs that once a minute, not per request.

`Limiter.hit_all` counts a turn's limits together, narrowest first, stopping at the first
refusal so that a refused hit does not use up the limits after it.

Strategies: `fixed-window` (the default) counts from a limit's first hit until its period
has passed: one store round trip for all of a `hit_all`'s limits, allowed or refused (one
SQLite write transaction, or one Redis script); `moving-window` counts the hits of the last
period, so a user cannot send 2 x 20 across a minute boundary, at two round trips and one
stored row per hit and limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from limits import RateLimitItem, parse_many
from limits.strategies import MovingWindowRateLimiter

from .store import Hit, Store, StoreDown

Strategy = Literal["fixed-window", "moving-window"]
LimitLike = str | RateLimitItem

# Refused because the store is down and the bot fails closed: when to say to come back.
STORE_DOWN_RETRY_SECONDS = 60.0
STORE_DOWN_MESSAGE = (
    "This bot can't check its usage limits right now. Please try again in a minute."
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one hit is allowed; when refused, which limit refused it and when to retry."""

    allowed: bool
    retry_after_seconds: float = 0.0
    remaining: int = 0
    limit: RateLimitItem | None = None  # None when the store decided nothing (it was down)
    store_down: bool = False


@lru_cache(maxsize=1024)
def parse_limit(text: str) -> RateLimitItem:
    """`20/minute`, `500 per day`, `5/10 minutes` -> a `limits` item; ValueError if not one."""
    try:
        items = parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(
            f"got {text!r}; expected a count of at least 1 per period, like '20/minute', "
            "'500/day' or '5 per 10 minutes' (periods: second, minute, hour, day, month, year)"
        )
    return items[0]


class Limiter:
    """Counts hits against limits in a Store, with `limits`' strategies."""

    def __init__(self, store: Store, strategy: Strategy = "fixed-window") -> None:
        self.store = store
        self.strategy = strategy
        self._moving = (
            MovingWindowRateLimiter(store.storage) if strategy == "moving-window" else None
        )

    @classmethod
    def from_url(
        cls,
        url: str | None,
        *,
        state_dir: Path = Path(".state"),
        strategy: Strategy = "fixed-window",
        **options: Any,
    ) -> Limiter:
        """Redis for a `redis://` URL; else the SQLite file in `state_dir` (see Store)."""
        return cls(Store.from_url(url, state_dir=state_dir, **options), strategy)

    def hit(
        self, limit: LimitLike, *keys: str, cost: int = 1, fail_closed: bool = False
    ) -> Verdict:
        """Count `cost` hits for `keys` against `limit` (e.g. "20/minute")."""
        item = parse_limit(limit) if isinstance(limit, str) else limit
        if self._moving is not None:
            try:
                return self._hit_moving(self._moving, item, keys, cost)
            except StoreDown:
                return _down(fail_closed)
        verdict, _ = self._hit_fixed([(item, keys)], cost, fail_closed)
        if verdict.allowed and not verdict.store_down:
            return Verdict(True, remaining=verdict.remaining, limit=item)
        return verdict

    def hit_all(
        self, checks: Iterable[tuple[LimitLike, Sequence[str]]], *, fail_closed: bool = False
    ) -> Verdict:
        """Hit each (limit, keys) in order and stop at the first refusal, so a refused hit
        does not use up the limits after it: put the narrowest (per user) first."""
        return self.hit_each(checks, fail_closed=fail_closed)[0]

    def hit_each(
        self,
        checks: Iterable[tuple[LimitLike, Sequence[str]]],
        *,
        cost: int = 1,
        fail_closed: bool = False,
    ) -> tuple[Verdict, int | None]:
        """`hit_all`, and the index in `checks` of the limit that refused (None if none did,
        or the store did not answer). The refusing limit counts the refused hit, as `hit`
        does; the limits after it count nothing. Fixed window: one store round trip."""
        items = [
            (parse_limit(limit) if isinstance(limit, str) else limit, tuple(keys))
            for limit, keys in checks
        ]
        if self._moving is None:
            return self._hit_fixed(items, cost, fail_closed)
        remaining: int | None = None
        for index, (item, keys) in enumerate(items):
            try:
                verdict = self._hit_moving(self._moving, item, keys, cost)
            except StoreDown:
                return _down(fail_closed), None
            if not verdict.allowed:
                return verdict, index
            remaining = (
                verdict.remaining if remaining is None else min(remaining, verdict.remaining)
            )
        return Verdict(True, remaining=remaining or 0), None

    def clear(self, limit: LimitLike, *keys: str) -> None:
        """Forget the hits counted for `keys` against `limit` (StoreDown if unreachable)."""
        item = parse_limit(limit) if isinstance(limit, str) else limit
        key = _counter_key(item, keys)
        self.store.run(lambda: self.store.storage.clear(key))

    def _hit_fixed(
        self, items: Sequence[tuple[RateLimitItem, tuple[str, ...]]], cost: int, fail_closed: bool
    ) -> tuple[Verdict, int | None]:
        # What FixedWindowRateLimiter.hit does for each (increment, then compare), all in
        # one round trip that stops at the first count over its limit; keeping the counts
        # and the refusing window's end, which `limits` would ask for in more round trips.
        hits = [_fixed_hit(item, keys, cost) for item, keys in items]
        if not hits:
            return Verdict(True), None
        backend = self.store.backend
        try:
            counts, reset_in = self.store.run(lambda: backend.incr_until_refused(hits))
        except StoreDown:
            return _down(fail_closed), None
        last = len(counts) - 1
        if counts[last] > hits[last][3]:
            return Verdict(False, retry_after_seconds=reset_in, limit=items[last][0]), last
        remaining = min([hit[3] - used for hit, used in zip(hits, counts, strict=True)])
        return Verdict(True, remaining=max(0, remaining)), None

    def _hit_moving(
        self,
        moving: MovingWindowRateLimiter,
        item: RateLimitItem,
        keys: Sequence[str],
        cost: int,
    ) -> Verdict:
        parts = [quote(part, safe="") for part in keys]  # no key can pass for another
        acquired = self.store.run(lambda: moving.hit(item, *parts, cost=cost))
        reset_at, remaining = self.store.run(lambda: moving.get_window_stats(item, *parts))
        if acquired:
            return Verdict(True, remaining=remaining, limit=item)
        return self._refused(item, reset_at)

    def _refused(self, item: RateLimitItem, reset_at: float) -> Verdict:
        wait = max(0.0, reset_at - self.store.now())
        return Verdict(False, retry_after_seconds=wait, limit=item)


def _counter_key(item: RateLimitItem, keys: Sequence[str]) -> str:
    """`limits`' key for the item and keys, each quoted so that no key can pass for another
    (`a/b`, `c` is not `a`, `b/c`)."""
    return item.key_for(*(quote(part, safe="") for part in keys))


@lru_cache(maxsize=4096)
def _fixed_hit(item: RateLimitItem, keys: tuple[str, ...], cost: int) -> Hit:
    """What the store is asked to count, remembered for the users seen lately: building
    the key is 3 µs a limit, a tenth of a 3-limit turn's counting on SQLite."""
    return (_counter_key(item, keys), item.get_expiry(), cost, item.amount)


def _down(fail_closed: bool) -> Verdict:
    if fail_closed:
        return Verdict(False, retry_after_seconds=STORE_DOWN_RETRY_SECONDS, store_down=True)
    return Verdict(True, store_down=True)


def describe_limit(limit: LimitLike, noun: str = "message") -> str:
    """`20 messages per minute`, `1 message per 10 minutes`, `10,000 model calls per day`."""
    item = parse_limit(limit) if isinstance(limit, str) else limit
    count = f"{item.amount:,} {_plural(noun, item.amount)}"
    period = item.GRANULARITY.name
    if item.multiples == 1:
        return f"{count} per {period}"
    return f"{count} per {item.multiples:,} {_plural(period, item.multiples)}"


def retry_message(verdict: Verdict, *, noun: str = "message", whole_bot: bool = False) -> str:
    """The text of the Poe error (`allow_retry: true`) for a refused hit.

    `whole_bot` is for a ceiling shared by every user, which the user did not reach alone.
    """
    if verdict.allowed:
        raise ValueError("retry_message() is for a refused hit; this one was allowed")
    if verdict.limit is None:
        return STORE_DOWN_MESSAGE
    limit = describe_limit(verdict.limit, noun)
    wait = format_wait(verdict.retry_after_seconds)
    if whole_bot:
        return f"This bot has reached its limit of {limit} for everyone. Try again in {wait}."
    return f"You have reached this bot's limit of {limit}. Try again in {wait}."


def format_wait(seconds: float) -> str:
    """`42 seconds`, `3 minutes`, `2 hours 5 minutes`, `1 day 3 hours`: rounded up."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return _count(whole, "second")
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return _count(minutes, "minute")
    if minutes < 24 * 60:
        return _two(*divmod(minutes, 60), "hour", "minute")
    return _two(*divmod(math.ceil(minutes / 60), 24), "day", "hour")


def _two(big: int, small: int, big_unit: str, small_unit: str) -> str:
    text = _count(big, big_unit)
    return f"{text} {_count(small, small_unit)}" if small else text


def _count(n: int, unit: str) -> str:
    return f"{n:,} {_plural(unit, n)}"


def _plural(noun: str, n: int) -> str:
    return noun if n == 1 else f"{noun}s"
