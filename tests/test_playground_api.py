"""The playground's server side against a real `python -m engine play`: the bot list with
validation statuses, turns proxied over HTTP and inspected, flows round-tripping their
state, parameters and uploads reaching the bot, a broken remote server's violations, and
the security rules (no key in any answer, Host, Origin, content type)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from ._server import free_port, wait_for
from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY, REPO

REMOTE_KEY = "R" * 32
TEST_BOTS = {
    "echo.yaml": """\
        access_key: ${ECHO_ACCESS_KEY}
        description: Says back the parameters and the attached files.
        settings:
          allow_attachments: true
          expand_text_attachments: true
          parameter_controls:
            api_version: "2"
            sections:
              - controls:
                  - control: text_field
                    label: Tone
                    parameter_name: tone
                    default_value: plain
        routes:
          - reply: >-
              tone={{ params.tone }}
              files={% for a in attachments %}{{ a.name }}:{{ a.parsed_content }};{% endfor %}
        """,
    "scripted.yaml": """\
        access_key: ${SCRIPTED_ACCESS_KEY}
        model: {provider: scripted, replies: ["one two three four"]}
        routes: [{llm: {}}]
        """,
    "signup.yaml": """\
        access_key: ${SIGNUP_ACCESS_KEY}
        flows:
          signup:
            - ask: "Your name?"
              save: name
            - ask: "Favourite colour, {{ vars.name }}?"
              save: colour
            - end: "Thanks {{ vars.name }}: {{ vars.colour }}."
        routes:
          - flow: signup
        """,
    "wrecked.yaml": "routes: [\n",
}
KEYS = {f"{name.upper()}_ACCESS_KEY": KEY for name in ("echo", "scripted", "signup")}


class RogueHandler(BaseHTTPRequestHandler):
    """A bot server breaking the protocol: text after an error, and no `done`."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["type"] == "settings":
            self._send("application/json", b'{"introduction_message": "I am rogue"}')
            return
        body = (
            'event: meta\ndata: {"content_type": "text/markdown"}\n\n'
            'event: error\ndata: {"text": "broken", "allow_retry": false}\n\n'
            'event: text\ndata: {"text": "after"}\n\n'
        )
        self._send("text/event-stream", body.encode())

    def _send(self, content_type: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's)
        pass


@pytest.fixture(scope="module")
def rogue() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RogueHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rogue"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def play(tmp_path_factory: pytest.TempPathFactory, rogue: str) -> Iterator[str]:
    """`python -m engine play` over three example bots and the test bots; its base URL."""
    folder = tmp_path_factory.mktemp("play") / "bots"
    folder.mkdir()
    for name in ("hello", "acme-help", "refund-desk"):
        shutil.copy(BOTS_DIR / f"{name}.yaml", folder)
    for name, text in TEST_BOTS.items():
        (folder / name).write_text(textwrap.dedent(text))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_ACCESS_KEY")}
    env |= EXAMPLE_ENV | KEYS | {"PLAY_ROGUE_ACCESS_KEY": REMOTE_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("PLAYGROUND_TOKEN", None)
    log = folder.parent / "play.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "play", "--bots", str(folder), "--port", str(port)]
            + ["--connect", f"rogue={rogue}"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base, process, log), "the playground to answer", 30)
        yield base
    finally:
        process.terminate()
        process.wait(15)


def _up(base: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"engine play exited early:\n{log.read_text()}")
    try:
        return httpx.get(f"{base}/play/api/version", trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def client(play: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=play, trust_env=False, timeout=30) as http:
        yield http


def turn(
    client: httpx.Client, bot: str, query: list[dict[str, Any]], cid: str = "c-1"
) -> list[Any]:
    """The NDJSON lines of one turn."""
    response = client.post(
        f"/play/api/bots/{bot}/turn", json={"conversation_id": cid, "query": query}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def answer(lines: list[Any]) -> str:
    return "".join(
        line["data"]["text"]
        for line in lines
        if line["kind"] == "event" and line["event"] == "text"
    )


def user(content: str, **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **fields}


# ---------------------------------------------------------------------------- the list


def test_the_list_names_every_bot_with_its_kind_and_status(client: httpx.Client) -> None:
    listing = client.get("/play/api/bots").json()
    bots = {bot["name"]: bot for bot in listing["bots"]}
    assert list(bots) == sorted(bots)
    assert {name: (bot["kind"], bot["status"]) for name, bot in bots.items()} == {
        "acme-help": ("rules", "ok"),
        "echo": ("rules", "ok"),
        "hello": ("rules", "ok"),
        "refund-desk": ("flows", "ok"),
        "rogue": ("remote", "ok"),
        "scripted": ("model", "ok"),
        "signup": ("flows", "ok"),
        "wrecked": (None, "broken"),  # nothing loaded: no kind to tell
    }


def test_a_broken_file_shows_what_validate_prints(client: httpx.Client, play: str) -> None:
    wrecked = next(b for b in client.get("/play/api/bots").json()["bots"] if b["name"] == "wrecked")
    printed = subprocess.run(
        [sys.executable, "-m", "engine", "validate", wrecked["file"]],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    assert wrecked["problems"] == printed[:-1]  # all but the summary line
    assert wrecked["problems"][0].startswith(f"{wrecked['file']}:2:1: ")


def test_a_bot_page_has_its_settings_as_poe_fetches_them(client: httpx.Client) -> None:
    echo = client.get("/play/api/bots/echo").json()
    poe = client.post("/echo", json={"version": "1.2", "type": "settings"}, headers=_auth()).json()
    assert echo["settings"] == poe
    assert echo["settings"]["parameter_controls"]["sections"][0]["controls"][0]["label"] == "Tone"
    assert client.get("/play/api/bots/rogue").json()["settings"] == {
        "introduction_message": "I am rogue"
    }
    missing = client.get("/play/api/bots/nobody")
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]


# ---------------------------------------------------------------------------- turns


def test_a_turn_streams_the_request_response_events_trace_and_end(client: httpx.Client) -> None:
    lines = turn(client, "hello", [user("hi")])
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["request", "response"] and kinds[-1] == "end"
    request, response, end = lines[0], lines[1], lines[-1]
    assert request["url"].endswith("/hello") and request["body"]["type"] == "query"
    assert request["body"]["user_id"] == "u-play" and request["body"]["conversation_id"] == "c-1"
    assert response["status"] == 200 and response["content_type"].startswith("text/event-stream")
    events = [line for line in lines if line["kind"] == "event"]
    assert [e["event"] for e in events] == ["meta", "text", "suggested_reply", "done"]
    assert events[1]["raw"].startswith("event: text\r\ndata: ")
    times = [line["t"] for line in lines if "t" in line]
    assert times == sorted(times)
    trace = next(line for line in lines if line["kind"] == "trace")
    assert trace["path"] == ["routes[0]"] and "routes_b0" in trace["nodes"]
    assert end["violations"] == [] and end["state"] is None
    assert end["message_id"] == request["body"]["message_id"]
    timings = end["timings"]
    assert 0 < timings["first_byte"] <= timings["done"] and timings["chunks"]
    assert answer(lines) == "Hello! You said: hi"


def test_a_scripted_model_streams_in_pieces(client: httpx.Client) -> None:
    lines = turn(client, "scripted", [user("go")])
    texts = [line for line in lines if line["kind"] == "event" and line["event"] == "text"]
    assert len(texts) > 1 and answer(lines) == "one two three four"
    assert lines[-1]["violations"] == []


def test_a_flow_round_trips_its_state_over_two_turns(client: httpx.Client) -> None:
    first = turn(client, "signup", [user("hi")], cid="c-flow")
    state = first[-1]["state"]
    assert answer(first) == "Your name?"
    assert state == {"flow": "signup", "step": 0, "vars": {}, "tries": 0}
    metadata = next(line["data"]["metadata"] for line in first if line.get("event") == "data")
    history = [user("hi"), {"role": "bot", "content": "Your name?", "metadata": metadata}]
    second = turn(client, "signup", [*history, user("Ada")], cid="c-flow")
    assert answer(second) == "Favourite colour, Ada?"
    assert second[-1]["state"]["vars"] == {"name": "Ada"} and second[-1]["state"]["step"] == 1
    trace = next(line for line in second if line["kind"] == "trace")
    assert "flows.signup[1]" in trace["path"]


def test_parameters_and_an_uploaded_text_file_reach_the_bot(client: httpx.Client) -> None:
    uploaded = client.post(
        "/play/api/files", files={"file": ("notes.txt", b"plain words", "text/plain")}
    )
    assert uploaded.status_code == 200, uploaded.text
    attachment = uploaded.json()
    assert attachment["name"] == "notes.txt" and attachment["parsed_content"] == "plain words"
    assert attachment["url"].startswith(str(client.base_url) + "/play/files/")
    assert httpx.get(attachment["url"], trust_env=False).content == b"plain words"
    message = user("x", parameters={"tone": "warm"}, attachments=[attachment])
    assert answer(turn(client, "echo", [message])) == "tone=warm files=notes.txt:plain words;"


def test_a_broken_remote_server_is_flagged(client: httpx.Client, rogue: str) -> None:
    lines = turn(client, "rogue", [user("hi")])
    assert lines[0]["url"] == rogue
    assert "trace" not in [line["kind"] for line in lines]
    end = lines[-1]
    assert [v["rule"] for v in end["violations"]] == ["text-after-error", "no-done"]
    assert end["violations"][0]["event"] == 2 and end["timings"]["done"] is None


def test_an_unreachable_bot_still_ends_with_the_reason() -> None:
    gone = f"http://127.0.0.1:{free_port()}/gone"
    from engine.web.play_turn import Target, query_request, stream

    body = query_request({"query": [user("hi")]})
    lines = [json.loads(line) for line in stream(Target(gone, None), body, "c")]
    assert [line["kind"] for line in lines] == ["request", "end"]
    assert lines[-1]["violations"][0]["rule"] == "http-status"


# ---------------------------------------------------------------------------- security


def test_no_access_key_in_any_playground_answer(client: httpx.Client) -> None:
    answers = [client.get("/play/").text, client.get("/play/bots/echo").text]
    for bot in client.get("/play/api/bots").json()["bots"]:
        answers.append(client.get(f"/play/api/bots/{bot['name']}").text)
    for name in ("echo", "rogue", "signup"):
        answers.append(
            client.post(f"/play/api/bots/{name}/turn", json={"query": [user("hi")]}).text
        )
    assert all(KEY not in text and REMOTE_KEY not in text for text in answers)
    assert any("tone=" in text for text in answers)  # the turns did answer


def test_posts_must_be_json_from_our_own_origin(client: httpx.Client, play: str) -> None:
    path = "/play/api/bots/hello/turn"
    form = client.post(path, data={"query": "hi"})
    assert form.status_code == 415
    text = client.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    foreign = client.post(path, json={"query": [user("hi")]}, headers={"Origin": "http://evil"})
    assert foreign.status_code == 403
    own = client.post(path, json={"query": [user("hi")]}, headers={"Origin": play})
    assert own.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "10.0.0.1"])
def test_a_foreign_host_is_refused(client: httpx.Client, host: str) -> None:
    assert client.get("/play/api/bots", headers={"Host": host}).status_code == 403
    assert client.get("/play/api/bots", headers={"Host": "localhost"}).status_code == 200


def test_a_browser_opening_the_root_lands_on_the_playground(client: httpx.Client) -> None:
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 302 and page.headers["location"] == "/play/"
    assert client.get("/", headers={"Accept": "application/json"}).json()["bots"]
    assert client.get("/", headers={"Accept": "*/*"}).json()["bots"]  # curl


def test_the_trace_comment_needs_the_token(client: httpx.Client) -> None:
    query = {
        "version": "1.2",
        "type": "query",
        "query": [user("hi")],
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }
    for headers in (_auth(), _auth() | {"X-Engine-Trace": "guess"}):
        body = client.post("/hello", json=query, headers=headers).text
        assert "event: done" in body and "engine-trace" not in body


@pytest.fixture
def playground_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(BOTS_DIR, EXAMPLE_ENV, playground=True)


def test_the_trace_comment_comes_just_before_done_with_the_token(playground_app: Flask) -> None:
    token = playground_app.extensions["engine"].trace_token
    query = {
        "version": "1.2",
        "type": "query",
        "query": [user("hi")],
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }
    headers = _auth() | {"X-Engine-Trace": token}
    body = playground_app.test_client().post("/hello", json=query, headers=headers).text
    comment, done = body.split("\r\n\r\n")[-3:-1]
    assert comment.startswith(": engine-trace {") and done == "event: done\r\ndata: {}"
    assert json.loads(comment.removeprefix(": engine-trace "))["path"] == ["routes[0]"]


def test_without_playground_the_server_serves_no_play(make_app: Callable[..., Flask]) -> None:
    app = make_app(BOTS_DIR, EXAMPLE_ENV)
    client = app.test_client()
    assert app.extensions["engine"].trace_token is None
    for path in ("/play/", "/play/api/bots", "/play/api/version", "/play/static/play.css"):
        assert client.get(path).status_code == 404
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200


def test_off_loopback_the_token_cookie_is_needed(make_app: Callable[..., Flask]) -> None:
    app = make_app(BOTS_DIR, EXAMPLE_ENV, playground=True, playground_token="t" * 32)
    client = app.test_client()
    assert client.get("/play/api/bots", headers={"Host": "box.lan"}).status_code == 403
    assert client.get("/play/?token=wrong", headers={"Host": "box.lan"}).status_code == 403
    accepted = client.get("/play/?token=" + "t" * 32, headers={"Host": "box.lan"})
    assert accepted.status_code == 302 and accepted.headers["location"] == "/play/"
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/play/api/bots", headers={"Host": "box.lan"}).status_code == 200


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}
