"""Files sent back with an answer: the events, the upload to a local stand-in for Poe,
its failures, validation, and `engine test` / `engine chat`, which upload nothing."""

from __future__ import annotations

import base64
import io
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from engine.chat import run_chat
from engine.cli import main
from engine.compiled import CompiledBot
from engine.errors import SpecErrors
from engine.protocol.events import Error, File, Meta, Suggest, Text
from engine.protocol.requests import QueryRequest
from engine.runtime import run

from ._poe import AUTH, parse_sse, query, user
from ._poe_standin import StandIn, running
from .conftest import KEY, compile_bot

REPORT = """\
    access_key: ${FILES_KEY}
    routes:
      - if: "contains(message, 'report')"
        reply: "Your report, and the chart: ![chart][{{ files['chart.png'].ref }}]"
        suggest: [Again]
        files:
          - name: report.csv
            template: |
              order,status
              {% for n in [1, 2] %}A{{ n }},{{ user.id }}
              {% endfor %}
          - url: "https://cdn.example.com/charts/{{ user.id }}.png"
            name: chart.png
            inline: true
      - flow: card
    flows:
      card:
        - ask: Your name?
          save: name
        - reply: "Here is your card, {{ vars.name }}."
          files:
            - {name: card.md, template: "# {{ vars.name }}", inline: true}
    """
CSV = "order,status\nA1,u-test\nA2,u-test\n"
ENV = {"FILES_KEY": KEY, "ENGINE_STATE_SECRET": "s" * 40}
UPLOADED = {
    "attachment_url": "https://pfst.cf2.poecdn.net/base/report.csv",
    "mime_type": "text/csv",
}


@pytest.fixture(scope="module")
def poe() -> Iterator[StandIn]:
    with running() as server:
        yield server


@pytest.fixture
def standin(poe: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    poe.reset()
    poe.answer("/file_upload_3RD_PARTY_POST", 200, UPLOADED)
    monkeypatch.setenv("POE_UPLOAD_URL", poe.url)
    return poe


def ask(bot: CompiledBot, text: str = "report please", **fields: object) -> list[object]:
    return list(run(bot, QueryRequest.model_validate(query(user(text), **fields))))


def test_files_go_first_then_the_text_reading_their_refs(standin: StandIn) -> None:
    bot = compile_bot(REPORT, ENV)
    events = ask(bot)
    chart = File("https://cdn.example.com/charts/u-test.png", "image/png", "chart.png", "")
    ref = next(e.inline_ref for e in events if isinstance(e, File) and e.file_name == "chart.png")
    assert ref is not None and len(ref) == 8 and ref.isalnum()
    assert events == [
        Meta(),
        File(UPLOADED["attachment_url"], "text/csv", "report.csv", None),
        File(chart.url, chart.content_type, chart.file_name, ref),
        Text(f"Your report, and the chart: ![chart][{ref}]"),
        Suggest("Again"),
    ]
    assert ask(bot) == events  # the same reference for the same message: reproducible
    assert ask(bot, message_id="m-other")[2] != events[2]  # another message, another one


def test_the_upload_is_multipart_with_the_raw_access_key(standin: StandIn) -> None:
    ask(compile_bot(REPORT, ENV))
    [upload] = standin.received
    assert upload.method == "POST"
    assert upload.path == "/file_upload_3RD_PARTY_POST"
    assert upload.headers["authorization"] == KEY  # fastapi_poe sends it without "Bearer"
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert upload.form() == {"file": ("report.csv", "text/csv", CSV.encode())}


def test_poes_inline_ref_wins_and_a_flow_step_sends_files(standin: StandIn) -> None:
    standin.answer("/file_upload_3RD_PARTY_POST", 200, {**UPLOADED, "inline_ref": "poe12345"})
    bot = compile_bot(REPORT, ENV)
    started = ask(bot, "hi")
    metadata = next(e.metadata for e in started if hasattr(e, "metadata"))
    request = query(
        user("hi"),
        {
            "role": "bot",
            "content": "Your name?",
            "content_type": "text/markdown",
            "metadata": metadata,
        },
        user("Ada"),
    )
    events = list(run(bot, QueryRequest.model_validate(request)))
    files = [e for e in events if isinstance(e, File)]
    assert files == [File(UPLOADED["attachment_url"], "text/csv", "card.md", "poe12345")]
    assert events.index(files[0]) < events.index(Text("Here is your card, Ada."))
    assert standin.received[0].form()["file"] == ("card.md", "text/markdown", b"# Ada")


@pytest.mark.parametrize(
    ("status", "body", "logged"),
    [
        (401, b'{"error": "bad key"}', 'answered HTTP 401 Unauthorized: {"error": "bad key"}'),
        (500, b"boom", "answered HTTP 500 Internal Server Error: boom"),
        (200, b'{"unexpected": true}', "Poe's answer has no attachment_url and mime_type"),
    ],
)
def test_a_failed_upload_is_an_error_the_user_may_retry(
    standin: StandIn, caplog: pytest.LogCaptureFixture, status: int, body: bytes, logged: str
) -> None:
    standin.answer("/file_upload_3RD_PARTY_POST", status, body)
    events = ask(compile_bot(REPORT, ENV))
    assert events == [
        Meta(),
        Error("Sorry, this bot could not attach report.csv. Please try again.", allow_retry=True),
    ]  # no file, no text: nothing half-sent
    assert logged in caplog.text
    assert "routes[0].files[0]" in caplog.text
    assert KEY not in caplog.text


def test_poe_unreachable(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("POE_UPLOAD_URL", f"http://127.0.0.1:{port}/poe_api")
    [_, error] = ask(compile_bot(REPORT, ENV))
    assert isinstance(error, Error) and error.allow_retry
    assert "could not connect" in caplog.text


def test_the_sse_stream_sends_file_events_before_the_text(
    standin: StandIn, bots_dir: Callable[[dict[str, str]], Path], make_app: Callable[..., Flask]
) -> None:
    app = make_app(bots_dir({"report.yaml": REPORT}), ENV)
    response = app.test_client().post("/report", json=query(user("report")), headers=AUTH)
    events = parse_sse(response.data)
    assert [name for name, _ in events] == [
        "meta",
        "file",
        "file",
        "text",
        "suggested_reply",
        "done",
    ]
    assert events[1][1] == {
        "url": UPLOADED["attachment_url"],
        "content_type": "text/csv",
        "name": "report.csv",
        "inline_ref": None,
    }
    assert events[2][1]["inline_ref"] in events[3][1]["text"]
    assert len(standin.received) == 1


def test_a_bot_without_a_key_uploads_nothing(standin: StandIn) -> None:
    """Served on loopback only, it never answers Poe: the file goes inline as a data: URL."""
    bot = compile_bot(REPORT.replace("    access_key: ${FILES_KEY}\n", ""), ENV)
    report = ask(bot)[1]
    assert isinstance(report, File)
    assert report.url == "data:text/csv;base64," + base64.b64encode(CSV.encode()).decode()
    assert standin.received == []


def test_engine_test_checks_files_and_uploads_nothing(standin: StandIn, tmp_path: Path) -> None:
    tests = """\
    tests:
      - say: report
        expect: {files: [report.csv, chart.png], contains: "![chart]["}
      - say: report
        expect: {files: [chart.png]}
    """
    (tmp_path / "report.yaml").write_text(textwrap.dedent(REPORT) + textwrap.dedent(tests))
    result = CliRunner().invoke(main, ["test", str(tmp_path)], env=ENV)
    assert result.exit_code == 1
    assert "PASS" in result.output.splitlines()[0]
    assert (
        "expected the files ['chart.png']; the answer sent ['report.csv', 'chart.png']"
        in result.output
    )
    assert standin.received == []


def test_engine_chat_shows_files_it_made_without_uploading(standin: StandIn) -> None:
    out = io.StringIO()
    assert run_chat(compile_bot(REPORT, ENV), {}, io.StringIO("report\n"), out) == 0
    shown = out.getvalue()
    head = "file: report.csv (text/csv), 41 bytes, not uploaded:\n"
    assert head + "  | order,status\n  | A1,u-terminal\n" in shown
    assert "file: chart.png (image/png) inline ref " in shown
    assert standin.received == []


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ("- name: a.csv", "5:9: routes[0].files[0]: a file needs exactly one of `url`"),
        ("- {url: 'https://x/a', template: b}", "5:9: routes[0].files[0]: a file needs exactly"),
        (
            "- {name: a.csv, template: '{{ mesage }}'}",
            "5:37: routes[0].files[0].template: unknown variable 'mesage'",
        ),
        (
            "- {url: 'ftp://x/a.png'}",
            "5:15: routes[0].files[0].url: a file's url must start with http",
        ),
        (
            "- {name: a/b.csv, template: x}",
            "5:16: routes[0].files[0].name: got 'a/b.csv' (a string); expected a file name",
        ),
        (
            "- {name: a.csv, template: x}\n      - {name: a.csv, template: y}",
            "6:16: routes[0].files[1].name: a second file named 'a.csv'",
        ),
    ],
)
def test_bad_files_are_located(files: str, problem: str) -> None:
    source = f"routes:\n  - reply: hi\n    files:\n      {files}\n"
    source = "# a bot\n" + source
    with pytest.raises(SpecErrors) as caught:
        compile_bot(source)
    assert any(str(error).startswith(f"bot.yaml:{problem}") for error in caught.value.errors), [
        str(error) for error in caught.value.errors
    ]
