"""Runs the conversations declared in a bot's `tests:` block through the real runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from .compiled import CompiledBot, CompiledModel
from .limits import Limiter
from .outbound import OutboundRequest
from .patterns import compile_pattern
from .protocol.events import Error, Event
from .protocol.guard import guarded
from .protocol.requests import Message, QueryRequest
from .protocol.transcript import Transcript
from .providers import open_stream
from .providers.base import ChunkStream, ModelCall, ProviderError
from .providers.relay import RelayTiming
from .providers.scripted import ScriptedStream
from .runtime import run
from .runtime.files import preview
from .runtime.scope import FlowTrace
from .scripted_calls import ScriptedCalls
from .spec import Expect, TestCase, Turn
from .spec.tests import HttpReply
from .store import Store

# No waiting in tests: retries happen at once, keep-alives never.
TEST_TIMING = RelayTiming(keepalive=60.0, backoff=0.0)


class ScriptedModels:
    """Answers model calls with a turn's `model_reply`, recording every prompt sent.

    Models declared `provider: scripted` answer as written; any other model without a
    scripted reply fails the call (and a fallback chain moves on), so declared tests
    never reach a real provider.
    """

    def __init__(self, replies: str | list[str] | None) -> None:
        self._replies = [replies] if isinstance(replies, str) else list(replies or [])
        self.calls: list[tuple[str, ModelCall]] = []
        self.problems: list[str] = []

    def __call__(self, model: CompiledModel, call: ModelCall) -> ChunkStream:
        self.calls.append((model.label, call))
        if self._replies:
            return ScriptedStream(self._replies.pop(0), 0.0, "word")
        if model.spec.provider == "scripted":
            return open_stream(model, call)
        problem = (
            f"the bot called {model.label}; script its answer with `model_reply:` "
            "(declared tests never call real models)"
        )
        self.problems.append(problem)
        raise ProviderError(problem, retryable=False, configuration=True)

    def prompt(self) -> list[dict[str, str]]:
        """The first call's messages, system first: what the answer was generated from."""
        if not self.calls:
            return []
        call = self.calls[0][1]
        system = [{"role": "system", "content": call.system}] if call.system else []
        return system + [{"role": m.role, "content": m.content} for m in call.messages]


@dataclass
class Answer(Transcript):
    """What the user would see after one turn, with every event and the prompt sent."""

    events: list[Event] = field(default_factory=list)
    prompt: list[dict[str, str]] = field(default_factory=list)
    model_problems: list[str] = field(default_factory=list)  # and unscripted calls
    trace: FlowTrace = field(default_factory=FlowTrace)

    @property
    def shown(self) -> str:
        """What the user sees: the answer, followed by the error's text if it failed."""
        if self.error is None:
            return self.text
        return f"{self.text}{self.error.text}" if self.text else self.error.text


@dataclass
class CaseResult:
    """One declared test: passed when `failures` is empty."""

    bot: str
    name: str
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def answer(
    bot: CompiledBot,
    request: QueryRequest,
    now: datetime | None = None,
    model_reply: str | list[str] | None = None,
    limiter: Limiter | None = None,
    http_reply: HttpReply | list[HttpReply] | None = None,
) -> Answer:
    """Send the conversation to the bot, as Poe would, and collect the answer."""
    models = ScriptedModels(model_reply)
    calls = ScriptedCalls(http_reply)
    result = Answer()
    events = run(
        bot,
        request,
        now,
        opener=models,
        timing=TEST_TIMING,
        limiter=limiter,
        fetcher=calls,
        uploader=preview,
        trace=result.trace,
    )
    for event in guarded(events, bot.name):
        result.events.append(event)
        result.add(event)
    result.prompt, result.model_problems = models.prompt(), models.problems + calls.problems
    return result


def run_case(bot: CompiledBot, case: TestCase, index: int) -> CaseResult:
    """Play every turn in order; the bot's answers become the history of the next turn.

    Each test starts with no messages counted and nothing remembered (an in-process store
    of its own), kept across its turns, new conversations included.
    """
    name = case.name or f"test {index + 1}"
    history: list[Message] = []
    failures: list[str] = []
    turns = case.all_turns()
    limiter = Limiter(Store.from_url("memory://"))
    conversation_id = case.conversation_id
    for number, turn in enumerate(turns, start=1):
        if turn.new_conversation:
            history, conversation_id = [], f"{case.conversation_id}-{number}"
        history.append(_user_message(turn))
        request = QueryRequest(
            query=list(history),
            user_id=case.user_id,
            conversation_id=conversation_id,
            language_code=turn.language or case.language,
        )
        result = answer(bot, request, turn.now, turn.model_reply, limiter, turn.http_reply)
        prefix = f"turn {number}: " if len(turns) > 1 else ""
        failures += [prefix + failure for failure in check(turn.expect, result)]
        history.append(Message(role="bot", content=result.text, metadata=result.metadata))
    return CaseResult(bot.name, name, failures)


def run_bot_tests(bot: CompiledBot) -> list[CaseResult]:
    return [run_case(bot, case, index) for index, case in enumerate(bot.spec.tests)]


def _user_message(turn: Turn) -> Message:
    attachments: list[Any] = [a.model_dump() for a in turn.attachments]
    return Message.model_validate(
        {"role": "user", "content": turn.say, "parameters": turn.params, "attachments": attachments}
    )


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def check(expect: Expect, result: Answer) -> list[str]:
    """Every expectation that does not hold, described with what was actually sent."""
    failures: list[str] = []
    text = result.shown
    for needle in _as_list(expect.contains):
        if needle not in text:
            failures.append(f"expected the answer to contain {needle!r}; got {text!r}")
    for needle in _as_list(expect.not_contains):
        if needle in text:
            failures.append(f"expected the answer not to contain {needle!r}; got {text!r}")
    if expect.equals is not None and text != expect.equals:
        failures.append(f"expected the answer {expect.equals!r}; got {text!r}")
    if expect.regex is not None and not compile_pattern(expect.regex).found_in(text):
        failures.append(f"expected the answer to match /{expect.regex}/; got {text!r}")
    if expect.suggested is not None and result.suggestions != expect.suggested:
        failures.append(f"expected suggested replies {expect.suggested}; got {result.suggestions}")
    sent = [file.file_name for file in result.files]
    if expect.files is not None and sent != expect.files:
        failures.append(f"expected the files {expect.files}; the answer sent {sent}")
    failures += _check_error(expect, result.error)
    failures += _check_prompt(expect, result.prompt)
    failures += _check_flow(expect, result.trace)
    # A real model without a scripted reply fails like a missing key, so a fallback chain
    # moves on; it only matters when nothing answered.
    problems = result.model_problems if result.error is not None else []
    return problems + failures


def _check_flow(expect: Expect, trace: FlowTrace) -> list[str]:
    failures = []
    held = trace.vars or {}
    for name, wanted in (expect.vars or {}).items():
        if name not in held:
            failures.append(f"expected vars.{name} == {wanted!r}; it is not set (vars: {held})")
        elif held[name] != wanted:
            failures.append(f"expected vars.{name} == {wanted!r}; got {held[name]!r}")
    if expect.flow is not None and (trace.running or False) != expect.flow:
        failures.append(f"expected the flow running to be {expect.flow!r}; got {trace.running!r}")
    if expect.calls is not None:
        made = [f"{call.method} {_full_url(call)}" for call in trace.calls]
        if made != expect.calls:
            failures.append(f"expected the calls {expect.calls}; the bot made {made}")
    return failures


def _full_url(call: OutboundRequest) -> str:
    url = httpx.URL(call.url)
    return str(url.copy_merge_params(dict(call.query)) if call.query else url)


def _check_prompt(expect: Expect, prompt: list[dict[str, str]]) -> list[str]:
    failures = []
    if expect.prompt is not None:
        wanted = [message.model_dump() for message in expect.prompt]
        if prompt != wanted:
            failures.append(f"expected the prompt {wanted}; the model was sent {prompt}")
    for needle in _as_list(expect.prompt_contains):
        if not any(needle in message["content"] for message in prompt):
            failures.append(f"expected the prompt to contain {needle!r}; it was {prompt}")
    return failures


def _check_error(expect: Expect, error: Error | None) -> list[str]:
    wants_error = (
        bool(expect.error) or expect.error_type is not None or expect.allow_retry is not None
    )
    if error is None:
        return ["expected an error; the bot answered normally"] if wants_error else []
    shown = f"error {error.text!r} (error_type={error.error_type}, allow_retry={error.allow_retry})"
    if not wants_error:
        return [f"expected an answer; got {shown}"]
    failures = []
    if expect.error_type is not None and error.error_type != expect.error_type:
        failures.append(f"expected error_type {expect.error_type}; got {shown}")
    if expect.allow_retry is not None and error.allow_retry != expect.allow_retry:
        failures.append(f"expected allow_retry {expect.allow_retry}; got {shown}")
    return failures
