"""The one context document that conditions and templates read, described for users."""

from __future__ import annotations

CONTEXT_DOC: dict[str, str] = {
    "message": "The user's new message (text).",
    "attachments": "Files on the new message: name, content_type, url, parsed_content.",
    "params": "Parameter-control values: the defaults, overridden by the user's choices.",
    "history": "Earlier messages, oldest first: role (user or bot) and content.",
    "turn": "How many user messages the conversation has, this one included.",
    "vars": "Variables saved by flows, and those the bot remembers for the user (`remember`).",
    "user": "The user: id.",
    "conversation": "The conversation: id.",
    "language": "The user's language, a BCP 47 tag such as `en` or `pt-BR` (anything else "
    "reads as `en`).",
    "bot": "This bot: name and description.",
    "now": "Current UTC time: iso, date, time, hour, minute, weekday (Monday=0), timestamp.",
    "files": "In a reply with `files:`, its files by name: name, url, content_type, and ref "
    "(the inline reference of an `inline: true` file, else null). Empty elsewhere.",
}
CONTEXT_NAMES = frozenset(CONTEXT_DOC)
