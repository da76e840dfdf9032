"""Golden SSE streams for canonical turns of the example bots.

Each case's exact stream is stored in tests/golden/<case>.sse. Streams are compared as
event names plus parsed JSON data (key order does not matter); `hello--first-turn` is
also compared byte for byte, so the framing itself is pinned.

After an intended change to an answer, rewrite the files and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ._poe import AUTH, bot, parse_sse, query, user

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
BYTE_EXACT = "hello--first-turn"

LONG = "Please help me with my order. " * 11  # 330 characters; acme-help allows 300

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "acme-help--refund": ("acme-help", query(user("I want my money back"))),
    "acme-help--fallback": ("acme-help", query(user("Do you sell hats?"))),
    "acme-help--too-long": ("acme-help", query(user(LONG))),
    "acme-help--attachment-refused": (
        "acme-help",
        query(
            user(
                "see file",
                attachments=[
                    {
                        "url": "https://example.invalid/receipt.pdf",
                        "content_type": "application/pdf",
                        "name": "receipt.pdf",
                    }
                ],
            )
        ),
    ),
    "acme-help--human-error-route": ("acme-help", query(user("Talk to a human"))),
    "image-studio--params-and-attachments": (
        "image-studio",
        query(
            user(
                "make it retro",
                parameters={"style": "pixel", "strength": 0.3, "keep_faces": False},
                attachments=[
                    {
                        "url": "https://example.invalid/a.jpg",
                        "content_type": "image/jpeg",
                        "name": "a.jpg",
                        "parsed_content": "a.jpg***A dog on a beach",
                    },
                    {
                        "url": "https://example.invalid/b.webp",
                        "content_type": "image/webp",
                        "name": "b.webp",
                    },
                ],
            )
        ),
    ),
    "image-studio--defaults": (
        "image-studio",
        query(
            user(
                "remove the background",
                attachments=[
                    {
                        "url": "https://example.invalid/cat.png",
                        "content_type": "image/png",
                        "name": "cat.png",
                    }
                ],
            )
        ),
    ),
    "image-studio--no-attachment": ("image-studio", query(user("make it pop"))),
    BYTE_EXACT: ("hello", query(user("hi"))),
    "hello--second-turn": (
        "hello",
        query(
            {"role": "system", "content": "You are hello."},
            user("one"),
            bot("Hello! You said: one"),
            user("two — ünïcode\nand a second line"),
        ),
    ),
}


def _stream(client: FlaskClient, name: str) -> bytes:
    bot_name, body = CASES[name]
    response = client.post(f"/{bot_name}", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    return bytes(response.data)


def _golden(name: str, actual: bytes) -> bytes:
    path = GOLDEN / f"{name}.sse"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing; create it with UPDATE_GOLDEN=1"
    return path.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_matches_golden(example_client: FlaskClient, name: str) -> None:
    actual = _stream(example_client, name)
    expected = _golden(name, actual)
    assert parse_sse(actual) == parse_sse(expected)


def test_one_stream_matches_byte_for_byte(example_client: FlaskClient) -> None:
    actual = _stream(example_client, BYTE_EXACT)
    assert actual == _golden(BYTE_EXACT, actual)


def test_every_golden_file_belongs_to_a_case() -> None:
    stored = {path.stem for path in GOLDEN.glob("*.sse")}
    assert stored == set(CASES), "remove golden files of deleted cases"


def test_goldens_follow_the_stream_rules() -> None:
    """The stored files themselves are valid answers: meta first, one error at most, done."""
    for path in sorted(GOLDEN.glob("*.sse")):
        events = parse_sse(path.read_bytes())
        event_names = [name for name, _ in events]
        assert event_names[0] == "meta", path.name
        assert event_names[-1] == "done" and event_names.count("done") == 1, path.name
        assert event_names.count("error") <= 1, path.name
        if "error" in event_names:
            assert event_names.index("error") == len(event_names) - 2, path.name
        else:
            assert "text" in event_names, path.name
