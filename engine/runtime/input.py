"""Input rules: the reason a message is refused, or None when it is fine."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..compiled import CompiledInput, Rule
from ..patterns import Pattern
from ..protocol.events import Error
from ..templates import Renderable

TOO_LONG = "user_message_too_long"
REJECTED = "Sorry, I can't accept that message."
REQUIRED = "input.attachments.required"
MOST = "input.attachments.max"
TYPES = "input.attachments.types"


@dataclass(frozen=True)
class Refusal:
    """Why a message is refused: the built-in reason, and the rule's own message if any."""

    loc: str  # the rule, as `validate` names it (the turn's trace records it)
    reason: str
    message: Renderable | None = None
    error_type: str | None = None  # None: the bot's `error_type`


def check_input(
    rules: CompiledInput, context: dict[str, Any], path: list[str] | None = None
) -> Error | None:
    """The error event for the first rule the message breaks: its own message, else the
    bot's `invalid`, else the built-in reason. The rule's loc goes on `path`."""
    refusal = _violation(rules, context["message"], context["attachments"])
    if refusal is None:
        return None
    if path is not None:
        path.append(refusal.loc)
    template = refusal.message or rules.invalid
    text = template.render(context) if template is not None else refusal.reason
    return Error(text, allow_retry=False, error_type=refusal.error_type or rules.error_type)


def _violation(
    rules: CompiledInput, message: str, attachments: list[dict[str, Any]]
) -> Refusal | None:
    longest, shortest = rules.max_length, rules.min_length
    if longest is not None and len(message) > longest.value:
        reason = (
            f"Your message is too long ({len(message):,} characters; "
            f"the limit is {longest.value:,})."
        )
        return Refusal("input.max_length", reason, longest.message, TOO_LONG)
    if shortest is not None and len(message.strip()) < shortest.value:
        reason = f"Your message is too short (at least {shortest.value:,} characters)."
        return Refusal("input.min_length", reason, shortest.message)
    # One search (or a few) over every pattern decides; only a refused message is searched
    # again, pattern by pattern, to find the rule whose message it gets.
    if any(pattern.found_in(message) for pattern in rules.reject):
        return _rejected(rules.reject_rules, message)
    return _attachment_violation(rules, attachments)


def _rejected(rules: tuple[Rule[Pattern], ...], message: str) -> Refusal:
    """The first pattern, in the order written, found in the message, with its message.
    Without `rules` (no pattern has a message) which one was found cannot matter, and is
    not searched for: the loc names the whole list."""
    for index, rule in enumerate(rules):
        if rule.value.found_in(message):
            return Refusal(f"input.reject[{index}]", REJECTED, rule.message)
    return Refusal("input.reject", REJECTED)


def _attachment_violation(
    rules: CompiledInput, attachments: list[dict[str, Any]]
) -> Refusal | None:
    required, most, allowed = (
        rules.attachments_required,
        rules.attachments_max,
        rules.attachment_types,
    )
    if required is not None and not attachments:
        return Refusal(REQUIRED, "Please attach a file.", required.message)
    if most is not None and len(attachments) > most.value:
        if most.value == 0:
            return Refusal(MOST, "This bot does not accept attachments.", most.message)
        return Refusal(MOST, f"Please attach at most {most.value} file(s).", most.message)
    if allowed is not None:
        for attachment in attachments:
            kind = attachment.get("content_type") or ""
            if not any(fnmatchcase(kind, pattern) for pattern in allowed.value):
                name = attachment.get("name") or "That file"
                reason = f"{name} is not accepted (allowed: {', '.join(allowed.value)})."
                return Refusal(TYPES, reason, allowed.message)
    return None
