"""SSE framing, byte for byte, and the stream rules the guard enforces on any producer."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator
from typing import cast

import pytest

from engine.protocol import sse
from engine.protocol.events import (
    Data,
    Done,
    Error,
    Event,
    File,
    KeepAlive,
    Meta,
    Replace,
    Suggest,
    Text,
)
from engine.protocol.guard import EMPTY, UNEXPECTED, guarded

# ---------------------------------------------------------------------------- framing


def test_a_canonical_turn_is_framed_byte_for_byte() -> None:
    events: list[Event] = [
        Meta(),
        Text("Refunds take **5-7 days**.\n\n— Acme"),
        Suggest("Start a refund"),
        Done(),
    ]
    raw = b"".join(sse.encode(event) for event in events)
    assert raw == (
        b"event: meta\r\n"
        b'data: {"content_type": "text/markdown", "suggested_replies": false, '
        b'"refetch_settings": false}\r\n'
        b"\r\n"
        b"event: text\r\n"
        b'data: {"text": "Refunds take **5-7 days**.\\n\\n\xe2\x80\x94 Acme"}\r\n'
        b"\r\n"
        b"event: suggested_reply\r\n"
        b'data: {"text": "Start a refund"}\r\n'
        b"\r\n"
        b"event: done\r\n"
        b"data: {}\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "text",
    ["one\ntwo", "cr\rlf\r\n", "\n\n", "data: fake\r\n\r\nevent: done", "tab\tand \u2028 sep"],
    ids=["lf", "cr-crlf", "blank-lines", "injected-frame", "tab-and-line-separator"],
)
def test_text_with_line_breaks_stays_on_one_data_line(text: str) -> None:
    raw = sse.encode(Text(text))
    name_line, data_line, blank, end = raw.split(b"\r\n")
    assert (name_line, blank, end) == (b"event: text", b"", b"")
    assert b"\n" not in data_line and b"\r" not in data_line
    assert json.loads(data_line.removeprefix(b"data: ")) == {"text": text}


def test_non_ascii_is_sent_as_utf8_not_escaped() -> None:
    raw = sse.encode(Text("héllo 日本 🙂"))
    assert raw == 'event: text\r\ndata: {"text": "héllo 日本 🙂"}\r\n\r\n'.encode()
    assert b"\\u" not in raw


@pytest.mark.parametrize(
    ("event", "name", "data"),
    [
        (Meta(content_type="text/plain", suggested_replies=True), "meta", None),
        (Replace("final"), "replace_response", {"text": "final"}),
        (Data('{"turn": 2}'), "data", {"metadata": '{"turn": 2}'}),
        (
            File("https://x.invalid/a.png", "image/png", "a.png", "ref1"),
            "file",
            {
                "url": "https://x.invalid/a.png",
                "content_type": "image/png",
                "name": "a.png",
                "inline_ref": "ref1",
            },
        ),
        (Error("nope"), "error", {"allow_retry": False, "text": "nope"}),
        (
            Error("too long", allow_retry=False, error_type="user_message_too_long"),
            "error",
            {"allow_retry": False, "text": "too long", "error_type": "user_message_too_long"},
        ),
        (Done(), "done", {}),
    ],
    ids=["meta", "replace", "data", "file", "error", "error-type", "done"],
)
def test_every_event_name_and_payload(event: Event, name: str, data: object) -> None:
    raw = sse.encode(event)
    name_line, data_line, *_ = raw.decode().split("\r\n")
    assert name_line == f"event: {name}"
    payload = json.loads(data_line.removeprefix("data: "))
    if data is None:  # meta: the keys Poe and fastapi_poe read
        assert payload == {
            "content_type": "text/plain",
            "suggested_replies": True,
            "refetch_settings": False,
        }
    else:
        assert payload == data


def test_keepalive_is_an_sse_comment() -> None:
    assert sse.KEEPALIVE.startswith(b":")
    assert sse.KEEPALIVE.endswith(b"\r\n\r\n")
    assert sse.encode(KeepAlive()) == b": ping\r\n\r\n"


# ---------------------------------------------------------------------------- the guard


def _run(events: list[Event] | Iterator[Event], bot: str = "demo") -> list[Event]:
    return list(guarded(events, bot))


def test_a_well_formed_stream_passes_unchanged() -> None:
    events: list[Event] = [Meta(), Text("a"), Suggest("b"), Data("m"), Done()]
    assert _run(events) == events


def test_meta_is_first_even_when_the_runtime_forgets_it() -> None:
    assert _run([Text("hi")]) == [Meta(), Text("hi"), Done()]


def test_a_custom_first_meta_is_kept() -> None:
    first = Meta(content_type="text/plain", suggested_replies=True)
    assert _run([first, Text("hi")]) == [first, Text("hi"), Done()]


def test_a_later_meta_is_dropped() -> None:
    assert _run([Meta(), Text("a"), Meta(content_type="text/plain"), Text("b")]) == [
        Meta(),
        Text("a"),
        Text("b"),
        Done(),
    ]


def test_an_empty_producer_gets_meta_a_retryable_error_and_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Poe (and fastapi_poe's client) treat a stream without text as a broken bot.
    assert _run([]) == [Meta(), Error(EMPTY, allow_retry=True), Done()]
    assert "bot demo: the answer was empty" in caplog.text


def test_suggestions_alone_are_not_an_answer() -> None:
    assert _run([Meta(), Suggest("x")]) == [
        Meta(),
        Suggest("x"),
        Error(EMPTY, allow_retry=True),
        Done(),
    ]


def test_at_most_one_error_and_nothing_after_it() -> None:
    events: list[Event] = [
        Meta(),
        Text("partial"),
        Error("first"),
        Error("second"),
        Text("late"),
        Suggest("late"),
    ]
    assert _run(events) == [Meta(), Text("partial"), Error("first"), Done()]


def test_an_error_as_the_first_event_gets_meta_before_it() -> None:
    assert _run([Error("no")]) == [Meta(), Error("no"), Done()]


def test_always_exactly_one_done_at_the_end() -> None:
    assert _run([Meta(), Text("a")])[-1] == Done()
    # A producer's own done ends the stream; nothing it sends later leaks out.
    assert _run([Meta(), Text("a"), Done(), Text("b"), Done()]) == [Meta(), Text("a"), Done()]


def _exploding(before: list[Event]) -> Iterator[Event]:
    yield from before
    raise RuntimeError("kaboom: secret internals")


@pytest.mark.parametrize(
    ("before", "expected_prefix"),
    [
        ([], [Meta()]),
        ([Meta()], [Meta()]),
        ([Meta(), Text("partial ")], [Meta(), Text("partial ")]),
    ],
    ids=["before-anything", "after-meta", "mid-answer"],
)
def test_an_exception_becomes_one_error_and_done(
    before: list[Event], expected_prefix: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="engine.protocol"):
        events = _run(_exploding(before), bot="acme-help")
    assert events == [*expected_prefix, Error(UNEXPECTED, allow_retry=False), Done()]
    error = events[-2]
    assert isinstance(error, Error) and error.allow_retry is False
    assert "kaboom" not in error.text  # internals stay in the log
    (record,) = [r for r in caplog.records if r.name == "engine.protocol"]
    assert record.levelno == logging.ERROR
    assert "bot acme-help:" in record.getMessage()
    assert record.exc_info is not None and "kaboom" in str(record.exc_info[1])


class _Producer:
    """A generator that records whether it was closed and how far it got."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.closed = False
        self.produced = 0

    def __iter__(self) -> Iterator[Event]:
        try:
            for event in self.events:
                self.produced += 1
                yield event
        finally:
            self.closed = True


def test_the_producer_is_closed_when_the_guard_stops_at_an_error() -> None:
    producer = _Producer([Meta(), Error("stop"), Text("never"), Text("never")])
    assert _run(iter(producer)) == [Meta(), Error("stop"), Done()]
    assert producer.closed
    assert producer.produced == 2  # nothing was pulled after the error


def test_the_producer_is_closed_when_the_guard_stops_at_done() -> None:
    producer = _Producer([Meta(), Text("a"), Done(), Text("never")])
    _run(iter(producer))
    assert producer.closed
    assert producer.produced == 3


def test_the_producer_is_closed_when_the_reader_goes_away() -> None:
    """A client that disconnects closes the guard; the producer must stop at once."""
    producer = _Producer([Meta(), Text("a"), Text("b"), Text("c")])
    stream = cast(Generator[Event, None, None], guarded(iter(producer), "demo"))
    assert next(stream) == Meta()
    assert next(stream) == Text("a")
    stream.close()
    assert producer.closed
    assert producer.produced == 2


def test_the_producer_is_closed_after_it_raises() -> None:
    closed: list[bool] = []

    def producer() -> Iterator[Event]:
        try:
            yield Meta()
            raise ValueError("boom")
        finally:
            closed.append(True)

    events = list(guarded(producer(), "demo"))
    assert [type(e) for e in events] == [Meta, Error, Done]
    assert closed == [True]


def test_a_plain_iterable_without_close_is_fine() -> None:
    assert list(guarded((Text("x"),), "demo")) == [Meta(), Text("x"), Done()]


@pytest.mark.parametrize(
    "event",
    [
        Meta(),
        Meta(flush=True),
        Meta(content_type="text/plain", suggested_replies=True),
        Done(),
        Suggest('line\nbreak "quoted" \\ 日本 🙂'),
        Suggest("lone \ud800 surrogate"),
    ],
    ids=["meta", "meta-flush", "meta-plain", "done", "suggest-escapes", "suggest-surrogate"],
)
def test_the_shortcuts_frame_as_the_general_path(event: Event) -> None:
    """`meta` and `done` come from a cache, `suggested_reply` from the text fast path:
    the same bytes as json.dumps framing, twice over (the cache's second answer too)."""
    general = sse._framed(event)
    assert sse.encode(event) == general == sse.encode(event)
