"""`python -m engine sync` against a local stand-in for Poe's settings endpoint."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main

from ._poe_standin import StandIn, running

KEY_A = "A" * 32
KEY_B = "b/B+" + "B" * 28  # characters a URL path must quote
HELP = """\
access_key: ${SYNC_KEY_A}
poe_name: AcmeHelp
greeting: Hello from Acme.
settings:
  allow_attachments: true
routes:
  - reply: hi
"""
FAQ = """\
access_key: ${SYNC_KEY_B}
routes:
  - reply: answer
"""
KEYLESS = """\
routes:
  - reply: nothing
"""


@pytest.fixture(scope="module")
def poe() -> Iterator[StandIn]:
    with running() as server:
        yield server


@pytest.fixture
def standin(poe: StandIn) -> StandIn:
    poe.reset()
    return poe


@pytest.fixture
def bots(tmp_path: Path) -> Path:
    folder = tmp_path / "bots"
    folder.mkdir()
    (folder / "help.yaml").write_text(HELP)
    (folder / "faq.yaml").write_text(FAQ)
    return folder


def sync(bots: Path, *args: str, base: str | None = None, **env: str) -> Result:
    environ = {
        "SYNC_KEY_A": KEY_A,
        "SYNC_KEY_B": KEY_B,
        "STATE_DIR": str(bots.parent / "state"),
        "POE_API_URL": base or "",
        **env,
    }
    result = CliRunner().invoke(main, ["sync", "--bots", str(bots), *args], env=environ)
    assert KEY_A not in result.output and "BBBBBBBBBBBB" not in result.output, result.output
    return result


def test_every_bot_is_sent_with_its_poe_name_and_key(bots: Path, standin: StandIn) -> None:
    result = sync(bots, base=standin.url)
    assert result.exit_code == 0, result.output
    paths = sorted(request.path for request in standin.received)
    assert paths == [
        f"/update_settings/AcmeHelp/{KEY_A}/1.2",
        "/update_settings/faq/b%2FB%2B" + "B" * 28 + "/1.2",
    ]
    sent = {r.path.split("/")[2]: r for r in standin.received}
    assert sent["AcmeHelp"].headers["content-type"] == "application/json"
    assert sent["AcmeHelp"].json() == {
        "response_version": 2,
        "introduction_message": "Hello from Acme.",
        "allow_attachments": True,
    }
    assert sent["faq"].json() == {"response_version": 2}
    lines = result.output.splitlines()
    assert "help (Poe bot AcmeHelp): sent 3 keys (no earlier sync recorded here)" in lines
    assert '  introduction_message: "Hello from Acme."' in lines
    assert "faq: sent 1 key (no earlier sync recorded here)" in lines


def test_a_second_sync_tells_what_changed(bots: Path, standin: StandIn) -> None:
    assert sync(bots, base=standin.url).exit_code == 0
    (bots / "help.yaml").write_text(
        HELP.replace("Hello from Acme.", "Welcome!").replace("allow_attachments: true", "{}")
    )
    standin.received.clear()
    result = sync(bots, base=standin.url)
    assert result.exit_code == 0, result.output
    assert len(standin.received) == 2  # unchanged bots are sent again: Poe's copy may differ
    lines = result.output.splitlines()
    assert "help (Poe bot AcmeHelp): 2 keys changed, sent" in lines
    assert '  introduction_message: "Hello from Acme." -> "Welcome!"' in lines
    assert "  allow_attachments: true -> (unset)" in lines
    assert "faq: unchanged since the last sync from here (sent again)" in lines


def test_only_the_named_bots_are_sent(bots: Path, standin: StandIn) -> None:
    result = sync(bots, "faq", base=standin.url)
    assert result.exit_code == 0, result.output
    assert [r.path.split("/")[2] for r in standin.received] == ["faq"]
    unknown = sync(bots, "nope", base=standin.url)
    assert unknown.exit_code == 2
    assert "no bot named 'nope'; bots: faq, help" in unknown.output


@pytest.mark.parametrize(
    ("status", "said", "shown"),
    [
        (401, b'{"message": "Invalid access key"}', "Poe answered HTTP 401: "),
        (500, b"Internal error", "Poe answered HTTP 500: Internal error"),
    ],
)
def test_a_refusal_fails_with_the_status_and_poes_message(
    bots: Path, standin: StandIn, status: int, said: bytes, shown: str
) -> None:
    standin.answer("/update_settings/AcmeHelp/", status, said)
    result = sync(bots, base=standin.url)
    assert result.exit_code == 1
    line = next(line for line in result.output.splitlines() if line.startswith("help "))
    assert line.startswith("help (Poe bot AcmeHelp): not synced: " + shown), line
    assert said.decode() in line
    if status == 401:
        assert "SYNC_KEY_A" in line and "poe_name" in line  # what to check
    assert "faq: sent" in result.output  # the other bot is still synced
    assert result.output.splitlines()[-1] == "sync failed for 1 of 2 bots"


def test_an_echoed_key_is_never_printed(bots: Path, standin: StandIn) -> None:
    standin.answer("/update_settings/", 400, f"bad key {KEY_A} for {KEY_B}".encode())
    result = sync(bots, base=standin.url)  # sync() asserts no key in the output
    assert result.exit_code == 1
    assert "bad key *** for ***" in result.output


def test_poe_unreachable(bots: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = sync(bots, "--base-url", f"http://127.0.0.1:{port}/bot")
    assert result.exit_code == 1
    assert f"help (Poe bot AcmeHelp): not synced: could not reach http://127.0.0.1:{port}/bot/" in (
        result.output
    )
    assert not (bots.parent / "state" / "poe-sync.json").exists()


def test_a_bot_without_a_key_is_not_synced(bots: Path, standin: StandIn) -> None:
    (bots / "keyless.yaml").write_text(KEYLESS)
    result = sync(bots, base=standin.url, SYNC_KEY_B="")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "faq: not synced: no access key (environment variable SYNC_KEY_B is not set)" in lines
    assert any(
        line.startswith("keyless: not synced: no access key (add `access_key: ${VARIABLE}` to ")
        for line in lines
    )
    assert [r.path.split("/")[2] for r in standin.received] == ["AcmeHelp"]


def test_dry_run_sends_nothing(bots: Path, standin: StandIn) -> None:
    (bots / "keyless.yaml").write_text(KEYLESS)
    result = sync(bots, "--dry-run", "help", base=standin.url)
    assert result.exit_code == 0, result.output
    assert standin.received == []
    head, body = result.output.split("\n", 1)
    assert head == "help (Poe bot AcmeHelp): would send"
    assert json.loads(body) == {
        "response_version": 2,
        "introduction_message": "Hello from Acme.",
        "allow_attachments": True,
    }
    keyless = sync(bots, "--dry-run", "keyless", base=standin.url)
    assert "keyless: would send (no access key" in keyless.output


def test_broken_files_and_bad_base_urls_stop_before_sending(bots: Path, standin: StandIn) -> None:
    bad_url = sync(bots, "--base-url", "ftp://poe.example")
    assert bad_url.exit_code == 2
    assert "must start with http:// or https://" in bad_url.output
    (bots / "broken.yaml").write_text("routes: []\n")
    broken = sync(bots, base=standin.url)
    assert broken.exit_code == 1
    assert "cannot sync: 1 error in the bot files" in broken.output
    assert standin.received == []
