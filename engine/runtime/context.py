"""The one context document that conditions and templates read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..compiled import CompiledBot
from ..protocol.requests import Message, QueryRequest


def split_conversation(request: QueryRequest) -> tuple[list[Message], Message] | None:
    """Earlier messages and the new user message (Poe puts it last; be lenient if not)."""
    for index in reversed(range(len(request.query))):
        if request.query[index].role == "user":
            return request.query[:index], request.query[index]
    return None


def build_context(
    bot: CompiledBot,
    request: QueryRequest,
    history: list[Message],
    message: Message,
    now: datetime,
) -> dict[str, Any]:
    """Plain JSON-like data only: JMESPath and the Jinja sandbox both read it safely."""
    return {
        "message": message.content,
        "attachments": [attachment.model_dump() for attachment in message.attachments],
        "params": _params(bot.param_defaults, message.parameters),
        "history": [
            {"role": m.role, "content": m.content} for m in history if m.role in ("user", "bot")
        ],
        "turn": sum(1 for m in history if m.role == "user") + 1,
        "vars": {},
        "user": {"id": request.user_id},
        "conversation": {"id": request.conversation_id},
        "language": request.language_code,
        "bot": {"name": bot.name, "description": bot.spec.description},
        "now": _now(now),
        "files": {},
    }


def _params(defaults: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by the user's values; a value of the wrong type keeps the default."""
    params = dict(defaults)
    for name, value in chosen.items():
        default = defaults.get(name)
        if default is None or _same_kind(default, value):
            params[name] = value
    return params


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _now(now: datetime) -> dict[str, Any]:
    """`now` for templates and conditions; to the second, so made once a second (a
    date's formatting was a tenth of a rule-based turn's context)."""
    global _last_now
    # The wall-clock second with what says where it is (equal aware datetimes are equal
    # instants: the offset tells their wall clocks apart; `fold` tells naive ones).
    key = (now.replace(microsecond=0), now.fold, now.utcoffset(), now.tzinfo is None)
    if _last_now[0] != key:
        _last_now = (key, _now_fields(now))
    return dict(_last_now[1])


_last_now: tuple[Any, dict[str, Any]] = (None, {})


def _now_fields(now: datetime) -> dict[str, Any]:
    return {
        "iso": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M"),
        "hour": now.hour,
        "minute": now.minute,
        "weekday": now.weekday(),
        "timestamp": int(now.timestamp()),
    }
