"""The aggregated JSON shape for simple clients, and the seed-style request type aliases."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from engine.protocol.events import Data, Done, Error, Event, File, Meta, Replace, Suggest, Text
from engine.protocol.jsonshape import aggregate
from engine.web.disconnect import until_gone

from ._poe import AUTH, names, parse_sse, query, user

JSON = {**AUTH, "Accept": "application/json"}


def _post(client: FlaskClient, bot: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/{bot}", json=body, headers={**AUTH, **headers})


# ---------------------------------------------------------------------------- aggregate()


def test_aggregate_joins_text_and_lists_suggestions() -> None:
    events: list[Event] = [Meta(), Text("a"), Text("b"), Suggest("s1"), Suggest("s2"), Done()]
    assert aggregate(events) == {
        "messages": [{"type": "message", "text": "ab"}],
        "suggested_replies": ["s1", "s2"],
        "isFinalResponse": True,
    }


def test_aggregate_honours_replace_response() -> None:
    body = aggregate([Text("draft"), Replace("final"), Text(" answer")])
    assert body["messages"] == [{"type": "message", "text": "final answer"}]


def test_aggregate_carries_files_metadata_and_error() -> None:
    events: list[Event] = [
        Meta(),
        File("https://x.invalid/a.png", "image/png", "a.png"),
        Text("see"),
        Data("first"),
        Data("last"),
        Error("boom", allow_retry=True, error_type="user_caused_error"),
        Done(),
    ]
    assert aggregate(events) == {
        "messages": [{"type": "message", "text": "see"}],
        "suggested_replies": [],
        "isFinalResponse": True,
        "files": [
            {
                "url": "https://x.invalid/a.png",
                "content_type": "image/png",
                "name": "a.png",
                "inline_ref": None,
            }
        ],
        "metadata": "last",  # like Poe, only the last data event counts
        "error": {"allow_retry": True, "text": "boom", "error_type": "user_caused_error"},
    }


def test_aggregate_of_nothing_is_an_empty_final_answer() -> None:
    assert aggregate([]) == {
        "messages": [{"type": "message", "text": ""}],
        "suggested_replies": [],
        "isFinalResponse": True,
    }


# ---------------------------------------------------------------------------- over HTTP


def test_accept_json_gets_the_aggregated_answer(example_client: FlaskClient) -> None:
    response = _post(
        example_client, "acme-help", query(user("I want a refund")), Accept="application/json"
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "messages": [
            {
                "type": "message",
                "text": "Refunds take **5-7 days** after we receive the item.\n\n— Acme Support",
            }
        ],
        "suggested_replies": ["Start a refund", "How long is shipping?"],
        "isFinalResponse": True,
    }


def test_without_a_gevent_socket_the_answer_is_not_watched() -> None:
    """Flask's test client (or any server without gunicorn's socket): nothing to wait on,
    so the events pass through untouched and a disconnect is noticed at the next write."""
    events: Iterator[Event] = iter([Meta(flush=True), Text("a"), Done()])
    assert until_gone(events, {}, "bot") is events
    assert until_gone(events, {"gunicorn.socket": object()}, "bot") is events


def test_json_and_sse_answers_agree(example_client: FlaskClient) -> None:
    body = query(user("Do you sell hats?"))
    as_json = _post(example_client, "acme-help", body, Accept="application/json").get_json()
    events = parse_sse(_post(example_client, "acme-help", body).data)
    text = "".join(data["text"] for name, data in events if name == "text")
    suggested = [data["text"] for name, data in events if name == "suggested_reply"]
    assert as_json["messages"] == [{"type": "message", "text": text}]
    assert as_json["suggested_replies"] == suggested


def test_a_refusal_in_json_carries_the_error(example_client: FlaskClient) -> None:
    response = _post(
        example_client, "acme-help", query(user("Talk to a human")), Accept="application/json"
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "messages": [{"type": "message", "text": ""}],
        "suggested_replies": [],
        "isFinalResponse": True,
        "error": {
            "allow_retry": False,
            "text": "Our team is offline right now. Please email help@acme.example.",
        },
    }


@pytest.mark.parametrize(
    "accept",
    [
        "text/event-stream",
        "application/json, text/event-stream",
        "text/event-stream;q=0.9, application/json;q=0.1",
        "*/*",
        "",
    ],
)
def test_anything_but_plain_json_gets_sse(example_client: FlaskClient, accept: str) -> None:
    response = _post(example_client, "hello", query(user("hi")), Accept=accept)
    assert response.mimetype == "text/event-stream"
    assert names(parse_sse(response.data)) == ["meta", "text", "suggested_reply", "done"]


# ---------------------------------------------------------------------------- aliases


def test_message_is_an_alias_of_query(example_client: FlaskClient) -> None:
    body = {**query(user("hi")), "type": "message"}
    sse = _post(example_client, "hello", body)
    assert sse.mimetype == "text/event-stream"
    assert parse_sse(sse.data) == parse_sse(_post(example_client, "hello", query(user("hi"))).data)
    as_json = _post(example_client, "hello", body, Accept="application/json").get_json()
    assert as_json["messages"] == [{"type": "message", "text": "Hello! You said: hi"}]
    assert as_json["isFinalResponse"] is True


def test_settings_update_is_an_alias_of_settings(example_client: FlaskClient) -> None:
    real = _post(example_client, "image-studio", {"version": "1.2", "type": "settings"})
    alias = _post(example_client, "image-studio", {"version": "1.2", "type": "settings_update"})
    assert alias.status_code == 200
    assert alias.mimetype == "application/json"
    assert alias.get_json() == real.get_json()
    assert alias.get_json()["response_version"] == 2


def test_error_is_an_alias_of_report_error(
    example_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"version": "1.2", "type": "error", "message": "stream broke", "metadata": {}}
    with caplog.at_level(logging.INFO, logger="engine.web"):
        response = _post(example_client, "hello", body)
    assert response.status_code == 200
    assert json.loads(response.data) == {}
    messages = [r.getMessage() for r in caplog.records if r.name == "engine.web"]
    assert messages == ['bot hello: report_error {"message": "stream broke"}']
