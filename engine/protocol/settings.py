"""A bot's answer to Poe's `settings` request."""

from __future__ import annotations

from typing import Any

from ..compiled import CompiledBot

RESPONSE_VERSION = 2


def settings_response(bot: CompiledBot) -> dict[str, Any]:
    """Only the keys the bot sets (Poe keeps its defaults for the rest), plus the version.

    `server_bot_dependencies` is derived from the Poe bots the file calls, so it can never
    drift from what the bot really does.
    """
    spec = bot.spec
    body: dict[str, Any] = {"response_version": RESPONSE_VERSION}
    if spec.greeting is not None:
        body["introduction_message"] = spec.greeting
    if bot.dependencies:
        body["server_bot_dependencies"] = dict(bot.dependencies)
    body |= spec.settings.model_dump(mode="json", exclude_none=True, by_alias=True)
    return body
