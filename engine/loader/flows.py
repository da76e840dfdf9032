"""Flows, escapes and `flow:` routes compiled: steps checked, jumps resolved to indexes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, assert_never

from ..compiled import (
    AnswerCheck,
    AskStep,
    Body,
    Branch,
    CallStep,
    CompiledCallRoute,
    CompiledEscape,
    CompiledFlow,
    CompiledLLM,
    CompiledStep,
    EndStep,
    JumpStep,
    LLMStep,
    ReplyStep,
    SetStep,
    StartFlowStep,
)
from ..errors import did_you_mean
from ..expressions import Condition
from ..patterns import compile_pattern
from ..spec import Bot
from ..spec import flows as spec
from ..spec.calls import Branch as SpecBranch
from ..spec.calls import CallSpec
from ..spec.routes import CallRoute, LLMRoute
from ..templates import JinjaTemplate, Renderable
from .attachments import compile_files
from .checker import SourceChecker
from .locate import loc_text
from .var_reads import condition_reads, template_reads
from .yaml_marks import Loc

if TYPE_CHECKING:
    from ..outbound import HostPolicy, Origin

ENV_IN_TEXT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Headers that carry credentials: their values belong in the environment, not the file.
SECRET_HEADER = re.compile(r"(?i)authorization|api[-_]?key|token|secret|password|cookie")
LLMCompiler = Callable[[LLMRoute, Loc, Condition | None], CompiledLLM]


class FlowCompiler:
    """Compiles a bot's flows; records, per step, the vars it reads for the analysis."""

    def __init__(
        self,
        checker: SourceChecker,
        bot: Bot,
        environ: Mapping[str, str],
        llm: LLMCompiler,
    ) -> None:
        self._checker, self._bot, self._environ, self._llm = checker, bot, environ, llm
        # engine.outbound (httpx, which imports click) is loaded only for bots that call.
        self.policy = self._policy(bot.allow_hosts) if bot.allow_hosts else None
        # (flow, step index) -> [(var, loc of the field reading it)]
        self.reads: dict[tuple[str, int], list[tuple[str, Loc]]] = {}
        self.started: set[str] = set()  # every flow a route, an escape or a step starts

    def flows(self) -> dict[str, CompiledFlow]:
        """Every flow, compiled; problems go to the checker."""
        return {name: self._flow(name, steps) for name, steps in self._bot.flows.items()}

    def escapes(self) -> tuple[CompiledEscape, ...]:
        """The escapes, compiled, with their flows checked."""
        compiled = []
        for index, escape in enumerate(self._bot.escapes):
            loc: Loc = ("escapes", index)
            condition = self._checker.condition(escape.when, (*loc, "if"))
            reply = None if escape.reply is None else self._template(escape.reply, (*loc, "reply"))
            if escape.flow is not None:
                self.flow_ref(escape.flow, (*loc, "flow"))
            if condition is not None:
                compiled.append(CompiledEscape(condition, reply, escape.flow))
        return tuple(compiled)

    def call_route(self, route: CallRoute, index: int) -> CompiledCallRoute:
        """A `call` route: compiled as a flow of two steps, the call and the reply."""
        loc: Loc = ("routes", index)
        self._flow_name, self._ids = loc_text(loc), dict[str, int]()
        on_error = route.call.on_error
        if on_error is not None and on_error.goto is not None:
            message = "a route has no steps to go to"
            self._checker.report((*loc, "call", "on_error", "goto"), message, "use reply or flow")
        condition = self._checker.condition(route.when, (*loc, "if"))
        steps = (
            self._call(route.call, loc),
            ReplyStep(
                loc_text(loc),
                self._template(route.reply, (*loc, "reply")),
                compile_files(self._checker, route.files, (*loc, "files")),
            ),
        )
        return CompiledCallRoute(loc_text(loc), condition, CompiledFlow(loc_text(loc), steps, ""))

    def flow_ref(self, name: str, loc: Loc) -> None:
        """Note a flow started here; report it when it does not exist."""
        self.started.add(name)
        if name not in self._bot.flows:
            known = sorted(self._bot.flows)
            hint = did_you_mean(name, known) or (
                f"flows defined: {', '.join(known)}" if known else "define it under `flows:`"
            )
            self._checker.report(loc, f"unknown flow '{name}'", hint)

    # -- one flow ------------------------------------------------------------------------

    def _flow(self, name: str, steps: list[spec.Step]) -> CompiledFlow:
        ids: dict[str, int] = {}
        for index, step in enumerate(steps):
            if step.id is None:
                continue
            if step.id in ids:
                message = f"step id '{step.id}' is already used by steps[{ids[step.id]}]"
                self._checker.report(("flows", name, index, "id"), message, "ids must differ")
            ids.setdefault(step.id, index)
        self._flow_name, self._ids = name, ids
        compiled = tuple(
            self._step(step, ("flows", name, index)) for index, step in enumerate(steps)
        )
        definition = json.dumps([s.model_dump(mode="json") for s in steps], sort_keys=True)
        digest = hashlib.sha256(definition.encode()).hexdigest()[:12]
        return CompiledFlow(name, compiled, digest)

    def _step(self, step: spec.Step, loc: Loc) -> CompiledStep:
        at = loc_text(loc)
        match step:
            case spec.AskStep():
                return self._ask(step, loc)
            case spec.ReplyStep():
                files = compile_files(self._checker, step.files, (*loc, "files"))
                return ReplyStep(at, self._template(step.reply, (*loc, "reply")), files)
            case spec.LLMStep():
                route = LLMRoute.model_construct(llm=step.llm, suggest=None, when=None)
                llm = replace(self._llm(route, loc, None), suggest=())
                for name, renderable in (("system", llm.system), ("prompt", llm.prompt)):
                    if isinstance(renderable, JinjaTemplate):
                        self._note_reads(template_reads(renderable.source), (*loc, "llm", name))
                return LLMStep(at, llm)
            case spec.CallStep():
                return self._call(step.call, loc)
            case spec.SetStep():
                return SetStep(at, tuple(self._set_value(k, v, loc) for k, v in step.set.items()))
            case spec.GotoStep():
                condition = self._condition(step.when, (*loc, "if"))
                return JumpStep(at, ((condition, self._target(step.goto, (*loc, "goto"))),))
            case spec.SwitchStep():
                cases = tuple(
                    (
                        self._condition(case.when, (*loc, "switch", i, "if")),
                        self._target(case.goto, (*loc, "switch", i, "goto")),
                    )
                    for i, case in enumerate(step.switch)
                )
                return JumpStep(at, cases)
            case spec.FlowStep():
                self.flow_ref(step.flow, (*loc, "flow"))
                return StartFlowStep(at, step.flow)
            case spec.EndStep():
                text = None if step.end is True else self._template(step.end, (*loc, "end"))
                return EndStep(at, text)
            case _:
                assert_never(step)

    def _ask(self, step: spec.AskStep, loc: Loc) -> AskStep:
        expect = step.expect
        check = AnswerCheck()
        if expect is not None and expect.pattern is not None:
            check = AnswerCheck("pattern", pattern=compile_pattern(expect.pattern))
        elif expect is not None and expect.choices is not None:
            check = AnswerCheck("choices", choices=tuple(expect.choices))
        elif expect is not None and expect.type is not None:
            check = AnswerCheck(expect.type)
        return AskStep(
            loc=loc_text(loc),
            question=self._template(step.ask, (*loc, "ask")),
            save=step.save,
            check=check,
            retry=None if step.retry is None else self._template(step.retry, (*loc, "retry")),
            tries=step.tries,
            on_fail=self._branch(step.on_fail, (*loc, "on_fail")),
        )

    def _call(self, call: CallSpec, loc: Loc) -> CallStep:
        at = (*loc, "call")
        return CallStep(
            loc=loc_text(loc),
            method=call.method,
            url=self._url(call.url, (*at, "url")),
            origin=self._origin(call.url, (*at, "url")),
            query=tuple(
                (name, self._template(value, (*at, "query", name)))
                for name, value in call.query.items()
            ),
            headers={
                name: self._env_text(value, (*at, "headers", name))
                for name, value in call.headers.items()
            },
            body=self._body(call.body, (*at, "body")),
            timeout=call.timeout,
            retries=call.retries,
            max_bytes=call.max_bytes,
            status=None if call.status is None else self._template(call.status, (*at, "status")),
            extract=tuple(
                (name, condition)
                for name, source in call.extract.items()
                if (condition := self._checker.condition(source, (*at, "extract", name)))
            ),
            on_error=self._branch(call.on_error, (*at, "on_error")),
        )

    def _url(self, source: str, loc: Loc) -> Renderable:
        compiled = self._checker.url_template(source, loc)
        if isinstance(compiled, JinjaTemplate):
            self._note_reads(template_reads(source), loc)
        return compiled

    def _origin(self, source: str, loc: Loc) -> Origin:
        from ..outbound import Origin, template_origin

        if self.policy is None:
            self.policy = self._policy([])
        try:
            origin = template_origin(source)
        except ValueError as exc:
            self._checker.report(loc, str(exc), None)
            return Origin("https", "invalid.invalid", 443)
        refusal = self.policy.host_refusal(origin.host)
        if refusal is not None:
            self._checker.report(loc, f"this call cannot be made: {refusal}", None)
        return origin

    def _env_text(self, value: str, loc: Loc) -> str:
        """A header value with its `${VAR}` references read from the environment."""
        if SECRET_HEADER.search(str(loc[-1])) and not ENV_IN_TEXT.search(value):
            self._checker.report(
                loc,
                f"the {loc[-1]} header is written out in the file",
                "keep secrets in the environment: write it like 'Bearer ${MY_API_TOKEN}'",
                warning=True,
            )

        def resolve(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._environ:
                hint = "set it in the environment or in .env"
                self._checker.report(loc, f"environment variable {name} is not set", hint)
                return ""
            return self._environ[name]

        return ENV_IN_TEXT.sub(resolve, value)

    def _body(self, value: Any, loc: Loc) -> Body:
        if isinstance(value, str):
            return self._template(value, loc)
        if isinstance(value, dict):
            return {str(k): self._body(v, (*loc, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self._body(v, (*loc, i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float):
            return value
        self._checker.report(loc, "a body holds JSON values only", None)
        return None

    def _set_value(
        self, name: str, value: str | spec.SetExpr, loc: Loc
    ) -> tuple[str, Renderable | Condition]:
        at = (*loc, "set", name)
        if isinstance(value, spec.SetExpr):
            condition = self._condition(value.expr, (*at, "expr"))
            return name, condition if condition is not None else Condition("`null`")
        return name, self._template(value, at)

    def _branch(self, branch: SpecBranch | None, loc: Loc) -> Branch:
        if branch is None:
            return Branch(None)
        reply = None if branch.reply is None else self._template(branch.reply, (*loc, "reply"))
        goto = None if branch.goto is None else self._target(branch.goto, (*loc, "goto"))
        if branch.flow is not None:
            self.flow_ref(branch.flow, (*loc, "flow"))
        return Branch(reply, goto, branch.flow)

    def _target(self, step_id: str, loc: Loc) -> int:
        if step_id in self._ids:
            return self._ids[step_id]
        known = sorted(self._ids)
        hint = did_you_mean(step_id, known) or (
            f"step ids in this flow: {', '.join(known)}" if known else "give a step `id: ...`"
        )
        self._checker.report(loc, f"no step '{step_id}' in flow '{self._flow_name}'", hint)
        return 0

    def _template(self, source: str, loc: Loc) -> Renderable:
        compiled = self._checker.template(source, loc)
        if isinstance(compiled, JinjaTemplate):  # not plain text, nor one with an error
            self._note_reads(template_reads(source), loc)
        return compiled

    def _condition(self, source: str | None, loc: Loc) -> Condition | None:
        compiled = self._checker.condition(source, loc)
        if compiled is not None:  # None: no condition, or one with an error
            self._note_reads(condition_reads(compiled.source), loc)
        return compiled

    def _note_reads(self, names: list[str], loc: Loc) -> None:
        """Record the vars a step's field reads, for the read-before-saved check."""
        if len(loc) < 3 or loc[0] != "flows":
            return
        key = (str(loc[1]), int(loc[2]))
        self.reads.setdefault(key, []).extend((name, loc) for name in names)

    def _policy(self, entries: list[str]) -> HostPolicy:
        from ..outbound import HostPolicy

        good = []
        for index, entry in enumerate(entries):
            try:
                HostPolicy.from_entries([entry])
            except ValueError as exc:
                message = str(exc).removeprefix("allow_hosts: ")
                self._checker.report(("allow_hosts", index), message, None)
                continue
            good.append(entry)
        return HostPolicy.from_entries(good)
