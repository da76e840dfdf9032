"""A bot after loading: every template and condition compiled, ready for the runtime."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .expressions import Condition
from .spec import Bot, ErrorType
from .templates import Renderable


@dataclass(frozen=True)
class CompiledReply:
    """`reply:` route."""

    loc: str
    condition: Condition | None
    reply: Renderable
    suggest: tuple[Renderable, ...] | None
    kind: str = "reply"


@dataclass(frozen=True)
class CompiledError:
    """`error:` route."""

    loc: str
    condition: Condition | None
    text: Renderable
    allow_retry: bool
    error_type: ErrorType | None
    kind: str = "error"


CompiledRoute = CompiledReply | CompiledError


@dataclass(frozen=True)
class CompiledInput:
    """Input rules with their patterns compiled."""

    min_length: int | None
    max_length: int | None
    reject: tuple[re.Pattern[str], ...]
    attachments_required: bool
    attachments_max: int | None
    attachment_types: tuple[str, ...] | None
    invalid: Renderable | None
    error_type: ErrorType


@dataclass(frozen=True)
class CompiledBot:
    """Everything the runtime needs to answer for one bot; built once per load."""

    name: str
    file: str
    spec: Bot
    access_key: str | None
    access_key_var: str | None
    routes: tuple[CompiledRoute, ...]
    suggested_replies: tuple[Renderable, ...]
    input: CompiledInput | None
    param_defaults: dict[str, Any] = field(default_factory=dict)
