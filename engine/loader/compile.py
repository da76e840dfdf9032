"""Spec models to a CompiledBot: compile templates, conditions and patterns once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ..compiled import CompiledBot, CompiledError, CompiledInput, CompiledReply, CompiledRoute
from ..errors import ExpressionError, SourceSnippet, SpecError
from ..expressions import Condition, compile_condition
from ..spec import Bot, ErrorRoute, InputRules, ReplyRoute
from ..spec.context import CONTEXT_NAMES
from ..spec.poe_settings import ParameterControls
from ..templates import Renderable, TemplateCompiler
from .locate import loc_text, offset_position, position
from .sources import sources
from .yaml_marks import Loc, MarkedDocument

T = TypeVar("T")


class SourceChecker:
    """Compiles templates and conditions, turning each failure into a located SpecError."""

    def __init__(self, document: MarkedDocument, file: str, prompts: Mapping[str, str]) -> None:
        self.problems: list[SpecError] = []
        self._document, self._file = document, file
        self._templates = TemplateCompiler(prompts, CONTEXT_NAMES)

    def template(self, source: str, loc: Loc) -> Renderable:
        return self._guard(lambda: self._templates.compile(source, loc_text(loc)), source, loc)

    def condition(self, source: str | None, loc: Loc) -> Condition | None:
        if source is None:
            return None
        return self._guard(lambda: compile_condition(source), source, loc)

    def _guard(self, build: Callable[[], T], source: str, loc: Loc) -> T:
        try:
            return build()
        except ExpressionError as exc:
            self.problems.append(self._located(exc, source, loc))
            return None  # type: ignore[return-value]  # never used: problems stop the load

    def _located(self, exc: ExpressionError, source: str, loc: Loc) -> SpecError:
        mark = position(self._document, loc)
        line, column = offset_position(mark, self._document.lines, source, exc.offset)
        snippet = SourceSnippet(source, exc.offset)
        return SpecError(
            exc.message, self._file, line, column, loc_text(loc), exc.hint, snippet=snippet
        )


def check_sources(document: MarkedDocument, file: str) -> list[SpecError]:
    """Check the templates and conditions of a file whose structure did not validate."""
    raw_prompts = document.data.get("prompts") if isinstance(document.data, dict) else None
    prompts = {}
    if isinstance(raw_prompts, dict):
        prompts = {str(k): v for k, v in raw_prompts.items() if isinstance(v, str)}
    checker = SourceChecker(document, file, prompts)
    for kind, text, loc in sources(document.data):
        if kind == "jmespath":
            checker.condition(text, loc)
        else:
            checker.template(text, loc)
    return checker.problems


class Compiler:
    """Compiles one validated Bot, collecting every problem instead of stopping at the first."""

    def __init__(self, spec: Bot, document: MarkedDocument, file: str) -> None:
        self.spec = spec
        self._document, self._file = document, file
        self._checker = SourceChecker(document, file, spec.prompts)
        self.template = self._checker.template
        self.condition = self._checker.condition

    @property
    def problems(self) -> list[SpecError]:
        return self._checker.problems

    def compile(self, name: str, access_key: str | None, key_var: str | None) -> CompiledBot:
        spec = self.spec
        for prompt_name, source in spec.prompts.items():
            self.template(source, ("prompts", prompt_name))
        routes = tuple(self._route(route, index) for index, route in enumerate(spec.routes))
        self._check_reachable()
        return CompiledBot(
            name=name,
            file=self._file,
            spec=spec,
            access_key=access_key,
            access_key_var=key_var,
            routes=routes,
            suggested_replies=self._templates_at(spec.suggested_replies, ("suggested_replies",)),
            input=self._input(spec.input) if spec.input else None,
            param_defaults=_param_defaults(spec.settings.parameter_controls),
        )

    def _templates_at(self, sources: list[str], loc: Loc) -> tuple[Renderable, ...]:
        return tuple(self.template(source, (*loc, index)) for index, source in enumerate(sources))

    def _route(self, route: ReplyRoute | ErrorRoute, index: int) -> CompiledRoute:
        loc: Loc = ("routes", index)
        condition = self.condition(route.when, (*loc, "if"))
        if isinstance(route, ReplyRoute):
            suggest = None
            if route.suggest is not None:
                suggest = self._templates_at(route.suggest, (*loc, "suggest"))
            reply = self.template(route.reply, (*loc, "reply"))
            return CompiledReply(loc_text(loc), condition, reply, suggest)
        error = route.error
        text = self.template(error.text, (*loc, "error", "text"))
        return CompiledError(loc_text(loc), condition, text, error.allow_retry, error.error_type)

    def _check_reachable(self) -> None:
        fallbacks = [i for i, route in enumerate(self.spec.routes) if route.when is None]
        if fallbacks and fallbacks[0] < len(self.spec.routes) - 1:
            loc: Loc = ("routes", fallbacks[0] + 1)
            mark = position(self._document, loc)
            self.problems.append(
                SpecError(
                    f"this route is never reached: routes[{fallbacks[0]}] has no `if` "
                    "and answers every message",
                    self._file,
                    mark.line,
                    mark.column,
                    loc_text(loc),
                    hint="move the fallback route last",
                )
            )
        if not fallbacks:
            mark = position(self._document, ("routes",), key=True)
            self.problems.append(
                SpecError(
                    "no fallback route: a message that matches no `if` gets an error",
                    self._file,
                    mark.line,
                    mark.column,
                    "routes",
                    hint="add a last route without `if`",
                    severity="warning",
                )
            )

    def _input(self, rules: InputRules) -> CompiledInput:
        attachments = rules.attachments
        invalid = self.template(rules.invalid, ("input", "invalid")) if rules.invalid else None
        return CompiledInput(
            min_length=rules.min_length,
            max_length=rules.max_length,
            reject=tuple(re.compile(pattern) for pattern in rules.reject),
            attachments_required=bool(attachments and attachments.required),
            attachments_max=attachments.max if attachments else None,
            attachment_types=tuple(attachments.types)
            if attachments and attachments.types
            else None,
            invalid=invalid,
            error_type=rules.error_type,
        )


def _param_defaults(controls: ParameterControls | None) -> dict[str, Any]:
    """Each control's default, so `params` is complete before the user touches anything."""
    defaults: dict[str, Any] = {}
    for control in _controls(controls):
        name = getattr(control, "parameter_name", None)
        default = getattr(control, "default_value", None)
        if name is None:
            continue
        if default is None and getattr(control, "options", None):
            default = control.options[0].value
        if default is None and getattr(control, "min_value", None) is not None:
            default = control.min_value
        defaults.setdefault(name, default)
    return defaults


def _controls(controls: ParameterControls | None) -> Iterator[Any]:
    if controls is None:
        return
    for section in controls.sections:
        groups = [section.controls or []] + [tab.controls for tab in section.tabs or []]
        for group in groups:
            for control in group:
                yield control
                yield from getattr(control, "controls", [])
