"""The Flask app over HTTP: auth, limits, request types, settings, headers, start-up checks."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.errors import SpecErrors
from engine.web import StartupError

from ._poe import AUTH, bot, names, parse_sse, query, user
from ._sdk import types as poe_types
from .conftest import BOTS_DIR, EXAMPLE_ENV, KEY

MakeApp = Callable[..., Flask]
BotsDir = Callable[[dict[str, str]], Path]
SETTINGS = {"version": "1.2", "type": "settings"}


def _error_body(response: Any) -> str:
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    return str(body["error"])


# ---------------------------------------------------------------------------- auth


def test_no_authorization_header_is_401_with_a_bearer_challenge(
    example_client: FlaskClient,
) -> None:
    response = example_client.post("/hello", json=SETTINGS)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert _error_body(response) == "missing or wrong access key"


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {'J' * 32}",
        f"Bearer {KEY[:-1]}",
        f"Bearer {KEY}x",
        f"Basic {KEY}",
        KEY,
        "Bearer",
        "Bearer ",
        "",
    ],
    ids=["wrong", "short", "long", "basic", "no-scheme", "scheme-only", "empty-key", "empty"],
)
def test_a_wrong_authorization_is_401(example_client: FlaskClient, authorization: str) -> None:
    response = example_client.post(
        "/hello", json=SETTINGS, headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER {KEY}", f"  Bearer   {KEY}  "],
    ids=["canonical", "lower-case", "upper-case", "extra-spaces"],
)
def test_the_right_key_is_accepted_leniently(
    example_client: FlaskClient, authorization: str
) -> None:
    response = example_client.post(
        "/hello", json=SETTINGS, headers={"Authorization": authorization}
    )
    assert response.status_code == 200


def test_each_bot_checks_its_own_key(make_app: MakeApp) -> None:
    env = {**EXAMPLE_ENV, "HELLO_ACCESS_KEY": "H" * 32}
    client = make_app(BOTS_DIR, env).test_client()
    hello_auth = {"Authorization": f"Bearer {'H' * 32}"}
    assert client.post("/hello", json=SETTINGS, headers=hello_auth).status_code == 200
    assert client.post("/acme-help", json=SETTINGS, headers=hello_auth).status_code == 401
    assert client.post("/hello", json=SETTINGS, headers=AUTH).status_code == 401


def test_a_refused_key_is_logged_without_the_key(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.web"):
        example_client.post("/hello", json=SETTINGS, headers={"Authorization": "Bearer nope"})
    messages = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert messages == ["bot hello: refused a request with a missing or wrong access key"]


# ---------------------------------------------------------------------------- bad requests


def test_a_body_over_the_limit_is_413(make_app: MakeApp) -> None:
    client = make_app(BOTS_DIR, EXAMPLE_ENV, max_body_bytes=1024).test_client()
    small = query(user("x" * 200))
    big = query(user("x" * 2000))
    assert client.post("/hello", json=small, headers=AUTH).status_code == 200
    response = client.post("/hello", json=big, headers=AUTH)
    assert response.status_code == 413
    assert _error_body(response) == "the request body is over 1024 bytes"


def test_a_chunked_body_over_the_limit_is_413(make_app: MakeApp) -> None:
    """No Content-Length to check up front: the limit applies while reading."""
    client = make_app(BOTS_DIR, EXAMPLE_ENV, max_body_bytes=1024).test_client()
    body = json.dumps(query(user("x" * 2000))).encode()
    response = client.post(
        "/hello",
        input_stream=io.BytesIO(body),
        headers={**AUTH, "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the request body is not valid JSON: "),
        (b"", 400, "the request body is not valid JSON: "),
        (b"\xff\xfe", 400, "the request body is not valid JSON: "),
        (b"[1, 2]", 400, "the request body must be a JSON object"),
        (b'"query"', 400, "the request body must be a JSON object"),
        (b"null", 400, "the request body must be a JSON object"),
        (b'{"version": "1.2"}', 400, "the request has no `type` (query, settings, report_*)"),
        (b'{"type": 5}', 400, "the request has no `type` (query, settings, report_*)"),
        (b'{"type": "subscribe"}', 501, "unsupported request type 'subscribe'"),
        (b'{"type": "query", "query": "hi"}', 400, "invalid query: query: "),
        (b'{"type": "query"}', 400, "invalid query: query: Field required"),
        (b'{"type": "query", "query": [{"content": "hi"}]}', 400, "invalid query: query.0.role"),
        (b"[" * 100_000, 400, "the request body is nested too deeply to be a Poe request"),
        (
            b'{"type": "query", "query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            400,
            "the request body is nested too deeply to be a Poe request",
        ),
        (
            b'{"type": "query", "query": [], "timestamp": ' + b"9" * 4301 + b"}",
            400,
            "the request body is not valid JSON: it holds a number too long to read "
            "(over 4,300 digits)",
        ),
        (
            b'{"type": "query", "query": [], "x": ' + b"[" * 600 + b'"\\ud800"' + b"]" * 600 + b"}",
            400,
            "the request body is nested too deeply to be a Poe request",
        ),
        (
            b'{"type": "query", "user_id": "' + b"u" * 257 + b'", "query": []}',
            400,
            "invalid query: user_id: String should have at most 256 characters",
        ),
    ],
    ids=[
        "malformed",
        "empty",
        "not-utf8",
        "array",
        "string",
        "null",
        "no-type",
        "type-not-string",
        "unknown-type",
        "query-not-list",
        "no-query",
        "message-without-role",
        "nested-array",
        "nested-in-a-query",
        "integer-over-4300-digits",
        "nested-with-a-surrogate",
        "user-id-too-long",
    ],
)
def test_bad_requests_get_a_status_and_a_reason(
    example_client: FlaskClient, body: bytes, status: int, message: str
) -> None:
    response = example_client.post(
        "/hello", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert _error_body(response).startswith(message)


ECHO = """
    name: echo
    routes:
      - reply: "{{ language }}: {{ message }}"
"""


@pytest.mark.parametrize(
    ("content", "echoed"),
    [
        (b'"hi \\ud800"', "hi \ufffd"),  # a lone escaped half
        (b'"\\udc00\\ud83d"', "\ufffd\ufffd"),  # two halves in the wrong order
        (b'"hi \xed\xa0\x80"', "hi \ufffd"),  # the raw bytes of a lone half
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # a pair is one emoji
        (b'"\xed\xa0\xbd\xed\xb8\x80"', "\U0001f600"),  # a pair as raw bytes
    ],
    ids=["escaped", "reversed", "raw-bytes", "escaped-pair", "raw-pair"],
)
def test_surrogates_in_a_message_are_text_not_a_500(
    make_app: MakeApp, bots_dir: BotsDir, content: bytes, echoed: str
) -> None:
    client = make_app(bots_dir({"echo.yaml": ECHO}), {}).test_client()
    body = b'{"type": "query", "query": [{"role": "user", "content": ' + content + b"}]}"
    response = client.post("/echo", data=body)
    assert response.status_code == 200
    events = parse_sse(response.data)
    assert [name for name, _ in events] == ["meta", "text", "done"]
    assert events[1] == ("text", {"text": f"en: {echoed}"})
    response.data.decode("utf-8")  # strict: every byte sent is valid UTF-8


@pytest.mark.parametrize(
    ("code", "seen"),
    [("pt-BR", "pt-BR"), ("zh-Hant-TW", "zh-Hant-TW"), ("{{ 7*7 }}", "en"), ("en\n\nIgnore", "en")],
)
def test_only_a_language_tag_reaches_the_context(
    make_app: MakeApp, bots_dir: BotsDir, code: str, seen: str
) -> None:
    client = make_app(bots_dir({"echo.yaml": ECHO}), {}).test_client()
    response = client.post("/echo", json={**query(user("hi")), "language_code": code})
    assert parse_sse(response.data)[1] == ("text", {"text": f"{seen}: hi"})


def test_a_bad_request_is_logged_with_the_bot_name(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.web"):
        example_client.post("/acme-help", data=b"[]", headers=AUTH)
    messages = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert messages == ["bot acme-help: bad request: the request body must be a JSON object"]


# ---------------------------------------------------------------------------- request types


@pytest.mark.parametrize(
    "body",
    [
        {"version": "1.2", "type": "report_error", "message": "Bot exited", "metadata": {}},
        {"version": "1.2", "type": "report_feedback", "feedback_type": "meh", "message_id": ""},
        {"version": "1.2", "type": "report_reaction", "reaction": "🎉", "user_id": "u-1"},
    ],
    ids=["error", "feedback", "reaction"],
)
def test_reports_are_answered_200_and_logged(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture, body: dict[str, Any]
) -> None:
    with caplog.at_level(logging.INFO, logger="engine.web"):
        response = example_client.post("/image-studio", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {}
    (message,) = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert message.startswith(f"bot image-studio: {body['type']} ")
    detail = json.loads(message.split(" ", 3)[3])
    logged = ("message", "feedback_type", "reaction")
    assert detail == {key: value for key, value in body.items() if key in logged}


def test_a_huge_report_is_logged_truncated(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"type": "report_error", "message": "x" * 5000}
    with caplog.at_level(logging.INFO, logger="engine.web"):
        example_client.post("/hello", json=body, headers=AUTH)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert len(message) < 600


@pytest.mark.parametrize("name", ["acme-help", "hello", "image-studio"])
def test_settings_are_in_poes_schema(example_client: FlaskClient, name: str) -> None:
    response = example_client.post(f"/{name}", json=SETTINGS, headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    # fastapi_poe's own model forbids unknown keys and checks every control's shape.
    parsed = poe_types.SettingsResponse(**body)
    assert body["response_version"] == 2
    assert parsed.introduction_message == body["introduction_message"]
    # Nothing the SDK drops or coerces: the body is exactly what its model holds.
    as_poe = parsed.model_dump(mode="json", exclude_none=True)
    assert as_poe.pop("server_bot_dependencies") == {}  # an SDK default we need not send
    assert as_poe == body


def test_image_studio_settings(example_client: FlaskClient) -> None:
    body = example_client.post("/image-studio", json=SETTINGS, headers=AUTH).get_json()
    assert body["introduction_message"].startswith("Send me up to two images")
    assert body["allow_attachments"] is True
    assert body["enable_image_comprehension"] is True
    assert body["rate_card"] == "Each plan costs [usd_milli_cents=500]."
    controls = body["parameter_controls"]
    assert controls["api_version"] == "2"
    style, output = controls["sections"]
    assert [c["control"] for c in style["controls"]] == ["drop_down", "slider", "toggle_switch"]
    assert style["controls"][0] == {
        "control": "drop_down",
        "label": "Style",
        "parameter_name": "style",
        "default_value": "photo",
        "options": [
            {"value": "photo", "name": "Photographic"},
            {"value": "watercolor", "name": "Watercolor"},
            {"value": "pixel", "name": "Pixel art"},
        ],
    }
    condition = output["controls"][1]
    assert condition["condition"] == {
        "comparator": "eq",
        "left": {"parameter_name": "style"},
        "right": {"literal": "pixel"},
    }
    assert output["collapsed_by_default"] is True


def test_a_bot_without_settings_sends_only_version_and_greeting(
    example_client: FlaskClient,
) -> None:
    body = example_client.post("/hello", json=SETTINGS, headers=AUTH).get_json()
    assert body == {
        "response_version": 2,
        "introduction_message": "Hello! I'm a tiny bot defined in one YAML file. Say anything.\n",
    }


def test_a_query_is_an_sse_stream_with_poes_headers(example_client: FlaskClient) -> None:
    response = example_client.post("/hello", json=query(user("hi")), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in response.headers  # streamed, not buffered
    assert response.is_streamed
    assert names(parse_sse(response.data)) == ["meta", "text", "suggested_reply", "done"]


def test_an_empty_query_is_an_error_event_not_a_status(example_client: FlaskClient) -> None:
    response = example_client.post("/hello", json=query(), headers=AUTH)
    assert response.status_code == 200
    events = parse_sse(response.data)
    assert names(events) == ["meta", "error", "done"]
    assert events[1][1] == {
        "allow_retry": False,
        "text": "The request carried no user message to answer.",
    }


def test_lenient_input_is_answered(example_client: FlaskClient) -> None:
    body = {
        "type": "query",  # no version
        "future_field": {"nested": [1, 2]},
        "query": [
            {"role": "system", "content": "sys", "content_type": "text/x-unknown"},
            {"role": "assistant", "content": "unknown role"},
            user("one", message_id="", timestamp=0, sender={"id": None, "name": None}),
            bot("Hello! You said: one", metadata=None, reactions=[{"user_id": "", "x": 1}]),
            {
                "role": "user",
                "content": "two",
                "content_type": "text/html",
                "feedback": [{"type": "meh", "reason": None}],
                "attachments": [],
                "parameters": {"unknown": True},
                "referenced_message": {"role": "alien"},
                "brand_new": "field",
            },
        ],
        "user_id": "",
        "conversation_id": "",
        "message_id": "",
        "temperature": None,
        "logit_bias": {},
    }
    response = example_client.post("/hello", json=body, headers=AUTH)
    assert response.status_code == 200
    events = parse_sse(response.data)
    assert events[1] == ("text", {"text": "Hello again! You said: two"})


def test_null_means_not_given(example_client: FlaskClient) -> None:
    body = query(
        user("hi", parameters=None, attachments=None, metadata=None, content_type=None),
        language_code=None,
        metadata=None,
        user_id=None,
    )
    response = example_client.post("/hello", json=body, headers=AUTH)
    assert response.status_code == 200
    assert parse_sse(response.data)[1] == ("text", {"text": "Hello! You said: hi"})


def test_fastapi_poes_own_request_body_is_accepted(example_client: FlaskClient) -> None:
    """The exact body fastapi_poe's client sends (protocol reference, section 10.4)."""
    raw = (
        '{"version":"1.2","type":"query","query":[{"role":"user","message_type":null,'
        '"sender_id":null,"sender":null,"content":"hi","parameters":{},'
        '"content_type":"text/markdown","timestamp":0,"message_id":"","feedback":[],'
        '"attachments":[],"metadata":null,"referenced_message":null,"reactions":[]}],'
        '"user_id":"","conversation_id":"","message_id":"","metadata":"",'
        '"api_key":"<missing>","access_key":"<missing>","temperature":null,'
        '"skip_system_prompt":false,"logit_bias":{},"stop_sequences":[],'
        '"language_code":"en","adopt_current_bot_name":null,"bot_query_id":"","users":[],'
        '"tools":null,"tool_calls":null,"tool_results":null,"query_creation_time":null,'
        '"extra_params":null}'
    )
    response = example_client.post(
        "/hello", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert parse_sse(response.data)[1] == ("text", {"text": "Hello! You said: hi"})


def test_the_content_type_header_does_not_matter(example_client: FlaskClient) -> None:
    response = example_client.post(
        "/hello",
        data=json.dumps(query(user("hi"))),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert parse_sse(response.data)[1] == ("text", {"text": "Hello! You said: hi"})


# ---------------------------------------------------------------------------- other routes


def test_an_unknown_bot_is_404_naming_the_served_ones(example_client: FlaskClient) -> None:
    response = example_client.post("/nobody", json=SETTINGS, headers=AUTH)
    assert response.status_code == 404
    served = ", ".join(sorted(path.stem for path in BOTS_DIR.glob("*.yaml")))
    assert _error_body(response) == f"no bot named 'nobody'; this server serves: {served}"


def test_get_on_a_bot_explains_that_poe_posts(example_client: FlaskClient) -> None:
    response = example_client.get("/hello")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert _error_body(response) == "bot 'hello' is running; Poe talks to it with POST"
    assert example_client.get("/nobody").status_code == 404


def test_index_lists_the_bots(example_client: FlaskClient) -> None:
    response = example_client.get("/")
    assert response.status_code == 200
    listed = response.get_json()["bots"]
    assert [bot["name"] for bot in listed] == sorted(p.stem for p in BOTS_DIR.glob("*.yaml"))
    assert listed[0] == {
        "name": "acme-help",
        "description": "Answers questions about Acme orders, shipping and refunds.",
        "url": "http://localhost/acme-help",
        "access_key": True,
    }
    assert all(bot["access_key"] for bot in listed)
    assert KEY not in response.get_data(as_text=True)


def test_healthz(example_client: FlaskClient) -> None:
    response = example_client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "bots": len(list(BOTS_DIR.glob("*.yaml")))}


# ---------------------------------------------------------------------------- start-up checks

KEYLESS = """
    name: keyless
    routes:
      - reply: "open: {{ message }}"
"""


def test_a_keyless_bot_is_refused_off_loopback(make_app: MakeApp, bots_dir: BotsDir) -> None:
    folder = bots_dir({"keyless.yaml": KEYLESS})
    with pytest.raises(StartupError) as caught:
        make_app(folder, {}, host="0.0.0.0")
    message = str(caught.value)
    assert message.startswith("refusing to serve keyless on 0.0.0.0 without an access key")
    assert "HOST=127.0.0.1" in message


def test_a_large_keyless_folder_is_named_in_one_short_line(
    make_app: MakeApp, bots_dir: BotsDir
) -> None:
    folder = bots_dir(
        {f"bot{i:02}.yaml": KEYLESS.replace("keyless", f"bot{i:02}") for i in range(25)}
    )
    with pytest.raises(StartupError) as caught:
        make_app(folder, {}, host="0.0.0.0")
    first_ten = ", ".join(f"bot{i:02}" for i in range(10))
    fixes = "; ".join(f"add `access_key: ${{...}}` to {folder}/bot{i:02}.yaml" for i in range(10))
    assert str(caught.value) == (
        f"refusing to serve {first_ten}, and 15 more on 0.0.0.0 without an access key; "
        f"{fixes}; and 15 more (or bind HOST=127.0.0.1)"
    )


def test_a_bot_whose_key_variable_is_unset_is_refused_off_loopback(make_app: MakeApp) -> None:
    env = {name: value for name, value in EXAMPLE_ENV.items() if name != "HELLO_ACCESS_KEY"}
    with pytest.raises(StartupError) as caught:
        make_app(BOTS_DIR, env, host="0.0.0.0")
    assert str(caught.value).startswith("refusing to serve hello on 0.0.0.0")


KEYED = """
    name: keyed
    access_key: ${KEYED_KEY}
    routes:
      - reply: "keyed: {{ message }}"
"""


def test_a_short_access_key_is_refused_off_loopback(make_app: MakeApp, bots_dir: BotsDir) -> None:
    folder = bots_dir({"keyed.yaml": KEYED})
    with pytest.raises(StartupError) as caught:
        make_app(folder, {"KEYED_KEY": "k"}, host="0.0.0.0")
    assert str(caught.value) == (
        "refusing to serve keyed on 0.0.0.0 with an access key shorter than 16 characters; "
        "set KEYED_KEY (keyed) to the key Poe gave the bot (or bind HOST=127.0.0.1)"
    )


def test_a_short_access_key_is_served_on_loopback_with_a_warning(
    make_app: MakeApp, bots_dir: BotsDir, caplog: pytest.LogCaptureFixture
) -> None:
    folder = bots_dir({"keyed.yaml": KEYED})
    with caplog.at_level(logging.WARNING, logger="engine.web"):
        client = make_app(folder, {"KEYED_KEY": "k"}, host="127.0.0.1").test_client()
    logged = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert "KEYED_KEY holds a 1-character key" in logged[0]  # the loader's warning
    assert logged[1:] == ["serving keyed with a short access key: fine on loopback only"]
    response = client.post("/keyed", json=query(user("hi")), headers={"Authorization": "Bearer k"})
    assert parse_sse(response.data)[1] == ("text", {"text": "keyed: hi"})


def test_a_blank_access_key_counts_as_none(make_app: MakeApp, bots_dir: BotsDir) -> None:
    # A key of spaces would make every request a 401; it is refused like a missing one.
    folder = bots_dir({"keyed.yaml": KEYED})
    with pytest.raises(StartupError) as caught:
        make_app(folder, {"KEYED_KEY": "   "}, host="0.0.0.0")
    assert str(caught.value).startswith("refusing to serve keyed on 0.0.0.0 without an access key")


def test_a_key_with_a_trailing_newline_accepts_poes_header(
    make_app: MakeApp, bots_dir: BotsDir
) -> None:
    folder = bots_dir({"keyed.yaml": KEYED})
    client = make_app(folder, {"KEYED_KEY": KEY + "\n"}, host="0.0.0.0").test_client()
    response = client.post("/keyed", json=query(user("hi")), headers=AUTH)
    assert response.status_code == 200


def test_a_keyless_bot_is_served_on_loopback_with_a_warning(
    make_app: MakeApp, bots_dir: BotsDir, caplog: pytest.LogCaptureFixture
) -> None:
    folder = bots_dir({"keyless.yaml": KEYLESS})
    with caplog.at_level(logging.WARNING, logger="engine.web"):
        client = make_app(folder, {}, host="127.0.0.1").test_client()
    warnings = [r for r in caplog.records if r.name == "engine.web"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "keyless" in warnings[0].getMessage()
    # No Authorization header needed, and any header is fine.
    response = client.post("/keyless", json=query(user("hi")))
    assert parse_sse(response.data)[1] == ("text", {"text": "open: hi"})
    assert client.get("/").get_json()["bots"][0]["access_key"] is False


def test_a_broken_bot_stops_the_start(make_app: MakeApp, bots_dir: BotsDir) -> None:
    folder = bots_dir(
        {
            "good.yaml": KEYLESS,
            "broken.yaml": """
                name: broken
                routes:
                  - reply: "{{ mesage }}"
            """,
        }
    )
    with pytest.raises(SpecErrors) as caught:
        make_app(folder, {})
    (error,) = caught.value.errors
    assert error.file.endswith("broken.yaml")
    assert error.loc == "routes[0].reply"
    assert "unknown variable 'mesage'" in str(caught.value)


def test_one_failing_bot_does_not_affect_another(
    make_app: MakeApp, bots_dir: BotsDir, caplog: pytest.LogCaptureFixture
) -> None:
    folder = bots_dir(
        {
            "steady.yaml": KEYLESS.replace("keyless", "steady"),
            "fragile.yaml": """
                name: fragile
                routes:
                  - if: "message == 'break'"
                    reply: "{{ history[7].content }}"
                  - if: "starts_with(message, params.pattern)"
                    reply: matched
                  - reply: "fine: {{ message }}"
            """,
        }
    )
    client = make_app(folder, {}).test_client()
    with caplog.at_level(logging.ERROR):
        broken = parse_sse(client.post("/fragile", json=query(user("break"))).data)
        bad_regex = parse_sse(
            client.post("/fragile", json=query(user("x", parameters={"pattern": 5}))).data
        )
    for events in (broken, bad_regex):
        assert names(events) == ["meta", "error", "done"]
        assert events[1][1]["allow_retry"] is False
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [m.split(":")[0] for m in errors] == ["bot fragile", "bot fragile"]
    # The other bot, and the failing bot itself, answer their next requests normally.
    steady = parse_sse(client.post("/steady", json=query(user("still here"))).data)
    assert steady[1] == ("text", {"text": "open: still here"})
    healthy = query(user("ok", parameters={"pattern": "z"}))
    fragile = parse_sse(client.post("/fragile", json=healthy).data)
    assert fragile[1] == ("text", {"text": "fine: ok"})


# ---------------------------------------------------------------------------- request log

# The bot's name, or the repr of a name no bot has; the request type; status; outcome.
REQUEST_LINE = r"bot ('.*'|\S+): (\S+(?: \(json\))?) (\d{3}) (.+) in \d+\.\d ms"


def request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "engine.requests"]


def logged_request(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str, body: Any, **kwargs: Any
) -> tuple[str, ...]:
    """POST once; the one request line it logged, as (bot, type, status, outcome)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="engine.requests"):
        response = client.post(path, json=body, **kwargs)
        response.get_data()  # a stream is logged when it has been sent
        response.close()
    (line,) = request_lines(caplog)
    match = re.fullmatch(REQUEST_LINE, line)
    assert match is not None, line
    assert int(match[3]) == response.status_code
    return match.groups()


def test_one_query_leaves_one_request_line(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my secret message"
    body = query(user(secret))
    got = logged_request(example_client, caplog, "/hello", body, headers=AUTH)
    assert got == ("hello", "query", "200", "answered")
    assert secret not in caplog.text and KEY not in caplog.text


def test_the_request_line_says_how_each_request_ended(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def line(path: str, body: Any, **kwargs: Any) -> tuple[str, ...]:
        return logged_request(example_client, caplog, path, body, **kwargs)

    assert line("/hello", SETTINGS, headers=AUTH) == ("hello", "settings", "200", "answered")
    assert line("/hello", query(user("hi")), headers=AUTH | {"Accept": "application/json"}) == (
        "hello",
        "query (json)",
        "200",
        "answered",
    )
    too_long = query(user("x" * 5000))
    assert line("/acme-help", too_long, headers=AUTH) == (
        "acme-help",
        "query",
        "200",
        "error user_message_too_long (no retry)",
    )
    assert line("/hello", SETTINGS) == (
        "hello",
        "request",
        "401",
        "refused: missing or wrong access key",
    )
    forged = ("'x\\nbot hello: query 200 answered'", "request", "404", "no such bot")
    assert line("/x%0Abot hello: query 200 answered", SETTINGS) == forged  # one line
    assert line("/hello", {"type": "dance"}, headers=AUTH) == (
        "hello",
        "dance",
        "501",
        "unsupported",
    )


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_a_keyless_bot_refuses_what_comes_through_a_proxy(
    make_app: MakeApp, bots_dir: BotsDir, header: str
) -> None:
    """Bound to loopback, but behind nginx, Caddy or a tunnel such as ngrok, a keyless bot
    would answer the whole internet: a proxy's header gives such a request away."""
    client = make_app(bots_dir({"keyless.yaml": KEYLESS}), {}).test_client()
    response = client.post("/keyless", json=query(user("hi")), headers={header: "203.0.113.9"})
    assert response.status_code == 403
    assert _error_body(response) == (
        "this bot has no access key (or one under 16 characters), so it answers only requests "
        "made on this machine; this one came through a proxy or tunnel: set the bot's key"
    )
    assert client.post("/keyless", json=query(user("hi"))).status_code == 200


def test_a_bot_with_its_key_answers_through_a_proxy(example_client: FlaskClient) -> None:
    headers = {**AUTH, "X-Forwarded-For": "203.0.113.9"}
    response = example_client.post("/hello", json=query(user("hi")), headers=headers)
    assert response.status_code == 200
