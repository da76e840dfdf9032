"""What `validate` proves about flows: every step reachable, every flow able to end, no
turn looping without asking, and no `vars` read before some step can have saved them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, assert_never

from ..compiled import (
    AskStep,
    Branch,
    CallStep,
    CompiledFlow,
    CompiledStep,
    EndStep,
    JumpStep,
    LLMStep,
    ReplyStep,
    SetStep,
    StartFlowStep,
)
from .checker import SourceChecker
from .yaml_marks import Loc

END = -1  # the flow ends (or hands over to another flow)
T = TypeVar("T", int, str)


@dataclass(frozen=True)
class Edge:
    """One way on from a step: the next step (or END), the vars saved on the way, and the
    flow started there, if any."""

    target: int
    saves: frozenset[str] = frozenset()
    flow: str | None = None
    pauses: bool = False  # the step waits for the user's answer first


def edges(steps: tuple[CompiledStep, ...], index: int) -> list[Edge]:
    """Every way on from step `index`: the next step, a jump, a branch, or the end."""
    step = steps[index]
    after = index + 1 if index + 1 < len(steps) else END
    match step:
        case AskStep():
            saved = Edge(after, frozenset({step.save}), pauses=True)
            return [saved, _branch_edge(step.on_fail, pauses=True)]
        case CallStep():
            return [Edge(after, frozenset(n for n, _ in step.extract)), _branch_edge(step.on_error)]
        case SetStep():
            return [Edge(after, frozenset(n for n, _ in step.values))]
        case ReplyStep() | LLMStep():
            return [Edge(after)]
        case JumpStep():
            found = [Edge(target) for _, target in step.cases]
            if all(condition is not None for condition, _ in step.cases):
                found.append(Edge(after))
            return found
        case StartFlowStep():
            return [Edge(END, flow=step.flow)]
        case EndStep():
            return [Edge(END)]
        case _:
            assert_never(step)


def _branch_edge(branch: Branch, *, pauses: bool = False) -> Edge:
    if branch.goto is not None:
        return Edge(branch.goto, pauses=pauses)
    return Edge(END, flow=branch.flow, pauses=pauses)


def check_flows(
    checker: SourceChecker,
    flows: Mapping[str, CompiledFlow],
    reads: Mapping[tuple[str, int], list[tuple[str, Loc]]],
    started: set[str],
) -> None:
    """Report unreachable steps, flows that cannot end, loops without a question, vars
    read before any step can have saved them, and flows nothing starts (a warning)."""
    for flow in flows.values():
        if flow.name not in started:
            checker.report(
                ("flows", flow.name),
                f"flow '{flow.name}' is never started",
                "start it from a route (`flow: name`), an escape or another flow",
                warning=True,
            )
        reachable = _reachable(flow)
        for index in range(len(flow.steps)):
            if index not in reachable:
                checker.report(
                    ("flows", flow.name, index),
                    f"this step is never reached: no step of flow '{flow.name}' leads here",
                    "give it an `id` and `goto` it, or remove it",
                )
        _check_ends(checker, flow, reachable)
        _check_loops(checker, flow, reachable)
    _check_flow_loops(checker, flows)
    _check_reads(checker, flows, reads)


def _reachable(flow: CompiledFlow) -> set[int]:
    seen, todo = {0}, [0]
    while todo:
        for edge in edges(flow.steps, todo.pop()):
            if edge.target != END and edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    return seen


def _check_ends(checker: SourceChecker, flow: CompiledFlow, reachable: set[int]) -> None:
    """Every reachable step must have a way to the end (or to another flow)."""
    before: dict[int, list[int]] = {index: [] for index in reachable}
    todo = []
    for index in reachable:
        for edge in edges(flow.steps, index):
            if edge.target == END:
                todo.append(index)
            else:
                before[edge.target].append(index)
    ending = set(todo)
    while todo:  # backwards from the steps that end, to every step that leads to one
        for earlier in before[todo.pop()]:
            if earlier not in ending:
                ending.add(earlier)
                todo.append(earlier)
    stuck = sorted(reachable - ending)
    if stuck:
        checker.report(
            ("flows", flow.name),
            f"flow '{flow.name}' can never end: from steps[{stuck[0]}] every way leads back "
            "into the same steps",
            "add an `end:` step, or a branch that reaches the last step",
        )


def _check_loops(checker: SourceChecker, flow: CompiledFlow, reachable: set[int]) -> None:
    """A cycle of steps with no question runs until the per-turn step limit: a warning,
    since a condition may break it."""
    steps = flow.steps
    graph = {
        i: [e.target for e in edges(steps, i) if e.target != END and not e.pauses]
        for i in reachable
    }
    loop = _first_cycle(graph)
    if loop is not None:
        checker.report(
            ("flows", flow.name, loop),
            "these steps can loop without asking the user anything: a turn stops "
            "after 100 steps with an error",
            "put an `ask:` in the loop, or make sure its condition turns false",
            warning=True,
        )


def _check_flow_loops(checker: SourceChecker, flows: Mapping[str, CompiledFlow]) -> None:
    """Flows that start one another, round to the first, without asking anything on the
    way: one turn would run them until the per-turn step limit. A warning, like a loop
    inside one flow, since a condition may break it."""
    started = {name: sorted(_started_without_asking(flow)) for name, flow in flows.items()}
    graph = {
        name: [other for other in targets if other in flows] for name, targets in started.items()
    }
    loop = _first_cycle(graph)
    if loop is not None:
        checker.report(
            ("flows", loop),
            f"flow '{loop}' can start itself again through `flow:` steps without asking "
            "the user anything: a turn stops after 100 steps with an error",
            "put an `ask:` before one of those `flow:` steps",
            warning=True,
        )


def _started_without_asking(flow: CompiledFlow) -> set[str]:
    """The flows this one can start, from its first step, before it waits for an answer
    (a flow always starts at its first step)."""
    seen, todo, started = {0}, [0], set[str]()
    while todo:
        for edge in edges(flow.steps, todo.pop()):
            if edge.pauses:
                continue
            if edge.target == END:
                if edge.flow is not None:
                    started.add(edge.flow)
            elif edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    return started


def _first_cycle(graph: Mapping[T, list[T]]) -> T | None:
    """A step on a cycle of `graph`, found depth first without recursion (a flow may have
    thousands of steps)."""
    state: dict[T, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(graph[start]))]
        while stack:
            node, successors = stack[-1]
            nxt = next(successors, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return nxt
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
    return None


def _check_reads(
    checker: SourceChecker,
    flows: Mapping[str, CompiledFlow],
    reads: Mapping[tuple[str, int], list[tuple[str, Loc]]],
) -> None:
    """Report the first var each step reads that no path to it can have saved."""
    before = _may_have_saved(flows)
    for (flow_name, index), found in sorted(reads.items()):
        could = before.get((flow_name, index))
        if could is None:
            continue  # the step is never reached, reported already
        for var, loc in found:
            if var not in could:
                checker.report(
                    loc,
                    f"vars.{var} is read here before any step can have saved it",
                    "save it first (`save:`, `set:` or a call's `extract:`)",
                )
                break


def _may_have_saved(flows: Mapping[str, CompiledFlow]) -> dict[tuple[str, int], set[str]]:
    """May-analysis: the vars some path can have saved before each reachable step. A flow
    starts with the vars of every flow that can start it (vars are shared); routes start
    with none. Sets only grow, so the passes end."""
    entry: dict[str, set[str]] = {name: set() for name in flows}
    before: dict[tuple[str, int], set[str]] = {}
    changed = True
    while changed:
        changed = False
        for flow in flows.values():
            known = {0: set(entry[flow.name])}
            todo = [0]
            while todo:
                index = todo.pop()
                for edge in edges(flow.steps, index):
                    saved = known[index] | edge.saves
                    if edge.flow in entry and not saved <= entry[str(edge.flow)]:
                        entry[str(edge.flow)] |= saved
                        changed = True
                    if edge.target == END:
                        continue
                    if edge.target not in known or not saved <= known[edge.target]:
                        known[edge.target] = known.get(edge.target, set()) | saved
                        todo.append(edge.target)
            before.update({(flow.name, i): s for i, s in known.items()})
    return before
