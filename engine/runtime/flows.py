"""Running flows: steps in order until one asks the user something or the flow ends.

A turn that stops at an `ask` ends with a `data` event holding the signed state (the
flow, the step, `vars` and the tries so far); Poe hands it back on that bot message, and
the next turn resumes there. A turn that ends the flow sends no `data`: the next message
then finds no state on the last bot message and starts fresh, as a cleared chat does.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any, assert_never

from jmespath.exceptions import JMESPathError

from ..compiled import (
    AskStep,
    Body,
    Branch,
    CallStep,
    CompiledBot,
    CompiledEscape,
    CompiledFlow,
    EndStep,
    JumpStep,
    LLMStep,
    ReplyStep,
    SetStep,
    StartFlowStep,
)
from ..errors import RunError
from ..expressions import Condition
from ..protocol.events import Data, Error, Event, Replace, Suggest, Text
from ..protocol.requests import Message
from ..state import FlowState, StateTooLarge, decode, encode
from .answers import read_answer, retry_text
from .conditions import holds, search
from .files import reply_parts
from .llm import run_llm
from .quota import over_limit, remember_changed
from .scope import Scope

log = logging.getLogger("engine.runtime")

MAX_STEPS = 100  # steps one turn may run: a loop without a question stops here
LOOPING = "Sorry, this bot went round in circles and stopped. Its creator has been told."
TOO_MUCH = (
    "Sorry, this conversation holds too much to continue, so it has stopped here. "
    "Please start again with shorter answers."
)
UNSTORABLE = (
    "Sorry, this conversation holds a value this bot cannot keep, so it has stopped here. "
    "Please start again."
)
GAVE_UP = "Sorry, that didn't work out. Let's leave it there for now."
CALL_FAILED = "Sorry, a service this bot relies on did not answer. Please try again later."
BROKEN_CONDITION = "Sorry, this bot could not decide how to go on. Its creator has been told."
Position = tuple[CompiledFlow, int] | None  # None: the flow has ended


def read_state(
    bot: CompiledBot, history: list[Message], conversation: str = ""
) -> FlowState | None:
    """The running flow from the metadata of the last bot message only; anything that
    cannot be resumed is logged and read as no flow (a fresh start)."""
    last = next((m for m in reversed(history) if m.role == "bot"), None)
    if last is None or not last.metadata or not bot.flows:
        return None
    state, reason = decode(last.metadata, bot.name, bot.state_key, conversation)
    if state is not None:
        reason = _stale(bot, state)
    if reason is not None:
        log.info("bot %s: flow state ignored, starting fresh: %s", bot.name, reason)
        return None
    return state


def _stale(bot: CompiledBot, state: FlowState) -> str | None:
    flow = bot.flows.get(state.flow)
    if flow is None:
        return f"the flow '{state.flow}' no longer exists"
    if flow.digest != state.digest:
        return f"the flow '{state.flow}' has changed since the state was written"
    if state.step >= len(flow.steps) or not isinstance(flow.steps[state.step], AskStep):
        return f"step {state.step} of flow '{state.flow}' is not a question"
    return None


def pick_escape(
    bot: CompiledBot, context: dict[str, Any], path: list[str]
) -> CompiledEscape | None:
    """The first escape whose condition holds, checked before a running flow resumes; its
    loc goes on `path`."""
    for index, escape in enumerate(bot.escapes):
        if holds(escape.condition, context, f"escapes[{index}].if", BROKEN_CONDITION):
            path.append(f"escapes[{index}]")
            return escape
    return None


class FlowRunner:
    """Runs one turn of flows against the scope's context, whose `vars` it fills."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.bot = scope.bot
        self.vars: dict[str, Any] = scope.context["vars"]
        self.shown = ""  # the answer's text so far, for a call's status line to restore
        self.steps = 0
        self.stopped = False  # an error event ended the answer
        self.paused = False  # the turn ends at a question, the flow still running
        self.before = dict(self.vars)  # recalled and carried: what the turn changes is kept
        self.path = scope.trace.path

    def start(self, name: str) -> Iterator[Event]:
        """Start the named flow (a `flow:` route)."""
        yield from self.run(self.bot.flows[name])

    def run(self, flow: CompiledFlow) -> Iterator[Event]:
        """Run a flow from its first step (a `call` route's two steps, too)."""
        yield from self._run((flow, 0))

    def resume(self, state: FlowState) -> Iterator[Event]:
        """The user's message answers the question the flow stopped at."""
        flow = self.bot.flows[state.flow]
        step = flow.steps[state.step]
        assert isinstance(step, AskStep)  # read_state checked it
        self.path.append(step.loc)
        self.vars.update(state.vars)
        fits, value = read_answer(step.check, self.scope.message.content)
        if fits:
            self.vars[step.save] = value
            yield from self._run((flow, state.step + 1))
            return
        if state.tries + 1 < step.tries:
            self.path.append(f"{step.loc}.retry")
            text = step.retry.render(self.scope.context) if step.retry else retry_text(step.check)
            yield self._say(text)
            yield from self._ask(flow, state.step, step, state.tries + 1)
            return
        self.path.append(f"{step.loc}.on_fail")
        position = yield from self._follow(flow, step.on_fail, GAVE_UP)
        yield from self._run(position)

    def escape(self, reply: str | None, flow: str | None, state: FlowState) -> Iterator[Event]:
        """Stop the running flow: say the escape's reply, then start its flow afresh, without
        the stopped flow's vars (as a route would)."""
        if reply:
            yield self._say(reply)
        if flow is not None:
            kept = self.bot.remember.names if self.bot.remember else frozenset()
            for name in state.vars:
                if name not in kept:  # remembered vars stay, as for a route's flow
                    self.vars.pop(name, None)
            yield from self.start(flow)
        else:
            self._trace(None)

    def keep(self, state: FlowState) -> Iterator[Event]:
        """The same state again (a refused message leaves the flow where it was)."""
        self.vars.update(state.vars)
        yield from self._pause(state)

    # -- the loop --------------------------------------------------------------------------

    def _run(self, position: Position) -> Iterator[Event]:
        while position is not None and not self.stopped:
            flow, index = position
            if index >= len(flow.steps):
                break
            self.steps += 1
            if self.steps > MAX_STEPS:
                detail = f"{flow.steps[index].loc}: more than {MAX_STEPS} steps in one turn"
                raise RunError(LOOPING, detail)
            loc = flow.steps[index].loc
            if not self.path or self.path[-1] != loc:  # a `call` route's steps share its loc
                self.path.append(loc)
            position = yield from self._step(flow, index)
        if not self.paused:
            self._trace(None)

    def _step(self, flow: CompiledFlow, index: int) -> Generator[Event, None, Position]:
        step = flow.steps[index]
        context = self.scope.context
        after: Position = (flow, index + 1)
        match step:
            case AskStep():
                yield from self._ask(flow, index, step, 0)
                return None
            case ReplyStep():
                files, text = reply_parts(self.scope, step.files, step.text)
                yield from files
                yield self._say(text)
            case LLMStep():
                yield from self._llm(step)
            case CallStep():
                branch = yield from self._call(step)
                if branch is not None:
                    self.path.append(f"{step.loc}.call.on_error")
                    return (yield from self._follow(flow, branch, CALL_FAILED))
            case SetStep():
                for name, value in step.values:
                    if isinstance(value, Condition):
                        self.vars[name] = self._search(value, f"{step.loc}.set.{name}")
                    else:
                        self.vars[name] = value.render(context)
            case JumpStep():
                for condition, target in step.cases:
                    if condition is None or self._holds(condition, step.loc):
                        return (flow, target)
            case StartFlowStep():
                return (self.bot.flows[step.flow], 0)
            case EndStep():
                if step.text is not None:
                    yield self._say(step.text.render(context))
                return None
            case _:
                assert_never(step)
        return after

    def _follow(
        self, flow: CompiledFlow, branch: Branch, default: str
    ) -> Generator[Event, None, Position]:
        """Say the branch's reply (or `default` when it ends without one), then go on."""
        ends = branch.goto is None and branch.flow is None
        text = branch.reply.render(self.scope.context) if branch.reply else None
        if text or ends:
            yield self._say(text or default)
        if branch.goto is not None:
            return (flow, branch.goto)
        if branch.flow is not None:
            return (self.bot.flows[branch.flow], 0)
        return None

    def _ask(self, flow: CompiledFlow, index: int, step: AskStep, tries: int) -> Iterator[Event]:
        """The question, its choices, then the state; the state is made first, so a flow
        whose vars no longer fit stops without asking a question it could not resume."""
        question = step.question.render(self.scope.context)
        state = FlowState(flow.name, index, flow.digest, dict(self.vars), tries)
        metadata = self._signed(state)
        if isinstance(metadata, Error):
            yield metadata
            return
        yield self._say(question)
        for choice in step.check.choices:
            yield Suggest(choice)
        yield self._paused(state, metadata)

    def _pause(self, state: FlowState) -> Iterator[Event]:
        metadata = self._signed(state)
        yield metadata if isinstance(metadata, Error) else self._paused(state, metadata)

    def _signed(self, state: FlowState) -> str | Error:
        """The metadata, or the error that ends the flow (logged) when it cannot be kept."""
        try:
            conversation = self.scope.request.conversation_id
            return encode(state, self.bot.name, self.bot.state_key, conversation)
        except StateTooLarge as exc:
            problem, text = str(exc), TOO_MUCH
        except (TypeError, ValueError) as exc:  # NaN or Infinity from an API's JSON
            problem, text = f"a var cannot be kept as JSON ({exc})", UNSTORABLE
        log.warning("bot %s: flow '%s' stopped: %s", self.bot.name, state.flow, problem)
        self.stopped = True
        return Error(text, allow_retry=False)

    def _paused(self, state: FlowState, metadata: str) -> Data:
        self.paused = True
        self._trace(state.flow)
        return Data(metadata)

    # -- steps that talk to others ---------------------------------------------------------

    def _llm(self, step: LLMStep) -> Iterator[Event]:
        before = self.shown + "\n\n" if self.shown else ""
        first = True
        for event in run_llm(self.scope, step.llm):
            if isinstance(event, Text):
                text = (before if first else "") + event.text
                first = False
                self.shown += text
                yield Text(text, flush=event.flush)
            elif isinstance(event, Replace):
                first = False
                self.shown = before + event.text
                yield Replace(self.shown, flush=event.flush)
            else:
                self.stopped = self.stopped or isinstance(event, Error)
                yield event

    def _call(self, step: CallStep) -> Generator[Event, None, Branch | None]:
        from ..outbound import CallError, HostPolicy, OutboundRequest  # httpx: only here

        if over := over_limit(self.scope.limiter, self.bot, self.scope.request.user_id, "calls"):
            self.scope.trace.limited = "calls"
            self.stopped = True  # over the limit of outside calls: the flow ends here
            yield over
            return None
        context = self.scope.context
        status = step.status.render(context) if step.status else ""
        if status:
            yield Text(("\n\n" if self.shown else "") + status, flush=True)
        request = OutboundRequest(
            step.method,
            step.url.render(context),
            query={name: value.render(context) for name, value in step.query},
            headers=step.headers,
            body=_rendered(step.body, context),
            timeout=step.timeout,
            max_bytes=step.max_bytes,
            retries=step.retries,
            origin=step.origin,
        )
        self.scope.trace.calls.append(request)
        failed: Branch | None = None
        try:
            data = self.scope.fetcher(request, self.bot.hosts or HostPolicy()).json()
        except CallError as exc:
            log.warning("bot %s: %s: call failed: %s", self.bot.name, step.loc, exc)
            self.scope.trace.call_failures += 1
            failed = step.on_error
        else:
            for name, expression in step.extract:
                self.vars[name] = self._extract(expression, data, f"{step.loc}.extract.{name}")
        if status:
            yield Replace(self.shown)  # the status line goes; the answer takes its place
        return failed

    def _extract(self, expression: Condition, data: Any, where: str) -> Any:
        try:
            return expression.search(data)
        except JMESPathError as exc:
            log.warning("bot %s: %s: %s", self.bot.name, where, exc)
            return None

    # -- helpers ---------------------------------------------------------------------------

    def _say(self, text: str) -> Text:
        chunk = ("\n\n" if self.shown and text else "") + text
        self.shown += chunk
        return Text(chunk)

    def _holds(self, condition: Condition, loc: str) -> bool:
        return holds(condition, self.scope.context, loc, BROKEN_CONDITION)

    def _search(self, condition: Condition, loc: str) -> Any:
        return search(condition, self.scope.context, loc, BROKEN_CONDITION)

    def _trace(self, running: str | None) -> None:
        """The turn's end (once per turn): record it for tests, keep remembered vars."""
        self.scope.trace.vars, self.scope.trace.running = dict(self.vars), running
        user = self.scope.request.user_id
        remember_changed(self.scope.limiter, self.bot, user, self.before, self.vars)


def _rendered(body: Body, context: dict[str, Any]) -> Any:
    if isinstance(body, dict):
        return {key: _rendered(value, context) for key, value in body.items()}
    if isinstance(body, list):
        return [_rendered(value, context) for value in body]
    if body is None or isinstance(body, bool | int | float):
        return body
    return body.render(context)
