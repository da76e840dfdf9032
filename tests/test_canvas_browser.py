"""The page `canvas build` writes, in headless Chromium, against a stand-in `window.Poe`.

The stand-in has only the Embed API's public shape (registerHandler, sendUserMessage, a
thrown error's errorType) and is driven by the test, so each state of an answer is seen
in turn. The engine's own emulator drives the same page against real bots elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from engine.canvas.build import build_html
from engine.canvas.loader import load_canvas_text

from ._browser import chromium, screenshot
from .conftest import REPO

EXAMPLE = REPO / "canvas" / "ask-acme.yaml"

# Records each send; the test answers through window.__answer(status, content, statusText).
FAKE_POE = """
window.__sent = [];
window.Poe = {
  handlers: {},
  registerHandler(name, fn) {
    this.handlers[name] = fn;
    return () => { delete this.handlers[name]; };
  },
  async sendUserMessage(text, options) {
    const files = (options.attachments || []).map((f) => f.name);
    window.__sent.push({text, options: {...options, attachments: files}});
    if (text.includes("decline")) {
      const error = new Error("The user declined.");
      error.errorType = "USER_REJECTED_CONFIRMATION";
      throw error;
    }
    const handler = this.handlers[options.handler];
    window.__answer = (status, content, statusText) => handler({
      status,
      responses: [{messageId: "m-1", senderId: "acme-help", content, status, statusText,
                   contentType: "text/markdown"}],
    }, options.handlerContext);
    return {success: true};
  },
};
"""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app, problems = load_canvas_text(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    assert app is not None, problems
    path = tmp_path_factory.mktemp("canvas") / "ask-acme.html"
    path.write_text(build_html(app), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _open(browser: Browser, page_file: Path, *, with_poe: bool) -> tuple[Page, list[str]]:
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    if with_poe:
        page.add_init_script(FAKE_POE)
    page.goto(page_file.as_uri())
    return page, requests


def _sent(page: Page) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = page.evaluate("window.__sent")
    return sent


def test_invalid_input_is_refused_in_the_page_field_by_field(
    browser: Browser, page_file: Path
) -> None:
    page, requests = _open(browser, page_file, with_poe=True)
    expect(page.locator("#no-poe")).to_be_hidden()
    page.fill("#field-order", "ab12")
    page.fill("#field-question", "Hi")
    page.click("#submit")
    expect(page.locator("#field-topic-error")).to_have_text("Please choose one.")
    expect(page.locator("#field-order-error")).to_have_text("An order number looks like AB123456.")
    expect(page.locator("#field-question-error")).to_have_text("Use at least 5 characters.")
    expect(page.locator("#field-order")).to_have_attribute("aria-invalid", "true")
    page.fill("#field-question", "x" * 251)
    expect(page.locator("#field-question-error")).to_be_hidden()  # typing clears it
    page.click("#submit")
    expect(page.locator("#field-question-error")).to_have_text(
        "Use at most 250 characters (this has 251)."
    )
    screenshot(page, "canvas-invalid-input")
    assert _sent(page) == []
    assert requests == [page_file.as_uri()]
    page.close()


def test_valid_input_sends_the_message_and_the_answer_streams_as_markdown(
    browser: Browser, page_file: Path
) -> None:
    page, requests = _open(browser, page_file, with_poe=True)
    page.select_option("#field-topic", "Refund")
    page.fill("#field-order", "AB123456")
    page.fill("#field-question", "  Where is my refund?  ")
    page.check("#field-urgent")
    page.click("#submit")
    sent = _sent(page)
    assert [item["text"] for item in sent] == [
        "@acme-help Refund: Where is my refund? (order AB123456) This is urgent."
    ]
    options = sent[0]["options"]
    assert options["handler"] == "canvasAnswer" and options["stream"] is True
    assert options["openChat"] is False and options["attachments"] == []
    assert set(options["handlerContext"]) == {"requestId"}
    expect(page.locator("#submit")).to_be_disabled()

    page.evaluate("window.__answer('incomplete', '**Refunds** take')")
    answer = page.locator(".exchange .response .content")
    expect(answer.locator("strong")).to_have_text("Refunds")
    expect(page.locator(".exchange")).to_have_class("exchange streaming")
    expect(page.locator(".reply")).to_have_count(0)

    done = (
        "**Refunds** take *5-7 days*.\n\n- first\n- second\n\n"
        '<b onclick="window.__pwned = 1">bold</b> <a href="javascript:window.__pwned = 2">x</a>'
    )
    page.evaluate("text => window.__answer('complete', text)", done)
    expect(answer.locator("li")).to_have_text(["first", "second"])
    expect(answer.locator("em")).to_have_text("5-7 days")
    assert answer.locator("b").get_attribute("onclick") is None
    assert answer.locator("a").get_attribute("href") is None
    expect(page.locator(".exchange")).to_have_class("exchange")
    expect(page.locator(".reply")).to_have_text(["How long is shipping?", "I want a refund"])
    expect(page.locator("#submit")).to_be_enabled()
    screenshot(page, "canvas-answer")

    page.click("text=How long is shipping?")
    assert _sent(page)[-1]["text"] == "@acme-help How long is shipping?"
    page.evaluate("window.__answer('error', 'Half', 'The bot is offline.')")
    expect(page.locator(".exchange").nth(1).locator(".response .error")).to_have_text(
        "The bot is offline."
    )
    assert page.evaluate("window.__pwned") is None
    assert requests == [page_file.as_uri()]
    page.close()


def test_a_thrown_embed_api_error_is_shown(browser: Browser, page_file: Path) -> None:
    page, _ = _open(browser, page_file, with_poe=True)
    page.select_option("#field-topic", "Shipping")
    page.fill("#field-question", "Please decline this one")
    page.click("#submit")
    expect(page.locator(".exchange .failure")).to_have_text("You declined, so nothing was sent.")
    expect(page.locator("#submit")).to_be_enabled()
    page.close()


def test_outside_poe_the_page_says_so(browser: Browser, page_file: Path) -> None:
    page, requests = _open(browser, page_file, with_poe=False)
    expect(page.locator("#no-poe")).to_be_visible()
    expect(page.locator("#no-poe")).to_contain_text("exists only inside Poe")
    page.select_option("#field-topic", "Shipping")
    page.fill("#field-question", "How long is shipping?")
    page.click("#submit")
    expect(page.locator(".exchange")).to_have_count(0)
    screenshot(page, "canvas-outside-poe")
    assert requests == [page_file.as_uri()]
    assert json.loads(page.locator("#canvas-config").text_content() or "")["bot"] == "acme-help"
    page.close()
