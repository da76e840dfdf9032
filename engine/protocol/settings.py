"""A bot's answer to Poe's `settings` request."""

from __future__ import annotations

from typing import Any

from ..spec import Bot

RESPONSE_VERSION = 2


def settings_response(bot: Bot) -> dict[str, Any]:
    """Only the keys the bot sets (Poe keeps its defaults for the rest), plus the version."""
    body: dict[str, Any] = {"response_version": RESPONSE_VERSION}
    if bot.greeting is not None:
        body["introduction_message"] = bot.greeting
    body |= bot.settings.model_dump(mode="json", exclude_none=True, by_alias=True)
    return body
