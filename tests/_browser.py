"""Headless Chromium for the browser tests, and the playground server they talk to.

Playwright drives Debian's own `chromium` (its browser download does not work here): the
README's test command installs it. Without it the browser tests skip, except under CI,
where a missing browser must fail the run instead of hiding every browser test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from ._server import free_port, wait_for
from .conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "tests" / "output" / "screenshots"
SERVER_VARS = ("HOST", "PORT", "BOTS_DIR", "WEB_CONCURRENCY", "REDIS_URL", "STATE_DIR")


def require_chromium() -> None:
    """Skip without Debian's chromium; under CI=true its absence is a failure."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: `apt-get install -y chromium` (the README's test command)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium under Playwright, for a module's tests (skipped without it)."""
    require_chromium()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@contextmanager
def checked_page(browser: Browser, base_url: str, name: str) -> Iterator[Page]:
    """A fresh page (its own storage): a JavaScript error on it fails the test, and its
    screenshot is saved as `name` whatever the outcome."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1360, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        screenshot(page, name)
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """The page as the test left it, at tests/output/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


class PlayServer:
    """`python -m engine play` serving one folder (and remote bots) on a free loopback port."""

    def __init__(
        self, bots: Path, log_path: Path, env: Mapping[str, str], connect: Mapping[str, str]
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        environ = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
        environ |= {"PYTHONUNBUFFERED": "1", **env}
        command = [sys.executable, "-m", "engine", "play", "--bots", str(bots)]
        command += ["--port", str(self.port)]
        for name, url in connect.items():
            command += ["--connect", f"{name}={url}"]
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._ready, f"`engine play` on port {self.port}", 30)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def version(self) -> int:
        with urllib.request.urlopen(f"{self.url}/play/api/version", timeout=5) as response:
            return int(json.load(response)["version"])

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"`engine play` exited early:\n{self.log()}")
        try:
            self.version()
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self._log.close()
