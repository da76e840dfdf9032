"""Spec models to a CompiledBot: compile templates, conditions and patterns once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, assert_never

from ..compiled import (
    Chain,
    CompiledBot,
    CompiledError,
    CompiledInput,
    CompiledLLM,
    CompiledReply,
    CompiledRoute,
    GenerateSuggestions,
    PoeSuggests,
    Rule,
    Suggestions,
    V,
)
from ..errors import SpecError
from ..expressions import Condition
from ..patterns import compile_any, compile_pattern
from ..spec import AttachmentRules, Bot, ErrorRoute, InputRules, ReplyRoute
from ..spec.input import RuleSpec, TypesRule, rule_value
from ..spec.poe_settings import ParameterControls
from ..spec.routes import GenerateSuggestions as SpecGenerate
from ..spec.routes import LLMRoute, PoeSuggestions, Suggest
from ..templates import Renderable
from .checker import SourceChecker
from .locate import loc_text, position
from .models import ModelCompiler, dependencies
from .yaml_marks import Loc, MarkedDocument


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

    def compile(
        self, name: str, access_key: str | None, key_var: str | None, environ: Mapping[str, str]
    ) -> CompiledBot:
        spec = self.spec
        self._prompts = {
            prompt_name: self.template(source, ("prompts", prompt_name))
            for prompt_name, source in spec.prompts.items()
        }
        self._models = ModelCompiler(
            self._checker, self._document, self._file, environ, access_key is not None
        )
        self._bot_chain = self._models.chain(spec.model, ("model",))
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
            dependencies=dependencies(routes),
        )

    def _templates_at(self, sources: list[str], loc: Loc) -> tuple[Renderable, ...]:
        return tuple(self.template(source, (*loc, index)) for index, source in enumerate(sources))

    def _route(self, route: ReplyRoute | LLMRoute | ErrorRoute, index: int) -> CompiledRoute:
        loc: Loc = ("routes", index)
        condition = self.condition(route.when, (*loc, "if"))
        match route:
            case ErrorRoute(error=error):
                text = self.template(error.text, (*loc, "error", "text"))
                return CompiledError(
                    loc_text(loc), condition, text, error.allow_retry, error.error_type
                )
            case ReplyRoute():
                reply = self.template(route.reply, (*loc, "reply"))
                suggest = self._suggest(route.suggest, (*loc, "suggest"), self._bot_chain)
                return CompiledReply(loc_text(loc), condition, reply, suggest)
            case LLMRoute():
                return self._llm(route, loc, condition)
            case _:
                assert_never(route)

    def _llm(self, route: LLMRoute, loc: Loc, condition: Condition | None) -> CompiledLLM:
        action, at = route.llm, (*loc, "llm")
        chain = self._models.chain(action.model, (*at, "model")) or self._bot_chain
        if not chain:
            self._error(at, "this llm route has no model", "add `model:` to the bot or the route")
        system = self._prompt_or_template(action.system, (*at, "system"))
        return CompiledLLM(
            loc=loc_text(loc),
            condition=condition,
            system=system,
            prompt=self._prompt_or_template(action.prompt, (*at, "prompt")),  # type: ignore[arg-type]
            chain=chain,
            history_messages=action.history.messages,
            history_chars=action.history.chars,
            suggest=self._suggest(route.suggest, (*loc, "suggest"), chain),
        )

    def _prompt_or_template(self, source: str | None, loc: Loc) -> Renderable | None:
        """`system: persona` names a prompt; anything else is an inline template."""
        if source is None:
            return None
        if source in self._prompts:
            return self._prompts[source]
        return self.template(source, loc)

    def _suggest(self, value: Suggest | None, loc: Loc, chain: Chain) -> Suggestions:
        match value:
            case None:
                return None
            case list():
                return self._templates_at(value, loc)
            case PoeSuggestions():
                return PoeSuggests()
            case SpecGenerate():
                own = self._models.chain(value.model, (*loc, "model"))
                if not (own or chain):
                    self._error(loc, "generating suggestions needs a model", "add `model:` here")
                return GenerateSuggestions(value.generate, own or chain)
            case _:
                assert_never(value)

    def _error(self, loc: Loc, message: str, hint: str) -> None:
        mark = position(self._document, loc)
        self.problems.append(
            SpecError(message, self._file, mark.line, mark.column, loc_text(loc), hint)
        )

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
        files = rules.attachments or AttachmentRules()
        required = files.required if isinstance(files.required, bool) else files.required.value
        types = files.types.value if isinstance(files.types, TypesRule) else files.types
        messages = [
            self._message(item, ("input", "reject", i)) for i, item in enumerate(rules.reject)
        ]
        # Each pattern alone is needed only to tell which one refused, for its message.
        pairs = zip(rules.patterns(), messages, strict=True)
        reject = tuple(Rule(compile_pattern(s), m) for s, m in pairs) if any(messages) else ()
        return CompiledInput(
            min_length=self._rule(
                rule_value(rules.min_length), rules.min_length, ("input", "min_length")
            ),
            max_length=self._rule(
                rule_value(rules.max_length), rules.max_length, ("input", "max_length")
            ),
            reject=compile_any(rules.patterns()),
            reject_rules=reject,
            attachments_required=self._rule(
                required or None, files.required, ("input", "attachments", "required")
            ),
            attachments_max=self._rule(
                rule_value(files.max), files.max, ("input", "attachments", "max")
            ),
            attachment_types=self._rule(
                tuple(types) if types else None, files.types, ("input", "attachments", "types")
            ),
            invalid=self.template(rules.invalid, ("input", "invalid")) if rules.invalid else None,
            error_type=rules.error_type,
        )

    def _rule(self, value: V | None, written: object, loc: Loc) -> Rule[V] | None:
        """The rule at `loc` (None when it is not set), with its message if it has one."""
        return None if value is None else Rule(value, self._message(written, loc))

    def _message(self, written: object, loc: Loc) -> Renderable | None:
        """The rule's own message, compiled, when it is written as `{..., message: ...}`."""
        if isinstance(written, RuleSpec):
            return self.template(written.message, (*loc, "message"))
        return None


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
