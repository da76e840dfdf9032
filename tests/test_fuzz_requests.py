"""Property-based fuzzing of request bodies against the real server (`python app.py`).

Whatever arrives, the server answers: never a 5xx, every 200 stream is well formed and
ends with `done`, every byte it sends is valid UTF-8, and its log holds no traceback.
Bodies come from three strategies: Poe-shaped queries with hostile values (surrogates,
control characters, huge numbers, wrong types, nulls, unknown roles and fields), valid
bodies with bytes flipped, cut or inserted, and raw bytes. Examples are derandomized so
CI sees the same ones each run.
"""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._poe import parse_sse
from ._server import Server
from .conftest import BOTS_DIR, KEY

RULE_BOTS = ("acme-help", "hello", "image-studio")
# A model-backed bot that never leaves the machine: its model is scripted.
SCRIPTED = """\
name: scripted
routes:
  - if: "regex(message, '(?i)param')"
    reply: "{{ params }} {{ language }} {{ attachments | length }} {{ history | length }}"
  - llm:
      system: "You help in {{ language }}."
      prompt: "{{ message }} {% for a in attachments %}{{ a.name }}{% endfor %}"
      model: {provider: scripted, replies: ["a reply in words", "another one"], chunk: char}
    suggest: [Again, "{{ message[:20] }}"]
"""
BOTS = (*RULE_BOTS, "scripted")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    bots = folder / "bots"
    bots.mkdir()
    for name in RULE_BOTS:
        shutil.copy(BOTS_DIR / f"{name}.yaml", bots / f"{name}.yaml")
    (bots / "scripted.yaml").write_text(SCRIPTED)
    running = Server(folder / "server.log", workers=1, BOTS_DIR=str(bots))
    try:
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log()


# ---------------------------------------------------------------------------- strategies

# Text as a hostile client writes it: any code point, lone surrogates and controls included.
hostile_text = st.lists(
    st.one_of(
        st.characters(),
        st.integers(0xD800, 0xDFFF).map(chr),
        st.sampled_from(["\x00", "\n", "\r\n", "{{", "}}", "{%", "'", '"', "\\", "\u2028"]),
    ),
    max_size=20,
).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


def fields(typed: bool, **strategies: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Each field's own strategy, or (untyped) also any JSON value or null in its place."""
    if typed:
        return strategies
    return {name: st.one_of(value, json_values) for name, value in strategies.items()}


def messages(typed: bool, roles: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    attachment = st.fixed_dictionaries(
        {},
        optional=fields(
            typed,
            url=hostile_text,
            content_type=st.sampled_from(["text/plain", "image/png", "", "x/y"]),
            name=hostile_text,
            parsed_content=hostile_text,
        ),
    )
    return st.fixed_dictionaries(
        fields(typed, role=roles, content=hostile_text),
        optional=fields(
            typed,
            content_type=st.sampled_from(["text/markdown", "text/plain", "text/html"]),
            timestamp=st.integers(min_value=-(2**70), max_value=2**70),
            message_id=hostile_text,
            attachments=st.lists(attachment, max_size=2),
            metadata=hostile_text,
            parameters=st.dictionaries(hostile_text, json_values, max_size=3),
        )
        | {"future_field": json_values},
    )


def queries(typed: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A query whose newest message is the user's: what rules, templates and models read.

    Typed, every field has the protocol's type and only the values are hostile; untyped,
    any field may hold any JSON value instead.
    """
    earlier = st.lists(
        messages(typed, st.sampled_from(["user", "bot", "system", "tool", "assistant"])),
        max_size=4,
    )
    last = messages(typed, st.just("user"))
    conversation = st.builds(lambda before, new: [*before, new], earlier, last)
    return st.fixed_dictionaries(
        {"type": st.just("query"), "query": conversation},
        optional=fields(
            typed,
            version=st.sampled_from(["1.2", "1.0", "9"]),
            user_id=hostile_text,
            conversation_id=hostile_text,
            message_id=hostile_text,
            metadata=hostile_text,
            language_code=st.sampled_from(["en", "pt-BR", "xx-!!"]) | hostile_text,
            temperature=st.floats(),
        ),
    )


def to_bytes(body: Any, ascii_only: bool) -> bytes:
    # `surrogatepass` writes a lone surrogate as its raw (ill-formed) UTF-8 bytes.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def encoded(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(to_bytes, bodies, st.booleans())


@st.composite
def damaged_bodies(draw: st.DrawFn) -> bytes:
    """A Poe-shaped body with a few bytes flipped, cut or inserted."""
    body = bytearray(draw(encoded(queries(typed=True))))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, max(len(body) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and body:
            body[where] = draw(st.integers(0, 255))
        elif action == "cut":
            del body[where:]
        else:
            body[where:where] = draw(st.binary(min_size=1, max_size=4))
    return bytes(body)


other_types = st.fixed_dictionaries(
    {"type": st.sampled_from(["settings", "report_error", "report_feedback", "x"]) | json_values},
    optional={"query": json_values, "message": json_values, "version": json_values},
)
malformed_bodies = st.one_of(
    encoded(queries(typed=False)),
    encoded(other_types),
    damaged_bodies(),
    st.binary(max_size=200),
)
accepts = st.sampled_from(["text/event-stream", "application/json", "*/*", ""])


# ---------------------------------------------------------------------------- checks


def check_answer(status: int, content_type: str, body: bytes) -> None:
    assert status < 500 or status == 501, body[:500]  # 501: a request type we do not serve
    text = body.decode("utf-8")  # strict: a lone surrogate would fail here
    if status != 200 or not content_type.startswith("text/event-stream"):
        json.loads(text)  # every other answer is JSON: an error, settings, a report's {}
        return
    events = parse_sse(body)
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done", names
    assert names.count("error") <= 1, names
    if "error" in names:
        assert names.index("error") == len(names) - 2, names


def post(server: Server, bot: str, body: bytes, accept: str) -> None:
    headers = {**Server.headers(KEY), "Accept": accept}
    connection = server.connect()
    try:
        connection.request("POST", f"/{bot}", body, headers)
        response = connection.getresponse()
        check_answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()


@FUZZ
@given(bot=st.sampled_from(BOTS), body=encoded(queries(typed=True)), accept=accepts)
def test_no_query_breaks_an_answer(server: Server, bot: str, body: bytes, accept: str) -> None:
    post(server, bot, body, accept)


@FUZZ
@given(bot=st.sampled_from(BOTS), body=malformed_bodies, accept=accepts)
def test_no_malformed_body_breaks_the_server(
    server: Server, bot: str, body: bytes, accept: str
) -> None:
    post(server, bot, body, accept)


def test_the_checks_see_a_broken_stream() -> None:
    """The checks above would catch what the fuzzing looks for."""
    meta, done = b"event: meta\r\ndata: {}\r\n\r\n", b"event: done\r\ndata: {}\r\n\r\n"
    for broken in (
        (500, "text/plain", b"Internal Server Error"),
        (200, "text/event-stream", meta + b'event: text\r\ndata: {"text": "a"}\r\n\r\n'),
        (200, "text/event-stream", meta + b'event: text\r\ndata: "\xed\xa0\x80"\r\n\r\n' + done),
    ):
        with pytest.raises((AssertionError, UnicodeDecodeError)):
            check_answer(*broken)


def test_slow_paths_are_reached(server: Server) -> None:
    """The scripted model's route and the rule routes both answer: the fuzzing is not
    stuck at the parser."""
    connection: http.client.HTTPConnection = server.connect()
    try:
        for bot, text in (("scripted", "hi"), ("hello", "hi")):
            body = json.dumps({"type": "query", "query": [{"role": "user", "content": text}]})
            connection.request("POST", f"/{bot}", body, Server.headers(KEY))
            response = connection.getresponse()
            names = [name for name, _ in parse_sse(response.read())]
            assert "text" in names and names[-1] == "done"
    finally:
        connection.close()
