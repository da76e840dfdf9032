"""Canvas apps under `engine play`, in a real headless Chromium: the window.Poe emulator.

Most tests drive tests/canvas/probe.html, a page written only against Poe's public Embed
API (it records handler calls and turns each call's outcome into data); the emulator's
drawer (confirmations, trigger message, charges, chats) is driven as a user would. One
`python -m engine play` server and one browser serve the module; each test has a page of
its own and leaves a screenshot in tests/output/screenshots/<test>.png.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Frame, Page, expect

from engine.web.canvas import inject

from ._browser import PlayServer, checked_page, chromium, require_chromium, screenshot
from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY, REPO

pytestmark = pytest.mark.timeout(180)

PROBE = Path(__file__).parent / "canvas" / "probe.html"
EXAMPLE_APP = REPO / "canvas" / "polyglot-greeter.html"
BOTS = {
    "chunks": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        description: A scripted model that streams four words.
        model: {provider: scripted, replies: ["alpha beta gamma delta"], delay: 0.15}
        routes: [{llm: {}}]
        """,
    "pricey": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        settings:
          rate_card: "**50 points** per message"
          cost_label: "50 points"
        routes:
          - reply: "paid: {{ message }}"
        """,
    "files": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        settings: {allow_attachments: true, expand_text_attachments: true}
        routes:
          - reply: >-
              {% for a in attachments %}{{ a.name }}|{{ a.content_type }}|{{
              a.parsed_content }};{% endfor %}
        """,
    "failing": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
        routes:
          - error: {text: "The vault is closed."}
        """,
    "survey": """\
        access_key: ${PLAYTEST_ACCESS_KEY}
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
}
EXAMPLES = ("hello", "polyglot", "acme-help", "storyteller")
TOKEN = "canvas-test-token-" + "t" * 16
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bots/ and, beside it, canvas/ (found there by default, as `engine play` does)."""
    root = tmp_path_factory.mktemp("canvas-play")
    bots = root / "bots"
    bots.mkdir()
    for name in EXAMPLES:
        shutil.copy(BOTS_DIR / f"{name}.yaml", bots / f"{name}.yaml")
    for name, text in BOTS.items():
        (bots / f"{name}.yaml").write_text(textwrap.dedent(text))
    canvas = root / "canvas"
    canvas.mkdir()
    shutil.copy(PROBE, canvas / "probe.html")
    shutil.copy(EXAMPLE_APP, canvas / EXAMPLE_APP.name)
    for name in ("ask-acme.yaml", "story-starter.yaml"):  # YAML apps: built on the fly
        shutil.copy(REPO / "canvas" / name, canvas / name)
    return root


class TokenPlayServer(PlayServer):
    """`engine play` with PLAYGROUND_TOKEN: its readiness probe shows the token too."""

    def version(self) -> int:
        headers = {"Cookie": f"playground_token={TOKEN}"}
        probe = urllib.request.Request(f"{self.url}/play/api/version", headers=headers)
        with urllib.request.urlopen(probe, timeout=5) as response:
            return int(json.load(response)["version"])


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[PlayServer]:
    require_chromium()
    # With a token, as off loopback: the app's frame, an opaque origin, gets no cookie.
    env = EXAMPLE_ENV | {"PLAYTEST_ACCESS_KEY": KEY, "PLAYGROUND_TOKEN": TOKEN}
    play = TokenPlayServer(folder / "bots", folder / "play.log", env, {})
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
        page.goto(f"/play/?token={TOKEN}")  # the cookie every playground request needs
        yield page


# ---------------------------------------------------------------------------- helpers


def open_app(page: Page, name: str = "probe", query: str = "") -> Frame:
    """The app's frame once its own script has run."""
    page.goto(f"/play/canvas/{name}{query}")
    frame = page.frame_locator("[data-testid=canvas-frame]")
    expect(frame.locator("body")).to_be_visible()
    app = page.frame(name="canvas-app")
    assert app is not None
    app.wait_for_function("() => document.readyState === 'complete'")
    return app


def send(app: Frame, text: str, options: str = "{}", handler: str = "h") -> dict[str, Any]:
    """Registers `handler`, sends, waits for the final result: {sent, calls}."""
    outcome: dict[str, Any] = app.evaluate(
        f"""async () => {{
            record({handler!r});
            const sent = await attempt("sendUserMessage", {text!r}, {options});
            if (sent.error) return {{sent, calls: []}};
            return {{sent, calls: await finished({handler!r})}};
        }}"""
    )
    return outcome


def attempt(app: Frame, expression: str) -> dict[str, Any]:
    """`expression` is an `attempt(...)` call (or several, as an array) run in the app."""
    result: dict[str, Any] = app.evaluate(f"async () => await {expression}")
    return result


def final(outcome: dict[str, Any]) -> dict[str, Any]:
    """The last handler call's first response."""
    message: dict[str, Any] = outcome["calls"][-1]["result"]["responses"][0]
    return message


# ---------------------------------------------------------------------------- streaming


def test_streaming_handler_sees_cumulative_incomplete_results_then_one_complete(
    page: Page,
) -> None:
    app = open_app(page)
    outcome = send(
        app, "@chunks go", '{handler: "h", stream: true, handlerContext: {requestId: "r1", n: 2}}'
    )
    assert outcome["sent"] == {"value": {"success": True}}
    calls = outcome["calls"]
    statuses = [call["result"]["status"] for call in calls]
    assert statuses[-1] == "complete" and set(statuses[:-1]) == {"incomplete"}
    assert len(statuses) >= 4, statuses  # a call per chunk, not one at the end
    contents = [call["result"]["responses"][0]["content"] for call in calls]
    assert contents[-1] == "alpha beta gamma delta"
    assert all(b.startswith(a) for a, b in zip(contents, contents[1:], strict=False))
    assert contents[0] == "alpha "  # cumulative, starting from the first chunk
    for call in calls:
        assert call["context"] == {"requestId": "r1", "n": 2}
        (message,) = call["result"]["responses"]
        assert message["senderId"] == "chunks"
        assert message["contentType"] == "text/markdown"
        assert message["status"] == call["result"]["status"]
        assert message["attachments"] == []
        assert "statusText" not in message
    assert len({call["result"]["responses"][0]["messageId"] for call in calls}) == 1


def test_without_stream_the_handler_hears_only_the_final_result(page: Page) -> None:
    app = open_app(page)
    outcome = send(app, "@chunks go", '{handler: "h", handlerContext: {k: 1}}')
    assert [call["result"]["status"] for call in outcome["calls"]] == ["complete"]
    assert final(outcome)["content"] == "alpha beta gamma delta"
    assert outcome["calls"][0]["context"] == {"k": 1}


def test_the_bot_is_named_without_regard_to_case_and_gets_the_text_after_it(
    page: Page,
) -> None:
    app = open_app(page)
    outcome = send(app, "@HeLLo how are you", '{handler: "h"}')
    assert final(outcome)["senderId"] == "hello"
    assert final(outcome)["content"] == "Hello! You said: how are you"


def test_a_bot_error_ends_the_stream_with_its_text_as_status_text(page: Page) -> None:
    app = open_app(page)
    outcome = send(app, "@failing open", '{handler: "h", stream: true}')
    assert outcome["sent"] == {"value": {"success": True}}
    assert outcome["calls"][-1]["result"]["status"] == "error"
    assert final(outcome)["status"] == "error"
    assert final(outcome)["statusText"] == "The vault is closed."


# ---------------------------------------------------------------------------- errors


INVALID_SENDS = [
    ("42", "text must be a string"),
    ("'hello there'", "must start with @BotName"),
    ("'@nobody hi'", "no bot named @nobody"),
    ("'@hello hi', {handler: 'missing'}", 'no handler registered as "missing"'),
    ("'@hello hi', {handler: 'gone'}", 'no handler registered as "gone"'),
    ("'@hello hi', {stream: 'yes'}", "stream must be true or false"),
    ("'@hello hi', {openChat: 1}", "openChat must be true or false"),
    ("'@hello hi', {attachments: ['a.txt']}", "attachments[0] must be a File"),
    ("'@hello hi', {attachments: 'a.txt'}", "attachments must be an array of File"),
    ("'@hello hi', {handlerContext: 'x'}", "handlerContext must be an object"),
    ("'@hello hi', {onChunk: 1}", "unknown option onChunk"),
    ("'@hello hi', 'stream'", "options must be an object"),
]


def test_invalid_input_says_what_is_wrong(page: Page) -> None:
    app = open_app(page)
    app.evaluate("() => { record('gone')(); }")  # registered, then unregistered
    calls = ", ".join(f"attempt('sendUserMessage', {args})" for args, _ in INVALID_SENDS)
    results = app.evaluate(f"() => Promise.all([{calls}])")
    for (args, wanted), result in zip(INVALID_SENDS, results, strict=True):
        error = result.get("error")
        assert error is not None, f"sendUserMessage({args}) succeeded"
        assert error["errorType"] == "INVALID_INPUT", (args, error)
        assert error["isAPIError"], args
        assert wanted in error["message"], (args, error["message"])


def test_register_handler_checks_its_arguments_and_unregisters(page: Page) -> None:
    app = open_app(page)
    outcome = app.evaluate(
        """() => {
            const thrown = (f) => {
                try { f(); return null; } catch (e) { return [e.errorType, e.message]; }
            };
            return {
                name: thrown(() => Poe.registerHandler("", () => {})),
                func: thrown(() => Poe.registerHandler("x", "not a function")),
                unregister: typeof Poe.registerHandler("x", () => {}),
            };
        }"""
    )
    assert outcome["name"][0] == "INVALID_INPUT" and "name must be" in outcome["name"][1]
    assert outcome["func"][0] == "INVALID_INPUT" and "func must be a function" in outcome["func"][1]
    assert outcome["unregister"] == "function"
    # A handler unregistered while its answer streams hears nothing more.
    heard = app.evaluate(
        """async () => {
            const stop = record("brief");
            await Poe.sendUserMessage("@chunks go", {handler: "brief", stream: true});
            while (!calls.brief.length) await new Promise((r) => setTimeout(r, 10));
            stop();
            await new Promise((r) => setTimeout(r, 1200));
            return calls.brief.map((c) => c.result.status);
        }"""
    )
    assert heard and "complete" not in heard


def test_outside_the_emulator_page_a_call_is_unknown(page: Page) -> None:
    page.goto("/play/canvas/probe/app")  # the app alone: no emulator page around it
    result = attempt(page.main_frame, "attempt('sendUserMessage', '@hello hi')")
    assert result["error"]["errorType"] == "UNKNOWN"
    assert "/play/canvas/<name>" in result["error"]["message"]


# ---------------------------------------------------------------------------- attachments


def test_attachments_reach_the_bot_as_poe_attachments(page: Page) -> None:
    app = open_app(page)
    text: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"from a file"}
    image: FilePayload = {"name": "pixel.png", "mimeType": "image/png", "buffer": PNG}
    app.locator("[data-testid=files]").set_input_files([text, image])
    outcome = send(app, "@files look", '{handler: "h", attachments: chosenFiles()}')
    assert final(outcome)["content"] == "notes.txt|text/plain|from a file;pixel.png|image/png|None;"


# ---------------------------------------------------------------------------- confirmation


def test_a_bot_with_a_rate_card_asks_first_and_sends_once_accepted(page: Page) -> None:
    app = open_app(page)
    app.evaluate(
        """() => { record("h");
            window.first = attempt("sendUserMessage", "@pricey one", {handler: "h"}); }"""
    )
    confirmation = page.get_by_test_id("confirmation")
    expect(confirmation).to_be_visible()
    expect(confirmation.get_by_test_id("rate-card")).to_have_text("50 points per message")
    second = attempt(app, "attempt('sendUserMessage', '@pricey two')")
    assert second["error"]["errorType"] == "ANOTHER_CONFIRMATION_IS_OPEN"
    screenshot(page, "test_canvas_confirmation_open")
    page.get_by_test_id("confirm-accept").click()
    assert app.evaluate("async () => await window.first") == {"value": {"success": True}}
    calls = app.evaluate("async () => await finished('h')")
    assert calls[-1]["result"]["responses"][0]["content"] == "paid: one"
    expect(confirmation).to_have_count(0)


def test_declining_the_confirmation_rejects_and_sends_nothing(page: Page) -> None:
    app = open_app(page)
    app.evaluate("() => { window.first = attempt('sendUserMessage', '@PRICEY one'); }")
    page.get_by_test_id("confirm-decline").click()
    result = app.evaluate("async () => await window.first")
    assert result["error"]["errorType"] == "USER_REJECTED_CONFIRMATION"
    assert "declined" in result["error"]["message"]
    expect(page.get_by_test_id("chat-link")).to_have_count(0)  # no conversation began


# ---------------------------------------------------------------------------- trigger, cost


def test_get_trigger_message_gives_the_panels_message_and_attachments(page: Page) -> None:
    app = open_app(page, query="?trigger=Plan%20my%20week")
    got = attempt(app, "attempt('getTriggerMessage')")["value"]
    assert got["content"] == "Plan my week" and got["status"] == "complete"
    assert got["attachments"] == []
    page.get_by_test_id("trigger-text").fill("Plan my **month**")
    file: FilePayload = {"name": "todo.txt", "mimeType": "text/plain", "buffer": b"gym"}
    page.get_by_test_id("trigger-files").set_input_files([file])
    expect(page.locator("[data-testid=trigger-attachment]")).to_have_count(1)
    got = attempt(app, "attempt('getTriggerMessage')")["value"]
    assert got["content"] == "Plan my **month**"
    (attachment,) = got["attachments"]
    assert attachment["name"] == "todo.txt" and attachment["mimeType"] == "text/plain"
    assert attachment["url"].endswith("/todo.txt") and attachment["isInline"] is False
    assert page.request.get(attachment["url"]).text() == "gym"


def test_capture_cost_validates_and_shows_each_charge(page: Page) -> None:
    app = open_app(page)
    ok = attempt(
        app,
        "attempt('captureCost', [{amountUsdMilliCents: 1500, description: 'One poster'},"
        " {amountUsdMilliCents: 250}], {logChargeOutcome: true})",
    )
    assert ok == {"value": {"success": True}}
    charges = page.get_by_test_id("charge")
    expect(charges).to_have_count(2)
    expect(charges.first).to_contain_text("$0.015")
    expect(charges.first).to_contain_text("One poster")
    expect(page.get_by_test_id("charges-total")).to_have_text("total $0.0175")
    bad = [
        "[]",
        "[{amountUsdMilliCents: 0}]",
        "[{amountUsdMilliCents: 1.5}]",
        "[{amountUsdMilliCents: '100'}]",
        "[{amountUsdMilliCents: 100, description: 7}]",
        "{amountUsdMilliCents: 100}",
        "[{amountUsdMilliCents: 100}], {logChargeOutcome: 'yes'}",
    ]
    calls = ", ".join(f"attempt('captureCost', {args})" for args in bad)
    results = app.evaluate(f"() => Promise.all([{calls}])")
    for args, result in zip(bad, results, strict=True):
        assert result.get("error", {}).get("errorType") == "INVALID_INPUT", (args, result)
    expect(charges).to_have_count(2)  # nothing charged for the invalid ones


# ---------------------------------------------------------------------------- conversations


def test_a_multi_turn_flow_runs_from_a_canvas_page(page: Page) -> None:
    app = open_app(page)
    answers = [
        final(send(app, f"@survey {text}", '{handler: "h"}'))["content"]
        for text in ("start", "Ada", "Red")
    ]
    assert answers == ["What's your name?", "Which colour, Ada?", "Thanks Ada: Red it is."]


def test_open_chat_shows_the_bots_conversation_in_a_side_panel(page: Page) -> None:
    app = open_app(page)
    panel = page.get_by_test_id("chat-panel")
    send(app, "@hello first", '{handler: "h"}')
    expect(panel).to_be_hidden()
    send(app, "@hello second", '{handler: "h", openChat: true}')
    expect(panel).to_be_visible()
    messages = panel.get_by_test_id("chat-message")
    expect(messages).to_have_count(4)
    expect(messages.nth(3)).to_have_text("Hello again! You said: second")
    expect(messages.nth(2)).to_have_attribute("data-role", "user")


def test_the_app_runs_sandboxed_as_in_poe(page: Page) -> None:
    app = open_app(page)
    outcome = app.evaluate(
        """async () => {
            let storage;
            try { localStorage.getItem("x"); storage = "readable"; } catch (e) { storage = e.name; }
            const api = await fetch("/play/api/bots").then(() => "reachable", () => "blocked");
            const first = document.head.querySelector("script");
            const embed = first && first.hasAttribute("data-poe-embed");
            return {storage, api, embed, origin: window.origin};
        }"""
    )
    assert outcome == {
        "storage": "SecurityError",
        "api": "blocked",
        "embed": True,
        "origin": "null",
    }


def test_the_emulator_steps_aside_when_poe_is_there(page: Page) -> None:
    page.add_init_script("window.Poe = {real: true};")
    app = open_app(page)
    assert app.evaluate("() => window.Poe") == {"real": True}


# ---------------------------------------------------------------------------- the playground


def test_the_bot_list_has_a_canvas_apps_section(page: Page) -> None:
    page.goto("/play/")
    rows = page.get_by_test_id("canvas-row")
    expect(rows).to_have_count(4)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.name)") == [
        "ask-acme",
        "polyglot-greeter",
        "probe",
        "story-starter",
    ]
    expect(rows.first.get_by_test_id("canvas-kind")).to_have_text("yaml")
    screenshot(page, "test_canvas_list")
    rows.nth(1).get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/play/canvas/polyglot-greeter$"))
    expect(page.get_by_test_id("canvas-name")).to_have_text("polyglot-greeter")


def test_the_example_app_drives_the_polyglot_flow(page: Page) -> None:
    app = open_app(page, EXAMPLE_APP.stem)
    app.get_by_role("button", name="Español").click()
    answers = app.locator(".answer")
    expect(answers).to_have_count(3)
    expect(answers.nth(2)).to_have_text("¡Hola! ¿En qué puedo ayudarte?")
    expect(answers.nth(0)).to_have_text("Which language should I answer in?")


# ---------------------------------------------------------------------------- injection


@pytest.mark.parametrize(
    ("page_html", "expected"),
    [
        ("<!doctype html><html><head><title>t</title></head>", "<html><head>{S}<title>"),
        ("<HTML><HEAD lang=en><script>x</script>", "<HEAD lang=en>{S}<script>x"),
        ("<html><header>h</header>", "<html>{S}<header>"),  # no head: the implied one
        ("<!DOCTYPE html><p>bare", "<!DOCTYPE html>{S}<p>bare"),
        ("<p>nothing else", "{S}<p>nothing else"),
    ],
)
def test_the_emulator_is_the_first_script_of_the_head(page_html: str, expected: str) -> None:
    script = "<script data-poe-embed>\nwindow.X = '<\\/script>';</script>"
    injected = inject(page_html, "window.X = '</script>';")
    assert expected.replace("{S}", script) in injected
    assert injected.count("<script data-poe-embed>") == 1


def test_a_yaml_canvas_app_is_built_and_answered_by_the_real_bot(page: Page) -> None:
    app = open_app(page, "ask-acme")
    app.locator("#field-topic").select_option("Refund")
    app.locator("#field-question").fill("Can I get my money back?")
    app.locator("#submit").click()
    answer = app.locator(".exchange .response .content")
    expect(answer).to_contain_text("Refunds take 5-7 days")
    expect(app.locator(".reply")).to_have_text(["How long is shipping?", "I want a refund"])


def test_the_yaml_example_app_streams_the_storytellers_answer(page: Page) -> None:
    """canvas/story-starter.yaml with the example bot storyteller, whose scripted model
    streams word by word: the page shows the story while it is still arriving."""
    app = open_app(page, "story-starter")
    app.locator("#field-hero").fill("a small fox")
    app.locator("#submit").click()
    app.wait_for_function(
        """() => {
            const answer = document.querySelector(".exchange .response .content");
            return answer !== null && answer.textContent.startsWith("Once upon a time")
                && !answer.textContent.includes("led home");
        }"""
    )
    answer = app.locator(".exchange .response .content")
    expect(answer).to_contain_text("the map led home")
    expect(answer.locator("strong")).to_have_text("home")
    expect(app.locator(".reply")).to_have_text(["Another story"])
    screenshot(page, "test_the_yaml_example_app_streams_the_storytellers_answer")
