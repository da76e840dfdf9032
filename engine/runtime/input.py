"""Input rules: the reason a message is refused, or None when it is fine."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from ..compiled import CompiledInput
from ..protocol.events import Error

TOO_LONG = "user_message_too_long"


def check_input(rules: CompiledInput, context: dict[str, Any]) -> Error | None:
    """The error event for the first rule the message breaks."""
    found = _violation(rules, context["message"], context["attachments"])
    if found is None:
        return None
    reason, error_type = found
    text = rules.invalid.render(context) if rules.invalid is not None else reason
    return Error(text, allow_retry=False, error_type=error_type or rules.error_type)


def _violation(
    rules: CompiledInput, message: str, attachments: list[dict[str, Any]]
) -> tuple[str, str | None] | None:
    length = len(message.strip())
    if rules.max_length is not None and len(message) > rules.max_length:
        return (
            f"Your message is too long ({len(message):,} characters; "
            f"the limit is {rules.max_length:,}).",
            TOO_LONG,
        )
    if rules.min_length is not None and length < rules.min_length:
        return f"Your message is too short (at least {rules.min_length:,} characters).", None
    if any(pattern.found_in(message) for pattern in rules.reject):
        return "Sorry, I can't accept that message.", None
    return _attachment_violation(rules, attachments)


def _attachment_violation(
    rules: CompiledInput, attachments: list[dict[str, Any]]
) -> tuple[str, str | None] | None:
    if rules.attachments_required and not attachments:
        return "Please attach a file.", None
    if rules.attachments_max is not None and len(attachments) > rules.attachments_max:
        if rules.attachments_max == 0:
            return "This bot does not accept attachments.", None
        return f"Please attach at most {rules.attachments_max} file(s).", None
    allowed = rules.attachment_types
    if allowed is not None:
        for attachment in attachments:
            kind = attachment.get("content_type") or ""
            if not any(fnmatchcase(kind, pattern) for pattern in allowed):
                return (
                    f"{attachment.get('name') or 'That file'} is not accepted "
                    f"(allowed: {', '.join(allowed)}).",
                    None,
                )
    return None
