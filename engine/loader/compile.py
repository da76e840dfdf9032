"""Spec models to a CompiledBot: compile templates, conditions and patterns once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, assert_never

from ..compiled import (
    Chain,
    CompiledBot,
    CompiledError,
    CompiledFlowRoute,
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
from ..spec.routes import CallRoute, FlowRoute, LLMRoute, PoeSuggestions, Suggest
from ..spec.routes import GenerateSuggestions as SpecGenerate
from ..state import state_key
from ..templates import Renderable
from .attachments import compile_files
from .checker import SourceChecker
from .flow_graph import check_flows
from .flows import FlowCompiler
from .keys import AccessKey
from .limits import compile_limits, compile_memory
from .locate import loc_text, position
from .models import ModelCompiler, dependencies
from .yaml_marks import Loc, MarkedDocument


def compile_bot(
    spec: Bot,
    document: MarkedDocument,
    file: str,
    name: str,
    key: AccessKey,
    environ: Mapping[str, str],
) -> tuple[CompiledBot, list[SpecError]]:
    """The compiled bot and every problem found compiling it (any error makes it unusable)."""
    checker = SourceChecker(document, file, spec.prompts)
    prompts = {
        prompt_name: checker.template(source, ("prompts", prompt_name))
        for prompt_name, source in spec.prompts.items()
    }
    models = ModelCompiler(checker, environ, key.value is not None)
    compiler = Compiler(checker, models, prompts, models.chain(spec.model, ("model",)))
    flow_compiler = FlowCompiler(checker, spec, environ, compiler.llm)
    routes = tuple(
        flow_compiler.call_route(route, index)
        if isinstance(route, CallRoute)
        else compiler.route(route, index)
        for index, route in enumerate(spec.routes)
    )
    flows, escapes = flow_compiler.flows(), flow_compiler.escapes()
    for index, route in enumerate(spec.routes):
        if isinstance(route, FlowRoute):
            flow_compiler.flow_ref(route.flow, ("routes", index, "flow"))
    check_flows(checker, flows, flow_compiler.reads, flow_compiler.started)
    secret = environ.get(STATE_SECRET_VAR, "").strip() or None
    bot = CompiledBot(
        name=name,
        file=file,
        spec=spec,
        access_key=key.value,
        access_key_var=key.variable,
        routes=routes,
        suggested_replies=compiler.templates_at(spec.suggested_replies, ("suggested_replies",)),
        input=compiler.input(spec.input) if spec.input else None,
        param_defaults=_param_defaults(spec.settings.parameter_controls),
        dependencies=dependencies(routes),
        limits=compile_limits(spec.limits, checker) if spec.limits else None,
        remember=compile_memory(spec.remember, spec, checker) if spec.remember else None,
        flows=flows,
        escapes=escapes,
        hosts=flow_compiler.policy,
        state_key=state_key(name, secret, key.value),
    )
    problems = reachability(document, file, [r.when for r in spec.routes])
    if flows and (secret is None or len(secret) < MIN_STATE_SECRET):
        problems.append(_state_key_warning(document, file, key.value is not None, secret))
    return bot, checker.problems + problems


class Compiler:
    """Compiles the parts of one validated Bot, collecting every problem in `checker`
    instead of stopping at the first."""

    def __init__(
        self,
        checker: SourceChecker,
        models: ModelCompiler,
        prompts: Mapping[str, Renderable],
        bot_chain: Chain,
    ) -> None:
        self._checker, self._models = checker, models
        self._prompts, self._bot_chain = prompts, bot_chain
        self.template = checker.template
        self.condition = checker.condition

    def templates_at(self, sources: list[str], loc: Loc) -> tuple[Renderable, ...]:
        return tuple(self.template(source, (*loc, index)) for index, source in enumerate(sources))

    def route(
        self, route: ReplyRoute | LLMRoute | ErrorRoute | FlowRoute, index: int
    ) -> CompiledRoute:
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
                files = compile_files(self._checker, route.files, (*loc, "files"))
                return CompiledReply(loc_text(loc), condition, reply, suggest, files)
            case LLMRoute():
                return self.llm(route, loc, condition)
            case FlowRoute():
                return CompiledFlowRoute(loc_text(loc), condition, route.flow)
            case _:
                assert_never(route)

    def llm(self, route: LLMRoute, loc: Loc, condition: Condition | None) -> CompiledLLM:
        action, at = route.llm, (*loc, "llm")
        chain = self._models.chain(action.model, (*at, "model")) or self._bot_chain
        if not chain:
            self._error(at, "this llm route has no model", "add `model:` to the bot or the route")
        system = action.system
        return CompiledLLM(
            loc=loc_text(loc),
            condition=condition,
            system=None if system is None else self._prompt_or_template(system, (*at, "system")),
            prompt=self._prompt_or_template(action.prompt, (*at, "prompt")),
            chain=chain,
            history_messages=action.history.messages,
            history_chars=action.history.chars,
            suggest=self._suggest(route.suggest, (*loc, "suggest"), chain),
        )

    def _prompt_or_template(self, source: str, loc: Loc) -> Renderable:
        """`system: persona` names a prompt; anything else is an inline template."""
        if source in self._prompts:
            return self._prompts[source]
        return self.template(source, loc)

    def _suggest(self, value: Suggest | None, loc: Loc, chain: Chain) -> Suggestions:
        match value:
            case None:
                return None
            case list():
                return self.templates_at(value, loc)
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
        self._checker.report(loc, message, hint)

    def input(self, rules: InputRules) -> CompiledInput:
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


def reachability(
    document: MarkedDocument, file: str, conditions: Sequence[object | None]
) -> list[SpecError]:
    """A route after one without `if` is never reached (an error); no route without `if`
    leaves some messages unanswered (a warning). `conditions` holds each route's `if`."""
    fallbacks = [index for index, condition in enumerate(conditions) if condition is None]
    if fallbacks and fallbacks[0] < len(conditions) - 1:
        loc: Loc = ("routes", fallbacks[0] + 1)
        mark = position(document, loc)
        message = (
            f"this route is never reached: routes[{fallbacks[0]}] has no `if` "
            "and answers every message"
        )
        hint = "move the fallback route last"
        return [SpecError(message, file, mark.line, mark.column, loc_text(loc), hint)]
    if not fallbacks:
        mark = position(document, ("routes",), key=True)
        message = "no fallback route: a message that matches no `if` gets an error"
        hint = "add a last route without `if`"
        return [
            SpecError(message, file, mark.line, mark.column, "routes", hint, severity="warning")
        ]
    return []


STATE_SECRET_VAR = "ENGINE_STATE_SECRET"
# One signed state is enough to try guesses at the secret offline: it must not be short.
MIN_STATE_SECRET = 32


def _state_key_warning(
    document: MarkedDocument, file: str, has_key: bool, secret: str | None
) -> SpecError:
    """Flows sign their state; say which key does it when ENGINE_STATE_SECRET is unset,
    and that a short one can be guessed from any state a user receives."""
    mark = position(document, ("flows",), key=True)
    if secret is not None:
        message = f"ENGINE_STATE_SECRET has {len(secret)} characters: a user holding any "
        message += "flow state could guess it offline and forge states"
        hint = f"use at least {MIN_STATE_SECRET} random characters"
    elif has_key:
        message = "ENGINE_STATE_SECRET is not set: flow state is signed with a key derived "
        message += "from the bot's access key"
        hint = "set ENGINE_STATE_SECRET (the same on every server) to sign it independently"
    else:
        message = "ENGINE_STATE_SECRET is not set and the bot has no access key: flow state "
        message += "is signed with a key of this process only"
        hint = "a restart, or another server, starts running flows afresh; set it"
    return SpecError(message, file, mark.line, mark.column, "flows", hint, severity="warning")


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
