"""The playground's protocol inspector: SSE parsing whatever the chunking and line ends,
and each rule with an answer that breaks it and one that keeps it."""

from __future__ import annotations

import pytest

from engine.protocol.inspect import SSEComment, SSEEvent, SSEParser, Violation, check

SSE = "text/event-stream; charset=utf-8"
GOOD = (
    'event: meta\r\ndata: {"content_type": "text/markdown"}\r\n\r\n'
    ": ping\r\n\r\n"
    'event: text\r\ndata: {"text": "hi"}\r\n\r\n'
    "event: done\r\ndata: {}\r\n\r\n"
)


def parse(body: str | bytes, size: int | None = None) -> list[SSEEvent | SSEComment]:
    """The items of `body` fed in chunks of `size` bytes (all at once when None)."""
    data = body.encode() if isinstance(body, str) else body
    parser = SSEParser()
    step = size or len(data) or 1
    items = [item for i in range(0, len(data), step) for item in parser.feed(data[i : i + step])]
    tail, _ = parser.finish()
    return items + tail


def events(body: str) -> list[SSEEvent]:
    return [item for item in parse(body) if isinstance(item, SSEEvent)]


def rules(violations: list[Violation]) -> list[str]:
    return [violation.rule for violation in violations]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("size", [None, 1, 3])
def test_every_line_end_and_chunking_gives_the_same_events(eol: str, size: int | None) -> None:
    items = parse(GOOD.replace("\r\n", eol), size)
    assert [type(item).__name__ for item in items] == [
        "SSEEvent",
        "SSEComment",
        "SSEEvent",
        "SSEEvent",
    ]
    assert items[1] == SSEComment("ping")
    text = items[2]
    assert isinstance(text, SSEEvent)
    assert (text.event, text.data) == ("text", '{"text": "hi"}')
    assert text.raw == f'event: text{eol}data: {{"text": "hi"}}{eol}{eol}'


def test_multi_line_data_joins_with_newlines_and_a_split_character_survives() -> None:
    body = b"event: text\ndata: a\ndata:b\n\n" + 'data: "é"\n\n'.encode()
    items = parse(body, 1)
    assert items == [
        SSEEvent("text", "a\nb", "event: text\ndata: a\ndata:b\n\n"),
        SSEEvent("message", '"é"', 'data: "é"\n\n'),
    ]


def test_an_event_without_its_blank_line_is_left_over() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: done\ndata: {}\n") == []
    assert parser.finish() == ([], "event: done\ndata: {}\n")


def test_a_well_formed_answer_breaks_no_rule() -> None:
    assert check(200, SSE, events(GOOD), 12.0) == []


BAD_ANSWERS = {
    "meta-not-first": 'event: text\ndata: {"text": "a"}\n\nevent: meta\ndata: {}\n\n'
    "event: done\ndata: {}\n\n",
    "no-done": 'event: text\ndata: {"text": "a"}\n\n',
    "after-done": 'event: text\ndata: {"text": "a"}\n\nevent: done\ndata: {}\n\n'
    'event: text\ndata: {"text": "b"}\n\n',
    "text-after-error": 'event: error\ndata: {"text": "no"}\n\nevent: text\ndata: {"text": "b"}\n\n'
    "event: done\ndata: {}\n\n",
    "two-errors": 'event: error\ndata: {"text": "a"}\n\nevent: error\ndata: {"text": "b"}\n\n'
    "event: done\ndata: {}\n\n",
    "empty-answer": 'event: meta\ndata: {}\n\nevent: text\ndata: {"text": ""}\n\n'
    "event: done\ndata: {}\n\n",
    "bad-json": "event: text\ndata: {not json\n\nevent: done\ndata: {}\n\n",
    "unknown-event": 'event: text\ndata: {"text": "a"}\n\nevent: sparkle\ndata: {}\n\n'
    "event: done\ndata: {}\n\n",
}


@pytest.mark.parametrize("rule", sorted(BAD_ANSWERS))
def test_each_event_rule_flags_its_answer(rule: str) -> None:
    found = check(200, SSE, events(BAD_ANSWERS[rule]))
    assert rule in rules(found)
    flagged = next(v for v in found if v.rule == rule)
    assert flagged.severity == ("warning" if rule == "unknown-event" else "error")


def test_the_event_at_fault_is_named_by_its_index() -> None:
    found = check(200, SSE, events(BAD_ANSWERS["text-after-error"]))
    assert found == [
        Violation("text-after-error", "`text` after `error`: Poe has closed the answer", 1)
    ]


def test_an_error_alone_is_an_answer() -> None:
    body = (
        'event: meta\ndata: {}\n\nevent: error\ndata: {"text": "no"}\n\nevent: done\ndata: {}\n\n'
    )
    assert check(200, SSE, events(body)) == []


def test_http_status_and_content_type() -> None:
    assert rules(check(500, SSE, events(GOOD))) == ["http-status"]
    assert rules(check(200, "application/json", [])) == ["content-type"]
    assert rules(check(401, "application/json", [])) == ["http-status", "content-type"]


def test_a_first_byte_after_five_seconds_is_slow() -> None:
    assert rules(check(200, SSE, events(GOOD), 5200.0)) == ["slow-first-byte"]
    assert rules(check(200, SSE, events(GOOD), 4900.0)) == []


def test_a_json_array_is_bad_json_and_a_missing_data_line_too() -> None:
    body = "event: text\ndata: [1]\n\nevent: done\n\n"
    found = check(200, SSE, events(body))
    assert [(v.rule, v.event) for v in found] == [
        ("bad-json", 0),
        ("bad-json", 1),
        ("empty-answer", None),
    ]
