"""The conversation, as a model sees it: Poe's history mapped, trimmed and rendered."""

from __future__ import annotations

from typing import Any

from ..compiled import CompiledLLM
from ..protocol.requests import Message
from ..providers.base import ChatMessage

_ROLES = {"user": "user", "bot": "assistant"}


def build_messages(
    route: CompiledLLM, history: list[Message], message: Message, context: dict[str, Any]
) -> tuple[str | None, tuple[ChatMessage, ...]]:
    """System text and messages: trimmed history, then the rendered prompt as the user turn.

    Every message keeps its own role field, so nothing a user writes can turn into a
    system or assistant turn, whatever markers the text contains.
    """
    system = route.system.render(context) if route.system is not None else None
    caller = _caller_system(history, route.history_messages)
    if caller:
        system = f"{system}\n\n{caller}" if system else caller
    past = [
        ChatMessage(_ROLES[m.role], _with_attachments(m.content, m))  # type: ignore[arg-type]
        for m in history
        if m.role in _ROLES
    ]
    prompt = _with_attachments(route.prompt.render(context), message)
    return system or None, (
        *trim(past, route.history_messages, route.history_chars),
        ChatMessage("user", prompt),
    )


def _caller_system(history: list[Message], max_messages: int | None) -> str | None:
    """The system prompt of whoever called the bot, or None.

    Poe's users cannot write system messages; a bot calling this one through Poe's bot
    query API can, and puts its system prompt first, as this engine's own `poe` models do.
    So only a leading system message counts, and only when the route reads the
    conversation at all: `history: {messages: 0}` means nothing but the bot's own prompt.
    """
    if max_messages == 0 or not history or history[0].role != "system":
        return None
    return history[0].content or None


def trim(
    messages: list[ChatMessage], max_messages: int | None, max_chars: int | None
) -> list[ChatMessage]:
    """Drop the oldest messages until both budgets hold."""
    if max_messages is not None:
        messages = messages[len(messages) - max_messages :] if max_messages else []
    if max_chars is not None:
        total = sum(len(m.content) for m in messages)
        while messages and total > max_chars:
            total -= len(messages.pop(0).content)
    return messages


def _with_attachments(text: str, message: Message) -> str:
    """Attachments' parsed text (what Poe extracted) follows the message it came with."""
    parts = [text]
    for attachment in message.attachments:
        if attachment.parsed_content:
            parts.append(f"[Attachment: {attachment.name}]\n{attachment.parsed_content}")
    return "\n\n".join(parts)
