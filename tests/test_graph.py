"""`engine graph`: each bot as a Mermaid flowchart, and a turn's trace mapped onto it.

Each example bot's diagram is kept in tests/golden/graphs/<bot>.mmd. After an intended
change to the drawing, rewrite the files and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_graph.py

The goldens were also checked with Mermaid 12.3.0's own parser (`mermaid.parse` under
node); these tests stay free of node by checking every line's shape instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.chat import find_bot
from engine.cli import main
from engine.compiled import CompiledBot, CompiledCallRoute
from engine.graph import TAKEN, label, markdown, mermaid, node_id, nodes_for
from engine.protocol.guard import guarded
from engine.protocol.requests import parse_query
from engine.protocol.transcript import Transcript
from engine.runtime import run
from engine.runtime.scope import FlowTrace
from engine.scripted_calls import ScriptedCalls
from engine.spec.tests import HttpReply

from ._poe import bot as bot_message
from ._poe import query, user
from .conftest import BOTS_DIR, EXAMPLE_BOTS, REPO, compile_bot

GOLDEN = Path(__file__).parent / "golden" / "graphs"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
ENV = {"ENGINE_STATE_SECRET": "s" * 32}

IDENT = r"[A-Za-z][A-Za-z0-9_]*"
# A label: anything but a quote, `<` only as the line break the drawing puts in, no `%%`.
LABEL = r'(?:[^"<%\n]|<br>|%(?!%))*'
SHAPES = [("[", "]"), ("(", ")"), ("{", "}"), ("{{", "}}"), ("([", "])"), ("[[", "]]")]
SHAPES += [("[/", "/]")]
NODE = re.compile(
    rf"^ +(?P<id>{IDENT})(?:"
    + "|".join(rf'{re.escape(a)}"{LABEL}"{re.escape(b)}' for a, b in SHAPES)
    + ")$"
)
EDGE = re.compile(rf"^ +(?P<start>{IDENT}) (?:-->|-\.->)(?:\|[a-z ]+\|)? (?P<end>{IDENT})$")
SUBGRAPH = re.compile(rf'^    subgraph {IDENT} \["flow: [A-Za-z0-9_-]+"\]$')
FIXED = {"flowchart TD", "        direction TB", "    end", f"    {TAKEN}"}

KITCHEN = """
    name: kitchen
    model: {provider: scripted, replies: [fine]}
    allow_hosts: [api.example.com]
    input:
      max_length: 40
      reject: ['(?i)password', {pattern: '\\d{4}-\\d{4}', message: No cards.}]
      attachments: {required: true, max: 1, types: [image/*]}
    flows:
      book:
        - ask: "How many guests?"
          save: guests
          expect: {type: integer}
          tries: 2
          on_fail: {reply: "Let's try another time.", goto: last}
        - call:
            url: "https://api.example.com/tables/{{ vars.guests }}"
            extract: {free: free}
            on_error: {flow: other}
        - set: {note: "{{ vars.free }}", count: {expr: "vars.guests"}}
        - switch:
            - {if: "vars.free", goto: model}
            - {if: "vars.guests > `10`", goto: last}
        - goto: last
        - id: model
          llm: {prompt: "Say yes"}
        - flow: other
        - id: last
          end: true
      other:
        - ask: "Anything else?"
          save: more
          expect: {choices: ["Yes", "No"]}
          tries: 1
        - reply: "Something else, then."
    escapes:
      - if: "message == 'cancel'"
        reply: "Cancelled."
      - if: "message == 'again'"
        flow: book
    routes:
      - if: "message == 'book'"
        flow: book
      - if: "message == 'look'"
        call: {url: "https://api.example.com/status", extract: {up: up}}
        reply: "Up: {{ vars.up }}"
      - if: "message == 'no'"
        error: {text: "No."}
      - if: "message == 'ask'"
        llm: {prompt: "{{ message }}"}
      - if: "message == 'hi'"
        reply: "Hello."
"""
HOSTILE_TEXTS = [
    '"]; click x call alert(1); %%',
    "a | b ]) }} end\nclass message taken\nend",
    "<script>alert(1)</script> &lt;b&gt; #quot; #35;",
    "%%{init: {'theme': 'dark'}}%% `md` \\\" ] ",
    "end",
    "x" * 500,
]


def example(name: str) -> CompiledBot:
    return find_bot(name, str(BOTS_DIR))[0]


def shapes_ok(text: str) -> list[str]:
    """The lines of a diagram that are not a node, an edge, a subgraph or a fixed line."""
    return [
        line
        for line in text.splitlines()
        if line not in FIXED and not (NODE.match(line) or EDGE.match(line) or SUBGRAPH.match(line))
    ]


def drawn(text: str) -> set[str]:
    return {m["id"] for line in text.splitlines() if (m := NODE.match(line))}


def edges(text: str) -> set[str]:
    found = (EDGE.match(line) for line in text.splitlines())
    return {ident for m in found if m for ident in (m["start"], m["end"])}


# -- golden files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_BOTS)
def test_the_example_bots_are_drawn_as_their_golden_files(name: str) -> None:
    text = mermaid(example(name))
    golden = GOLDEN / f"{name}.mmd"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    assert text.startswith("flowchart TD\n") and text.endswith(f"    {TAKEN}\n")
    assert shapes_ok(text) == []
    assert edges(text) <= drawn(text)  # no edge to a node that was never declared


# -- structure ---------------------------------------------------------------------------


def all_bots() -> Iterator[CompiledBot]:
    yield from (example(name) for name in EXAMPLE_BOTS)
    yield compile_bot(KITCHEN, ENV)


@pytest.mark.parametrize("bot", list(all_bots()), ids=lambda bot: bot.name)
def test_every_route_and_flow_step_has_a_node(bot: CompiledBot) -> None:
    text = mermaid(bot)
    ids = drawn(text)
    for route in bot.routes:
        assert node_id(route.loc) in ids
        assert route.condition is None or node_id(route.loc) + "_if" in ids
    for flow in bot.flows.values():
        for step in flow.steps:
            assert node_id(step.loc) in ids
    assert shapes_ok(text) == []
    assert edges(text) <= ids
    assert mermaid(bot) == text  # deterministic


def test_the_kitchen_sink_draws_every_kind_of_step() -> None:
    text = mermaid(compile_bot(KITCHEN, ENV))
    for piece in [
        'input_dreject{{"none of these found?<br>(?i)password<br>\\d{4}-\\d{4}"}}',
        'input_dattachments_drequired{{"a file attached?"}}',
        'input_dattachments_dtypes{{"files of types image/*?"}}',
        "waiting -->|yes| escapes_b0_if",
        "resume -.-> flows_dbook_b0",
        "resume -.-> flows_dother_b0",
        'escapes_b1["flow: book"]',
        "escapes_b1 --> flows_dbook_b0",
        '[/"ask: How many guests?<br>saves guests: a valid integer, 2 tries"/]',
        "flows_dbook_b0 -->|retry| flows_dbook_b0",
        "flows_dbook_b0_fail --> flows_dbook_b7",
        "flows_dbook_b1 -->|on error| flows_dother_b0",
        'flows_dbook_b2["set: note, count"]',
        "flows_dbook_b3 -->|yes| flows_dbook_b5",
        "flows_dbook_b3 -->|no| flows_dbook_b3_c1",
        "flows_dbook_b3_c1 -->|no| flows_dbook_b4",
        'flows_dbook_b4["go to step 7"]',
        'flows_dbook_b5["llm: scripted:script"]',
        "flows_dbook_b6 --> flows_dother_b0",
        'flows_dbook_b7(["end"])',
        "flows_dother_b0 -->|tries run out| flows_dother_b0_fail",
        'routes_b1[["call: GET https://api.example.com/status<br>saves up<br>reply: Up: {{ vars.up',
        'routes_b2(["error: No."])',
        "routes_b4_if -->|no| routes",
        'routes(["no route: an error event"])',
    ]:
        assert piece in text, piece
    assert "flows_dother_b0 -->|retry|" not in text  # one try: no retry


def test_node_ids_are_distinct_for_distinct_locs() -> None:
    locs = ["flows.a-b[0]", "flows.a_b[0]", "flows.a__b[0]", "flows.ab[0]", "routes[1]"]
    locs += ["routes[11]", "escapes[1]", "input.max_length", "input.attachments.max", "routes"]
    ids = [node_id(loc) for loc in locs]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(IDENT, ident) for ident in ids)


# -- hostile text ------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_a_label_is_one_safe_line(text: str) -> None:
    safe = label(text)
    assert "\n" not in safe and '"' not in safe and "<" not in safe and "%%" not in safe
    assert not re.search(r"#\w+;", safe.replace("#", "")), safe
    assert not re.search(r"&\w", safe) and not safe.startswith("`")
    assert len(label("x" * 500)) == 48


def test_hostile_text_in_a_bot_stays_inside_its_labels() -> None:
    quoted = [
        t.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for t in HOSTILE_TEXTS
    ]
    replies = "\n".join(
        f"""      - if: "message == '{i}'"\n        reply: "{text}\""""
        for i, text in enumerate(quoted)
    )
    conditions = "\n".join(
        f"""      - if: "contains(message, '{text.replace("'", "")}')"\n        reply: ok"""
        for text in quoted
    )
    source = f"name: hostile\nroutes:\n{replies}\n{conditions}\n      - reply: last\n"
    bot = compile_bot(source)
    text = mermaid(bot)
    assert shapes_ok(text) == []
    assert len(drawn(text)) == 2 * len(bot.routes)  # the message, each action and decision
    assert "<script" not in text and "%%" not in text
    assert '"reply: #60;script>alert(1)#60;/script> #38;lt;b#38;gt; #35;quot; #35;35;"' in text


# -- traces mapped onto the diagram --------------------------------------------------------


def turns(bot: CompiledBot, *said: tuple[str, dict[str, Any]]) -> list[list[str]]:
    """Each turn's trace path, the conversation replayed as Poe does."""
    messages: list[dict[str, Any]] = []
    paths = []
    for text, fields in said:
        messages.append(user(text, **fields.get("user", {})))
        trace = FlowTrace()
        fetcher = ScriptedCalls(fields.get("http"))
        events = run(bot, parse_query(query(*messages)), trace=trace, fetcher=fetcher)
        answer = Transcript.of(list(guarded(events, bot.name)))
        shown = answer.text if answer.error is None else answer.error.text
        messages.append(bot_message(shown, metadata=answer.metadata))
        paths.append(trace.path)
    return paths


def test_a_real_refund_maps_onto_existing_nodes() -> None:
    bot = example("refund-desk")
    delivered = {"http": [HttpReply(json={"status": "delivered", "total": "$4"})]}
    paths = turns(
        bot,
        ("refund", {}),
        ("AB123456", delivered),
        ("wrong item", {}),
        ("cancel", {}),
        ("hello", {}),
    )
    ids = drawn(mermaid(bot))
    expected = [
        ["routes_b0_if", "routes_b0", "flows_drefund_b0"],
        ["flows_drefund_b0", "flows_drefund_b1", "flows_drefund_b2", "flows_drefund_b3"],
        ["flows_drefund_b3", "flows_drefund_b4"],
        ["escapes_b0_if", "escapes_b0"],
        ["routes_b1"],  # the fallback: no decision node drawn, none given
    ]
    assert [nodes_for(path, bot) for path in paths] == expected
    for path in paths:
        assert set(nodes_for(path, bot)) <= ids
        assert set(nodes_for(path, bot)) <= set(nodes_for(path))
    assert nodes_for(paths[-1]) == ["routes_b1_if", "routes_b1"]


def test_refusals_branches_and_no_route_map_onto_existing_nodes() -> None:
    bot = compile_bot(KITCHEN, ENV)
    image = {
        "user": {
            "attachments": [
                {"url": "https://x.invalid/a.png", "content_type": "image/png", "name": "a.png"}
            ]
        }
    }
    paths = turns(
        bot,
        ("x" * 41, image),
        ("nothing", image),
        ("book", image),
        ("12", {**image, "http": [HttpReply(error="timeout")]}),
    )
    assert paths[0] == ["input.max_length"]
    assert nodes_for(paths[0], bot) == ["input_dmax__length", "refused"]
    assert nodes_for(paths[1], bot) == ["routes"]
    assert nodes_for(paths[3], bot) == [
        "flows_dbook_b0",
        "flows_dbook_b1",
        "flows_dother_b0",
    ]  # the call's on_error branch has no reply: no node of its own
    assert nodes_for(["input.reject[1]", "input.reject"], bot) == ["input_dreject", "refused"]
    assert nodes_for(["flows.book[0]", "flows.book[0].on_fail"], bot) == [
        "flows_dbook_b0",
        "flows_dbook_b0_fail",
    ]
    call = bot.routes[1]
    assert isinstance(call, CompiledCallRoute)
    assert nodes_for([call.loc, f"{call.loc}.call.on_error"], bot) == [
        "routes_b1_if",
        "routes_b1",
        "routes_b1_fail",
    ]


def test_the_highlight_appended_to_the_text_keeps_it_a_diagram() -> None:
    bot = example("acme-help")
    text = mermaid(bot) + f"class {','.join(nodes_for(['routes[3]'], bot))} taken\n"
    assert text.splitlines()[-1] == "class routes_b3_if,routes_b3 taken"
    assert text.splitlines()[-2] == f"    {TAKEN}"


# -- the command -----------------------------------------------------------------------------


def graph(*args: str) -> Result:
    return CliRunner().invoke(main, ["graph", *args])


def test_the_command_prints_a_bot_by_name_or_path() -> None:
    by_name = graph("refund-desk", "--bots", str(BOTS_DIR))
    assert by_name.exit_code == 0, by_name.output
    assert by_name.stdout == (GOLDEN / "refund-desk.mmd").read_text(encoding="utf-8")
    by_path = graph(str(BOTS_DIR / "refund-desk.yaml"))
    assert (by_path.exit_code, by_path.stdout) == (0, by_name.stdout)


def test_the_command_prints_markdown_for_readmes() -> None:
    result = graph("hello", "--bots", str(BOTS_DIR), "--markdown")
    golden = (GOLDEN / "hello.mmd").read_text(encoding="utf-8")
    assert (result.exit_code, result.stdout) == (0, f"```mermaid\n{golden}```\n")


def test_an_unknown_bot_is_a_usage_error() -> None:
    result = graph("no-such-bot", "--bots", str(BOTS_DIR))
    assert result.exit_code == 2
    assert "no bot named 'no-such-bot'" in result.output


def test_a_broken_file_prints_its_problems_as_validate_does(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes:\n  - reply: '{{ mesage }}'\n", encoding="utf-8")
    result = graph(str(broken))
    validate = CliRunner().invoke(main, ["validate", str(broken)])
    assert result.exit_code == 1
    assert result.stdout == validate.stdout
    assert "flowchart" not in result.stdout


def test_the_readme_shows_what_the_command_prints() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"$ python -m engine graph hello --markdown\n{markdown(example('hello'))}" in readme
    assert f"drawn like this:\n\n{markdown(example('acme-router'))}" in readme
