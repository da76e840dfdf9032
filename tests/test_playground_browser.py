"""The playground in a real headless Chromium: what a bot creator sees in the browser.

One `python -m engine play` server and one browser serve the whole module; each test has
a page of its own (fresh sessionStorage) and leaves a screenshot in
tests/output/screenshots/<test>.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from ._browser import PlayServer, checked_page, chromium, require_chromium, screenshot
from ._server import wait_for
from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY

pytestmark = pytest.mark.timeout(180)

BOTS = {
    "pick": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        description: Answers with the parameters it received.
        greeting: Pick a **tone** on the right.
        settings:
          parameter_controls:
            api_version: "2"
            sections:
              - name: Tone
                controls:
                  - control: drop_down
                    label: Tone
                    parameter_name: tone
                    options: [{value: calm, name: Calm}, {value: loud, name: Loud}]
                  - control: slider
                    label: Level
                    parameter_name: level
                    default_value: 3
                    min_value: 0
                    max_value: 10
                    step: 1
                  - control: condition
                    condition:
                      comparator: eq
                      left: {parameter_name: tone}
                      right: {literal: loud}
                    controls:
                      - control: text_field
                        label: Shout
                        parameter_name: shout
                        default_value: hey
        routes:
          - if: "message == 'which'"
            reply: "Which one?"
            suggest: [The first, The second]
          - reply: "tone={{ params.tone }} level={{ params.level }} shout={{ params.shout }}"
        """,
    "slow": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        description: A scripted model that streams word by word.
        model: {provider: scripted, replies: ["one two three four five six"], delay: 0.25}
        routes: [{llm: {}}]
        """,
    "survey": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        description: Asks two questions, then sums up.
        flows:
          survey:
            - ask: "What's your name?"
              save: name
            - ask: "Which colour, {{ vars.name }}?"
              save: colour
              expect: {choices: [Red, Blue]}
            - end: "Thanks {{ vars.name }}: {{ vars.colour }} it is."
        routes:
          - if: "message == 'start'"
            flow: survey
          - reply: "Say start."
        """,
    "reload-me": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        routes:
          - reply: "version one"
        """,
}
BROKEN = "access_key: ${PLAYTEST_ACCESS_KEY}\nroutes:\n  - reply: 'x'\n    bogus: 1\n"
EXAMPLES = ("hello", "image-studio")
# The smallest valid PNG: one transparent pixel.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


class BrokenBotHandler(BaseHTTPRequestHandler):
    """A remote bot that breaks the protocol: text after an error, and no `done`."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("type") == "settings":
            self._send(b'{"introduction_message": "I break the rules."}', "application/json")
            return
        events = [
            ("text", {"text": "Half an answer"}),
            ("error", {"text": "Upstream failed", "allow_retry": False}),
            ("text", {"text": " and more after the error"}),
        ]
        stream = b"".join(
            f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode() for name, data in events
        )
        self._send(stream, "text/event-stream")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet


@pytest.fixture(scope="module")
def bots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("play") / "bots"
    folder.mkdir()
    for name in EXAMPLES:
        shutil.copy(BOTS_DIR / f"{name}.yaml", folder / f"{name}.yaml")
    for name, text in BOTS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    (folder / "broken.yaml").write_text(BROKEN)
    return folder


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenBotHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(bots: Path, remote: str) -> Iterator[PlayServer]:
    require_chromium()
    env = EXAMPLE_ENV | {"PLAYTEST_ACCESS_KEY": KEY, "PLAY_BROKEN_ACCESS_KEY": KEY}
    play = PlayServer(bots, bots.parent / "play.log", env, {"broken": remote})
    yield play
    play.stop()


@pytest.fixture(scope="module")
def browser(server: PlayServer) -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: PlayServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page (own sessionStorage); its screenshot is saved whatever the outcome."""
    with checked_page(browser, server.url, request.node.name) as page:
        yield page


# ---------------------------------------------------------------------------- helpers


def save(path: Path, text: str) -> None:
    """Save as editors do, in one step: a watcher never sees a half-written file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def open_bot(page: Page, name: str) -> None:
    page.goto(f"/play/bots/{name}")
    expect(page.get_by_test_id("bot-status")).to_be_visible()


def say(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("send").click()


def last_answer(page: Page) -> str:
    """The text of the newest bot message once its turn has ended."""
    answer = page.locator("[data-testid=message][data-role=bot]").last
    expect(answer).to_have_attribute("data-state", re.compile("done|error"))
    return answer.get_by_test_id("message-content").inner_text()


def expect_answer(page: Page, text: str | re.Pattern[str]) -> None:
    answer = page.locator("[data-testid=message][data-role=bot]").last
    expect(answer).to_have_attribute("data-state", re.compile("done|error"))
    expect(answer.get_by_test_id("message-content")).to_have_text(text)


# ---------------------------------------------------------------------------- tests


def test_bot_list_shows_every_bot_and_a_broken_files_errors(page: Page) -> None:
    page.goto("/play/")
    rows = page.get_by_test_id("bot-row")
    expect(rows.first).to_be_visible()
    names = rows.evaluate_all("rows => rows.map(row => row.dataset.name)")
    assert {"hello", "image-studio", "pick", "slow", "survey", "broken"} <= set(names)
    assert names == sorted(names)
    hello = page.locator("[data-testid=bot-row][data-name=hello]")
    expect(hello.get_by_test_id("bot-kind")).to_have_text("rules")
    expect(hello.get_by_test_id("bot-description")).to_contain_text("Says hello")
    expect(page.locator("[data-name=slow] [data-testid=bot-kind]")).to_have_text("model")
    expect(page.locator("[data-name=survey] [data-testid=bot-kind]")).to_have_text("flows")
    expect(page.locator("[data-name=broken]")).to_have_attribute("data-status", "broken")
    problem = page.locator("[data-name=broken] [data-testid=problem]").first
    expect(problem).to_have_text(re.compile(r"broken\.yaml:\d+:\d+: .*bogus"))
    assert problem.evaluate("el => getComputedStyle(el).fontFamily").lower().find("mono") >= 0
    expect(page.locator("[data-name=hello] [data-testid=problem]")).to_have_count(0)


def test_rule_bot_greets_answers_and_sends_a_clicked_suggested_reply(page: Page) -> None:
    open_bot(page, "hello")
    expect(page.get_by_test_id("greeting")).to_contain_text("Hello! I'm a tiny bot")
    say(page, "hi")
    expect_answer(page, "Hello! You said: hi")
    suggestion = page.get_by_test_id("suggested-reply")
    expect(suggestion).to_have_text(["Hi again"])
    suggestion.click()
    expect(page.locator("[data-testid=message][data-role=user]").last).to_have_text(
        re.compile("Hi again")
    )
    expect_answer(page, "Hello again! You said: Hi again")
    expect(page.get_by_test_id("suggested-reply")).to_have_text(["Goodbye"])


def test_drawing_the_diagram_leaves_the_page_layout_alone(page: Page) -> None:
    """Mermaid draws in a scratch element and removes it. Without one of ours it adds it
    to the body, a flex column here: the page's layout jumped while a diagram was drawn
    (after every turn, to mark the path taken), and a click on Send then could land
    elsewhere and be lost."""
    open_bot(page, "hello")
    diagram = page.get_by_test_id("diagram")
    expect(diagram).to_have_attribute("data-renders", "1")
    page.evaluate(
        """() => {
            window.addedToBody = [];
            new MutationObserver((changes) => {
                for (const change of changes)
                    for (const node of change.addedNodes)
                        window.addedToBody.push(node.id || node.nodeName);
            }).observe(document.body, { childList: true });
        }"""
    )
    say(page, "hi")
    expect_answer(page, "Hello! You said: hi")
    expect(diagram).to_have_attribute("data-renders", "2")  # drawn again, the path marked
    assert page.evaluate("window.addedToBody") == []


def test_a_scripted_model_answer_arrives_in_pieces(page: Page) -> None:
    open_bot(page, "slow")
    say(page, "go")
    answer = page.locator("[data-testid=message][data-role=bot]").last
    content = answer.get_by_test_id("message-content")
    seen: list[str] = []
    deadline = time.monotonic() + 15
    while answer.get_attribute("data-state") != "done" and time.monotonic() < deadline:
        text = content.inner_text()
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.02)
    final = "one two three four five six"
    expect(content).to_have_text(final)
    partial = [text for text in seen if text.strip() != final]
    assert len(set(partial)) >= 2, f"the answer came in one piece: {seen}"
    assert all(final.startswith(text.strip()) for text in partial), seen
    texts = page.locator("[data-testid=inspector-event][data-event=text]")
    expect(texts).to_have_count(6)


def test_a_parameter_control_change_reaches_the_bot(page: Page) -> None:
    open_bot(page, "pick")
    say(page, "defaults")
    expect_answer(page, "tone=calm level=3 shout=hey")
    shout = page.get_by_test_id("param-shout")
    expect(shout).to_be_hidden()  # its condition (tone == loud) does not hold yet
    page.get_by_test_id("param-tone").select_option("loud")
    expect(shout).to_be_visible()
    shout.fill("AAA")
    page.get_by_test_id("param-level").evaluate(
        "el => { el.value = '7'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    expect(page.get_by_test_id("value-level")).to_have_text("7")
    say(page, "chosen")
    expect_answer(page, "tone=loud level=7 shout=AAA")
    body = page.get_by_test_id("inspector-request").first.locator("pre").text_content() or ""
    last = json.loads(body)["query"][-1]
    assert last["parameters"] == {"tone": "loud", "level": 7, "shout": "AAA"}


def test_an_attached_image_and_an_aspect_ratio_reach_the_bot(page: Page) -> None:
    open_bot(page, "image-studio")
    output = page.get_by_test_id("section").filter(has_text="Output")
    expect(output).not_to_have_attribute("open", "")  # collapsed_by_default
    output.locator("summary").click()
    page.get_by_test_id("param-shape").locator("[data-value='16:9']").click()
    expect(page.get_by_test_id("param-shape").locator(".active")).to_have_attribute(
        "data-value", "16:9"
    )
    page.locator("#file-input").set_input_files(
        files=[FilePayload(name="cat.png", mimeType="image/png", buffer=PNG)]
    )
    expect(page.get_by_test_id("attachment-chip")).to_have_attribute("data-state", "done")
    say(page, "remove the background")
    expect_answer(page, re.compile(r"Plan \(1 image\):\s+cat\.png.*shape 16:9", re.DOTALL))
    user = page.locator("[data-testid=message][data-role=user]").last
    expect(user.get_by_test_id("message-attachment")).to_have_text("cat.png")
    body = page.get_by_test_id("inspector-request").first.locator("pre").text_content() or ""
    attachment = json.loads(body)["query"][-1]["attachments"][0]
    assert attachment["name"] == "cat.png" and attachment["content_type"] == "image/png"


def test_suggested_replies_and_clear_context(page: Page) -> None:
    open_bot(page, "pick")
    say(page, "which")
    expect_answer(page, "Which one?")
    page.get_by_test_id("suggested-reply").filter(has_text="The second").click()
    expect_answer(page, re.compile("^tone=calm"))
    first_id = page.get_by_test_id("conversation-id").inner_text()
    page.get_by_test_id("clear-context").click()
    expect(page.get_by_test_id("chat-break")).to_have_count(1)
    assert page.get_by_test_id("conversation-id").inner_text() != first_id
    say(page, "after")
    expect_answer(page, re.compile("^tone=calm"))
    body = json.loads(
        page.get_by_test_id("inspector-request").first.locator("pre").text_content() or ""
    )
    assert [m["content"] for m in body["query"]] == ["after"]
    assert body["conversation_id"] != first_id


def test_a_multi_turn_flow_round_trips_its_state(page: Page) -> None:
    open_bot(page, "survey")
    say(page, "start")
    expect_answer(page, "What's your name?")
    say(page, "Ada")
    expect_answer(page, "Which colour, Ada?")
    page.get_by_test_id("suggested-reply").filter(has_text="Blue").click()
    expect_answer(page, "Thanks Ada: Blue it is.")
    # The second turn's request carried the first answer's metadata back, as Poe does.
    second = page.locator("[data-testid=inspector-turn][data-turn='2']")
    body = json.loads(
        second.get_by_test_id("inspector-request").locator("pre").text_content() or ""
    )
    assert body["query"][1]["role"] == "bot" and body["query"][1]["metadata"]
    state = second.get_by_test_id("inspector-state")
    expect(state).to_contain_text('"flow": "survey"')
    expect(state).to_contain_text("Ada")


def test_the_inspector_shows_events_timings_and_a_clean_turn(page: Page) -> None:
    open_bot(page, "hello")
    say(page, "hi")
    expect_answer(page, "Hello! You said: hi")
    turn = page.get_by_test_id("inspector-turn").first
    events = turn.get_by_test_id("inspector-event")
    expect(events.last).to_have_attribute("data-event", "done")
    names = events.evaluate_all("rows => rows.map(row => row.dataset.event)")
    assert names[0] == "HTTP" and "text" in names and "suggested_reply" in names, names
    expect(turn.get_by_test_id("timing-first-byte")).to_have_text(re.compile(r"first byte \d+ ms"))
    expect(turn.get_by_test_id("timing-done")).to_have_text(re.compile(r"done \d+ ms"))
    expect(turn.get_by_test_id("violation")).to_have_count(0)
    expect(turn).to_contain_text("protocol ok")
    expect(turn.locator("summary").first).not_to_contain_text("null")
    expect(turn.get_by_test_id("inspector-trace")).to_contain_text("routes[0]")
    request = turn.get_by_test_id("inspector-request")
    assert KEY not in (request.locator("pre").text_content() or "")


def test_the_inspector_flags_a_broken_servers_violations(page: Page) -> None:
    open_bot(page, "broken")
    expect(page.get_by_test_id("bot-kind")).to_have_text("remote")
    say(page, "anything")
    answer = page.locator("[data-testid=message][data-role=bot]").last
    expect(answer).to_have_attribute("data-state", "error")
    expect(answer.get_by_test_id("message-error")).to_contain_text("Upstream failed")
    violations = page.get_by_test_id("inspector-turn").first.get_by_test_id("violation")
    expect(violations.first).to_be_visible()
    rules = violations.evaluate_all("items => items.map(item => item.dataset.rule)")
    assert {"no-done", "text-after-error"} <= set(rules), rules
    for item in violations.all():
        assert item.get_attribute("data-severity") == "error"
        expect(item).to_have_class(re.compile(r"\berror\b"))


def test_the_diagram_highlights_the_route_taken(page: Page) -> None:
    open_bot(page, "pick")
    svg = page.get_by_test_id("diagram-svg")
    expect(svg).to_be_visible(timeout=15_000)
    expect(svg.locator(".taken")).to_have_count(0)
    say(page, "which")
    expect_answer(page, "Which one?")
    diagram = page.get_by_test_id("diagram")
    expect(diagram).not_to_have_attribute("data-taken", "")
    expect(svg.locator(".taken").first).to_be_visible()
    taken = diagram.get_attribute("data-taken") or ""
    say(page, "something else")
    expect_answer(page, re.compile("^tone="))
    expect(diagram).not_to_have_attribute("data-taken", taken)  # the other route now
    expect(svg.locator(".taken").first).to_be_visible()


def test_hot_reload_seen_from_the_browser(page: Page, server: PlayServer, bots: Path) -> None:
    path = bots / "reload-me.yaml"
    open_bot(page, "reload-me")
    say(page, "hi")
    expect_answer(page, "version one")

    version = server.version()
    save(path, textwrap.dedent(BOTS["reload-me"]).replace("version one", "version two"))
    wait_for(lambda: server.version() > version, "the good edit to load", 10)
    say(page, "hi")
    expect_answer(page, "version two")

    save(path, "access_key: ${PLAYTEST_ACCESS_KEY}\nroutes:\n  - reply: [unclosed\n")
    expect(page.get_by_test_id("bot-status")).to_have_text("stale", timeout=10_000)
    expect(page.get_by_test_id("bot-problems")).to_contain_text(re.compile(r"reload-me\.yaml:\d+"))
    say(page, "still there?")
    expect_answer(page, "version two")
    screenshot(page, "test_hot_reload_seen_from_the_browser-stale")

    page.goto("/play/")
    save(bots / "fresh.yaml", "access_key: ${PLAYTEST_ACCESS_KEY}\nroutes: [{reply: new}]\n")
    expect(page.locator("[data-testid=bot-row][data-name=fresh]")).to_have_count(1, timeout=10_000)
    (bots / "fresh.yaml").unlink()
    expect(page.locator("[data-testid=bot-row][data-name=fresh]")).to_have_count(0, timeout=10_000)
