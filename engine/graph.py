"""A bot drawn as a Mermaid flowchart: input rules, routes in order, flows and escapes.

Why Mermaid: the drawing is left to a well-kept renderer (Mermaid's own JavaScript, which
the playground ships), and the text itself is what READMEs, GitHub and reviews already
render, so `python -m engine graph BOT --markdown` pastes straight into a pull request.
The text is deterministic (a golden file per example bot pins it) and every node id comes
from the loc of what it draws (`node_id`), the same loc a turn's trace records, so the
playground highlights a turn by appending `class <ids> taken` (`nodes_for`) and drawing
the text again.

Labels are text from the bot file (conditions, replies, questions): each is one line,
shortened, with every character Mermaid could read as syntax written as an entity code,
so no label can end its node or add a statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .compiled import (
    AnswerCheck,
    AskStep,
    Branch,
    CallStep,
    CompiledBot,
    CompiledCallRoute,
    CompiledError,
    CompiledFlow,
    CompiledFlowRoute,
    CompiledInput,
    CompiledLLM,
    CompiledReply,
    CompiledRoute,
    CompiledStep,
    EndStep,
    JumpStep,
    LLMStep,
    ReplyStep,
    SetStep,
    StartFlowStep,
)
from .runtime.flows import CALL_FAILED, GAVE_UP
from .templates import Renderable

__all__ = ["TAKEN", "markdown", "mermaid", "node_id", "nodes_for"]

TAKEN = "classDef taken fill:#fde68a,stroke:#d97706,stroke-width:3px"
TEXT_LIMIT = 48  # characters of a reply, question or URL shown in a node
CONDITION_LIMIT = 64
PATTERNS_SHOWN = 5
MESSAGE, REFUSED, WAITING, RESUME = "message", "refused", "waiting", "resume"
NO_ROUTE = "routes"  # the trace's loc when no route matched (engine.runtime.NO_ROUTE_LOC)
# Inside a quoted label only `"` ends it, but Mermaid also reads `#name;` as an entity,
# `%%` as the start of a comment or a `%%{...}%%` directive, a leading backtick as
# Markdown, and the label as HTML (`<`, `&name;`). Just those are written as entity
# codes; brackets, pipes, `;` and `{% %}` are safe between quotes and stay readable.
_UNSAFE = re.compile(r'"|<|%(?=%)|#(?=\w+;)|&(?=[#\w])|^`')
# How a loc becomes an id: letters and digits kept; `_` doubled and every other character
# `_` plus a letter no loc part starts with after `_`, so two locs never share an id.
_ID_CODES = {"_": "__", ".": "_d", "[": "_b", "]": "", "-": "_h"}


def node_id(loc: str) -> str:
    """The Mermaid id for the node drawing `loc`: `flows.refund[2]` -> `flows_drefund_b2`."""
    return "".join(
        ch if ch.isascii() and ch.isalnum() else _ID_CODES.get(ch, f"_x{ord(ch):x}_") for ch in loc
    )


def label(text: str, limit: int = TEXT_LIMIT) -> str:
    """Text from the bot file as one safe line of a label: whitespace runs (newlines too)
    made one space, shortened to `limit` characters, Mermaid's syntax escaped."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return _UNSAFE.sub(lambda found: f"#{ord(found.group())};", line)


def first_line(template: Renderable | None) -> str:
    """A template's first line that is not blank (a reply's first words)."""
    source = template.source if template is not None else ""
    return next((line for line in source.splitlines() if line.strip()), "")


@dataclass
class Chart:
    """The flowchart's lines as they are written, and every node id drawn."""

    lines: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)  # edges into flows: after every subgraph
    indent: str = "    "

    def node(self, ident: str, shape: str, *parts: str) -> str:
        """A node; `shape` is Mermaid's brackets around the quoted text (`[]`, `{}`,
        `([])`, ...); `parts` are label lines, already escaped."""
        half = len(shape) // 2
        text = "<br>".join(parts)
        self.lines.append(f'{self.indent}{ident}{shape[:half]}"{text}"{shape[half:]}')
        self.ids.add(ident)
        return ident

    def edge(self, start: str, end: str, text: str = "", *, dotted: bool = False) -> None:
        arrow = "-.->" if dotted else "-->"
        self.lines.append(f"{self.indent}{start} {arrow}{f'|{text}|' if text else ''} {end}")

    def link(self, start: str, end: str, text: str = "") -> None:
        """An edge drawn after all subgraphs: Mermaid puts a node in the first subgraph
        that mentions it, so an edge into a flow must not come first."""
        self.links.append(f"    {start} -->{f'|{text}|' if text else ''} {end}")


def mermaid(bot: CompiledBot) -> str:
    """The bot as a Mermaid `flowchart TD`, ending with the `taken` class's definition."""
    chart = _draw(bot)
    return "\n".join(["flowchart TD", *chart.lines, *chart.links, f"    {TAKEN}", ""])


def markdown(bot: CompiledBot) -> str:
    """The flowchart in a fenced block, as READMEs and GitHub render it."""
    return f"```mermaid\n{mermaid(bot)}```\n"


def nodes_for(path: Iterable[str], bot: CompiledBot | None = None) -> list[str]:
    """The node ids drawing a trace's locs, in order, each once: an input rule with the
    refusal, a route or an escape with its decision, a flow step, a branch taken. Without
    `bot`, ids that a bot may not have drawn (a fallback route has no decision) are
    included too: Mermaid's `class` statement skips ids it does not know."""
    found: list[str] = []
    for loc in path:
        found += (ident for ident in _candidates(loc) if ident not in found)
    if bot is None:
        return found
    drawn = _draw(bot).ids
    return [ident for ident in found if ident in drawn]


def _candidates(loc: str) -> list[str]:
    if loc.startswith("input."):
        return [node_id(loc.partition("[")[0]), REFUSED]
    head, closed, rest = loc.partition("]")
    own = node_id(head + closed)
    if not closed:  # `routes`: no route matched
        return [node_id(loc)]
    if rest in (".on_fail", ".call.on_error"):
        return [own + "_fail"]
    if rest == ".retry":
        return [own]
    if loc.startswith(("routes[", "escapes[")):
        return [own + "_if", own]
    return [own]


# -- the main chain: message, input rules, a waiting flow's escapes, routes ---------------


def _draw(bot: CompiledBot) -> Chart:
    chart = Chart()
    chart.node(MESSAGE, "([])", "message")
    accepted, text = _input(chart, bot.input, MESSAGE)
    if bot.flows:
        chart.node(WAITING, "{}", "a flow waits for an answer?")
        chart.edge(accepted, WAITING, text)
        _escapes(chart, bot)
        accepted, text = WAITING, "no"
    _routes(chart, bot, accepted, text)
    for flow in bot.flows.values():
        _flow(chart, bot, flow)
    return chart


def _input(chart: Chart, rules: CompiledInput | None, start: str) -> tuple[str, str]:
    """The rules in the order they are checked, each refusing to one end; the node and the
    edge label an accepted message leaves by."""
    checks = _input_checks(rules) if rules is not None else []
    if not checks:
        return start, ""
    chart.node(REFUSED, "([])", "refused: an error event")
    previous, text = start, ""
    for loc, parts in checks:
        ident = chart.node(node_id(loc), "{{}}", *parts)
        chart.edge(previous, ident, text)
        chart.edge(ident, REFUSED, "no", dotted=True)
        previous, text = ident, "yes"
    return previous, text


def _input_checks(rules: CompiledInput) -> list[tuple[str, list[str]]]:
    checks: list[tuple[str, list[str]]] = []
    if rules.min_length is not None:
        checks.append(("input.min_length", [f"at least {rules.min_length.value:,} characters?"]))
    if rules.max_length is not None:
        checks.append(("input.max_length", [f"at most {rules.max_length.value:,} characters?"]))
    if rules.reject:
        checks.append(("input.reject", ["none of these found?", *_patterns(rules)]))
    if rules.attachments_required is not None:
        checks.append(("input.attachments.required", ["a file attached?"]))
    most = rules.attachments_max
    if most is not None:
        files = "1 file" if most.value == 1 else f"{most.value} files"
        text = "no files attached?" if most.value == 0 else f"at most {files}?"
        checks.append(("input.attachments.max", [text]))
    if rules.attachment_types is not None:
        types = label(", ".join(rules.attachment_types.value), CONDITION_LIMIT)
        checks.append(("input.attachments.types", [f"files of types {types}?"]))
    return checks


def _patterns(rules: CompiledInput) -> list[str]:
    """The `reject` patterns as written (each alone when they have messages, else split
    back out of the alternation the runtime searches)."""
    sources = [rule.value.source for rule in rules.reject_rules] or _split(rules)
    shown = [label(source, CONDITION_LIMIT) for source in sources[:PATTERNS_SHOWN]]
    if len(sources) > PATTERNS_SHOWN:
        shown.append(f"… and {len(sources) - PATTERNS_SHOWN} more")
    return shown


def _split(rules: CompiledInput) -> list[str]:
    """compile_any's alternation `(?:a)|(?:b)` back into `a`, `b` (the runtime keeps no
    other copy of patterns without messages)."""
    sources: list[str] = []
    for pattern in rules.reject:
        source = pattern.source
        if source.startswith("(?:") and source.endswith(")") and ")|(?:" in source:
            sources += source[3:-1].split(")|(?:")
        else:
            sources.append(source)
    return sources


def _escapes(chart: Chart, bot: CompiledBot) -> None:
    """While a flow waits, escapes are checked first; the answer goes to the question."""
    previous, text = WAITING, "yes"
    for index, escape in enumerate(bot.escapes):
        loc = f"escapes[{index}]"
        decision = chart.node(node_id(loc) + "_if", "{}", label(escape.condition.source))
        parts = [f"reply: {label(first_line(escape.reply))}"] if escape.reply else []
        if escape.flow is not None:
            parts.append(f"flow: {label(escape.flow)}")
            chart.link(node_id(loc), _first_step(bot, escape.flow))
        chart.node(node_id(loc), "[]", *parts)
        chart.edge(previous, decision, text)
        chart.edge(decision, node_id(loc), "yes")
        previous, text = decision, "no"
    chart.node(RESUME, "([])", "the answer goes to the waiting question")
    chart.edge(previous, RESUME, text)
    for flow in bot.flows.values():
        for step in flow.steps:
            if isinstance(step, AskStep):
                chart.edge(RESUME, node_id(step.loc), dotted=True)


def _routes(chart: Chart, bot: CompiledBot, start: str, text: str) -> None:
    """The routes as a chain of decisions, in order; the first that holds answers."""
    previous: str | None = start
    for route in bot.routes:
        action = _action(chart, bot, route)
        if route.condition is None:
            if previous is not None:
                chart.edge(previous, action, text)
            previous = None  # a fallback: nothing after it is reached
            continue
        decision = chart.node(node_id(route.loc) + "_if", "{}", label(route.condition.source))
        if previous is not None:
            chart.edge(previous, decision, text)
        chart.edge(decision, action, "yes")
        previous, text = decision, "no"
    if previous is not None:
        chart.node(node_id(NO_ROUTE), "([])", "no route: an error event")
        chart.edge(previous, node_id(NO_ROUTE), text)


def _action(chart: Chart, bot: CompiledBot, route: CompiledRoute) -> str:
    ident = node_id(route.loc)
    match route:
        case CompiledReply():
            return chart.node(ident, "[]", f"reply: {label(first_line(route.reply))}")
        case CompiledError():
            return chart.node(ident, "([])", f"error: {label(first_line(route.text))}")
        case CompiledLLM():
            return chart.node(ident, "[]", _llm(route))
        case CompiledFlowRoute():
            chart.link(ident, _first_step(bot, route.flow))
            return chart.node(ident, "[]", f"flow: {label(route.flow)}")
        case CompiledCallRoute():
            call, reply = route.flow.steps
            assert isinstance(call, CallStep) and isinstance(reply, ReplyStep)
            chart.node(ident, "[[]]", *_call(call), f"reply: {label(first_line(reply.text))}")
            _branch(chart, bot, None, call, call.on_error, "on error")
            return ident


def _llm(route: CompiledLLM) -> str:
    models = " → ".join(model.label for model in route.chain) or "the bot's model"
    return f"llm: {label(models, CONDITION_LIMIT)}"


def _call(step: CallStep) -> list[str]:
    parts = [f"call: {step.method} {label(step.url.source)}"]
    if step.extract:
        parts.append(f"saves {label(', '.join(name for name, _ in step.extract))}")
    return parts


def _first_step(bot: CompiledBot, name: str) -> str:
    """The id of a flow's first step (every flow has one; validate checked the name)."""
    return node_id(bot.flows[name].steps[0].loc)


# -- flows: one subgraph each ------------------------------------------------------------


def _flow(chart: Chart, bot: CompiledBot, flow: CompiledFlow) -> None:
    chart.lines.append(f'    subgraph {node_id(f"flows.{flow.name}")} ["flow: {label(flow.name)}"]')
    chart.lines.append("        direction TB")
    chart.indent = "        "
    for index, step in enumerate(flow.steps):
        _step(chart, bot, flow, index, step)
    chart.indent = "    "
    chart.lines.append("    end")


def _step(
    chart: Chart, bot: CompiledBot, flow: CompiledFlow, index: int, step: CompiledStep
) -> None:
    ident = node_id(step.loc)
    match step:
        case AskStep():
            question = f"ask: {label(first_line(step.question))}"
            chart.node(ident, "[//]", question, _expects(step))
            chart.edge(ident, _next(chart, flow, index), "answer")
            if step.tries > 1:
                chart.edge(ident, ident, "retry")
            _branch(chart, bot, flow, step, step.on_fail, "tries run out")
        case ReplyStep():
            chart.node(ident, "[]", f"reply: {label(first_line(step.text))}")
            chart.edge(ident, _next(chart, flow, index))
        case LLMStep():
            chart.node(ident, "[]", _llm(step.llm))
            chart.edge(ident, _next(chart, flow, index))
        case CallStep():
            chart.node(ident, "[[]]", *_call(step))
            chart.edge(ident, _next(chart, flow, index))
            _branch(chart, bot, flow, step, step.on_error, "on error")
        case SetStep():
            chart.node(ident, "[]", f"set: {label(', '.join(name for name, _ in step.values))}")
            chart.edge(ident, _next(chart, flow, index))
        case JumpStep():
            _jump(chart, flow, step, index)
        case StartFlowStep():
            chart.node(ident, "[]", f"flow: {label(step.flow)}")
            chart.link(ident, _first_step(bot, step.flow))
        case EndStep():
            text = f"end: {label(first_line(step.text))}" if step.text is not None else "end"
            chart.node(ident, "([])", text)


def _next(chart: Chart, flow: CompiledFlow, index: int) -> str:
    """The id of the step after `index`, or the flow's end when it is the last."""
    if index + 1 < len(flow.steps):
        return node_id(flow.steps[index + 1].loc)
    return _stop(chart, flow)


def _stop(chart: Chart, flow: CompiledFlow) -> str:
    """The flow's end (drawn once, where the first step needing it is)."""
    ident = node_id(f"flows.{flow.name}") + "_stop"
    if ident not in chart.ids:
        chart.node(ident, "([])", "the flow ends")
    return ident


def _expects(step: AskStep) -> str:
    check: AnswerCheck = step.check
    if check.pattern is not None:
        wanted = f"matching {label(check.pattern.source, CONDITION_LIMIT)}"
    elif check.choices:
        wanted = f"one of {label(' / '.join(check.choices), CONDITION_LIMIT)}"
    else:
        wanted = f"any {check.type}" if check.type == "text" else f"a valid {check.type}"
    tries = "1 try" if step.tries == 1 else f"{step.tries} tries"
    return f"saves {label(step.save)}: {wanted}, {tries}"


def _jump(chart: Chart, flow: CompiledFlow, step: JumpStep, index: int) -> None:
    """`goto` and `switch`: a decision per case, in order; none holding goes on."""
    previous, text = "", ""
    for number, (condition, target) in enumerate(step.cases):
        ident = node_id(step.loc) + (f"_c{number}" if number else "")
        goal = node_id(flow.steps[target].loc)
        if condition is None:
            if not previous:
                chart.node(ident, "[]", f"go to step {target}")
                previous, text = ident, ""
            chart.edge(previous, goal, text)
            return
        chart.node(ident, "{}", label(condition.source, CONDITION_LIMIT))
        if previous:
            chart.edge(previous, ident, text)
        chart.edge(ident, goal, "yes")
        previous, text = ident, "no"
    chart.edge(previous, _next(chart, flow, index), text)


def _branch(
    chart: Chart,
    bot: CompiledBot,
    flow: CompiledFlow | None,
    step: AskStep | CallStep,
    branch: Branch,
    why: str,
) -> None:
    """Where a failure goes: its reply (or the runtime's own apology when it ends without
    one), then a step, another flow, or the flow's end. `flow` None: a `call` route's."""
    source = node_id(step.loc)
    ends = branch.goto is None and branch.flow is None
    if branch.reply is not None or ends:
        said = first_line(branch.reply) if branch.reply is not None else _apology(step)
        source = chart.node(source + "_fail", "[]", f"reply: {label(said)}")
        chart.edge(node_id(step.loc), source, why)
        why = ""
    if branch.goto is not None and flow is not None:
        chart.edge(source, node_id(flow.steps[branch.goto].loc), why)
    elif branch.flow is not None:
        chart.link(source, _first_step(bot, branch.flow), why)
    elif flow is not None:
        chart.edge(source, _stop(chart, flow), why)


def _apology(step: AskStep | CallStep) -> str:
    return GAVE_UP if isinstance(step, AskStep) else CALL_FAILED
