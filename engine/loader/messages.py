"""Pydantic's validation errors rewritten for bot authors: what was given, what is allowed."""

from __future__ import annotations

import types
import typing
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from ..errors import did_you_mean
from ..patterns import PatternError
from ..spec import Bot
from ..spec._base import ENV_REF
from ..spec.bot import BOT_NAME_PATTERN
from ..spec.files import FILE_NAME_PATTERN, MIME_TYPE_PATTERN

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a mapping",
    list: "a list",
    type(None): "nothing",
}
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "list_type": "a list (lines starting with '- ')",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}


_SHOWN_CHARS = 60


def describe(value: Any) -> str:
    """`'0.3' (a string)`: the value as written and what YAML made of it."""
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        shown = "a mapping" if isinstance(value, dict) else "a list"
    elif isinstance(value, str) and len(value) > _SHOWN_CHARS:
        # A message is one line a person reads: a long value's start is enough to find it.
        return f"{value[:_SHOWN_CHARS]!r}... (a string of {len(value):,} characters)"
    else:
        shown = repr(value)
    return shown if shown == kind else f"{shown} ({kind})"


class Reading(NamedTuple):
    """One pydantic error as an author reads it.

    What was expected is kept apart from the problem: each member of a union complains
    about the same value (`got 3 (an integer)`), and their expectations merge into one
    message with "or".
    """

    problem: str  # `got '3' (a string)`, `unknown key 'nmae'`
    expected: str | None = None  # `an integer`; None when the problem says it all
    hint: str | None = None
    wrong_type: bool = False  # the value is not of the type expected: a list, not a string

    @property
    def message(self) -> str:
        if self.expected is None:
            return self.problem
        return f"{self.problem}; expected {self.expected}"


def _secret(value: Any) -> str:
    """Where a `${VAR}` belongs, text that is no reference may be the key itself: `validate`
    output ends up in terminals and CI logs, so only a mistyped reference is shown."""
    if isinstance(value, str) and not value.startswith("$"):
        return f"a key written out ({len(value):,} characters, not shown)"
    return describe(value)


def message_for(error: ErrorDetails, root: type[BaseModel] = Bot) -> Reading:
    """The message and optional hint for one pydantic error of a `root` document."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        allowed = allowed_keys(error["loc"][:-1], root)
        hint = did_you_mean(name, allowed) or (
            "allowed: " + ", ".join(allowed) if allowed else None
        )
        return Reading(f"unknown key '{name}'", hint=hint)
    if kind == "missing":
        return Reading(f"missing required key '{error['loc'][-1]}'")
    if kind in _EXPECTED:
        quoted = isinstance(value, str) and kind.startswith(("int", "float", "bool"))
        hint = "remove the quotes" if quoted else None
        return Reading(f"got {describe(value)}", _EXPECTED[kind], hint, wrong_type=True)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        hint = _close_literal(value, expected)
        return Reading(f"got {describe(value)}", f"one of {expected}", hint)
    if kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        shown = _secret(value) if pattern == ENV_REF.pattern else describe(value)
        return Reading(f"got {shown}", _PATTERNS.get(pattern, f"text matching {pattern}"))
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        hint = cause.hint if isinstance(cause, PatternError) else None
        return Reading(str(error["msg"]).removeprefix("Value error, "), hint=hint)
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        expected = str(ctx.get("expected_tags", ""))
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        return Reading(
            f"unknown {discriminator} {ctx.get('tag')!r}",
            f"one of {expected}",
            _close_literal(ctx.get("tag"), expected),
        )
    if kind == "union_tag_not_found":  # `{name: x}` where `{kind: text, name: x}` was meant
        discriminator = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        return Reading(f"missing required key '{discriminator}'")
    if kind == "route_action":
        present = sorted(value) if isinstance(value, dict) else []
        return Reading(str(error["msg"]), hint=_route_hint(present))
    if kind == "step_action":
        present = sorted(value) if isinstance(value, dict) else []
        return Reading(str(error["msg"]), hint=_step_hint(present))
    return Reading(f"{error['msg'][0].lower()}{error['msg'][1:]}")


# What a value of each pattern-checked field must look like, said in words.
_PATTERNS = {
    ENV_REF.pattern: "an environment reference like ${MY_BOT_ACCESS_KEY}, never the key itself",
    BOT_NAME_PATTERN: "letters, digits, '-', '_' or '.' (it becomes the URL path), at most 64",
    FILE_NAME_PATTERN: "a file name, without '/', '\\' or control characters, at most 200",
    MIME_TYPE_PATTERN: "a MIME type such as text/csv",
}


def _close_literal(value: Any, expected: str) -> str | None:
    choices = [part.strip(" '\"") for part in expected.replace(" or ", ", ").split(",")]
    return did_you_mean(value, choices) if isinstance(value, str) else None


def _route_hint(present: list[str]) -> str | None:
    from ..spec.routes import ACTION_KEYS, ErrorRoute, ReplyRoute

    actions = [key for key in present if key in ACTION_KEYS]
    if len(actions) > 1:
        return "found " + " and ".join(actions) + "; split them into separate routes"
    known = set(ReplyRoute.model_fields) | set(ErrorRoute.model_fields) | {"if"}
    for key in present:
        hint = did_you_mean(key, ACTION_KEYS)
        if key not in known and hint:
            return f"unknown key '{key}'; {hint}"
    return None


def _step_hint(present: list[str]) -> str | None:
    from ..spec.flows import STEP_KEYS

    actions = [key for key in present if key in STEP_KEYS]
    if len(actions) > 1:
        return "found " + " and ".join(actions) + "; split them into separate steps"
    for key in present:
        hint = did_you_mean(key, STEP_KEYS)
        if key not in ("id", "if") and hint:
            return f"unknown key '{key}'; {hint}"
    return None


def allowed_keys(loc: tuple[Any, ...], root: type[BaseModel] = Bot) -> list[str]:
    """The keys the model at `loc` accepts (loc as pydantic reports it, tags included)."""
    model = _model_at(root, list(loc))
    if model is None:
        return []
    return sorted(field.alias or name for name, field in model.model_fields.items())


def tag_positions(loc: tuple[Any, ...], root: type[BaseModel] = Bot) -> set[int]:
    """Indexes of the parts of `loc` that select a union member rather than name a key."""
    tags: set[int] = set()
    _model_at(root, list(loc), tags=tags)
    return tags


def _model_at(
    annotation: Any, loc: list[Any], start: int = 0, tags: set[int] | None = None
) -> type[BaseModel] | None:
    annotation, consumed = _unwrap(annotation, loc[start] if start < len(loc) else None)
    if consumed:
        if tags is not None:
            tags.add(start)
        start += 1
    if start >= len(loc):
        return annotation if _is_model(annotation) else None
    part = loc[start]
    if _is_model(annotation):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return _model_at(field.annotation, loc, start + 1, tags)
        return None
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args:
        return _model_at(args[0], loc, start + 1, tags)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        return _model_at(args[1], loc, start + 1, tags)
    return None


def _unwrap(annotation: Any, tag: Any) -> tuple[Any, bool]:
    """Strip Annotated and pick the union member named by the tag (consumed) or the only one."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation, False
    members = [_unwrap(arg, None)[0] for arg in typing.get_args(annotation)]
    for member in members:
        if _is_model(member) and tag is not None and tag in _tags(member):
            return member, True
    useful = [m for m in members if _is_model(m) or typing.get_origin(m) in (list, dict)]
    return (useful[0] if len(useful) == 1 else annotation), False


def _tags(model: type[BaseModel]) -> set[Any]:
    """The discriminator values that select `model` in a union."""
    tags = {getattr(model, "kind", None), model.__name__}  # pydantic's name for a member
    for field in model.model_fields.values():
        if typing.get_origin(field.annotation) is typing.Literal:
            tags.update(typing.get_args(field.annotation))
    return tags


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
