"""Rate limits and quotas (`limits:`) and vars remembered per user (`remember:`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._base import StrictModel


def _any_case(word: str) -> str:
    """`[sS][eE]...`: JSON Schema's patterns have no flag for case (`limits` ignores it)."""
    return "".join(f"[{letter}{letter.upper()}]" for letter in word)


# The loader reads each one with engine.limits.parse_limit, which says what is wrong with
# it; the pattern is for editors only (a pydantic pattern would give a vaguer message).
PERIODS = ("second", "minute", "hour", "day", "month", "year")
LIMIT_PATTERN = (
    rf"^\s*[0-9]+\s*(/|\s+{_any_case('per')}\s+)\s*([0-9]+\s+)?"
    rf"({'|'.join(_any_case(period) for period in PERIODS)})[sS]?\s*$"
)
Limit = Annotated[
    str,
    Field(
        json_schema_extra={
            "format": "rate-limit",
            "pattern": LIMIT_PATTERN,
            "examples": ["20/minute", "500/day", "5 per 10 minutes"],
        }
    ),
]
Limits = Limit | list[Limit]
VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
LIMITS_DOC = (
    "One limit or a list, each a count per period: `20/minute`, `500/day`, "
    "`5 per 10 minutes` (second, minute, hour, day, month, year)."
)


class WholeBotLimits(StrictModel):
    """Ceilings shared by every user of the bot together."""

    messages: Limits = Field(
        default_factory=list, description=f"Messages answered, all users together. {LIMITS_DOC}"
    )
    model_calls: Limits = Field(
        default_factory=list,
        description=f"Calls to models (answers and generated suggestions), all users "
        f"together. {LIMITS_DOC}",
    )
    calls: Limits = Field(
        default_factory=list,
        description=f"Calls to outside APIs, all users together. {LIMITS_DOC}",
    )


class RateLimits(StrictModel):
    """How much each user (and everyone together) may use the bot; over a limit, the user
    gets a Poe error offering a retry and saying when."""

    messages: Limits = Field(
        default_factory=list, description=f"Messages each user may send. {LIMITS_DOC}"
    )
    model_calls: Limits = Field(
        default_factory=list,
        description=f"Model calls each user's messages may make (the answer and generated "
        f"suggestions each count one). {LIMITS_DOC}",
    )
    calls: Limits = Field(
        default_factory=list,
        description=f"Calls to outside APIs each user's messages may make. {LIMITS_DOC}",
    )
    bot: WholeBotLimits = Field(
        default_factory=WholeBotLimits,
        description="Ceilings for the whole bot, shared by every user.",
    )
    fail_closed: bool = Field(
        False,
        description="When the store of counts (Redis) is unreachable, refuse messages instead "
        "of answering without counting (the default: fail open).",
    )


class Remember(StrictModel):
    """Vars kept per user across conversations, read back into `vars` on the next one."""

    vars: list[Annotated[str, Field(pattern=VAR_NAME)]] = Field(
        min_length=1,
        description="Names of the vars to keep, such as `name` or `language`.",
        json_schema_extra={"examples": [["name", "language"]]},
    )
    days: float = Field(
        90,
        gt=0,
        le=3650,
        description="How long a kept value lasts after it was last set, in days.",
    )
