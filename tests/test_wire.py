"""The byte-level readers of model answers (engine/providers/wire.py) and the HTTP/1.1 body
reader under them (engine/providers/transport.py): every split of the bytes across reads
gives the same chunks as one read, whatever the line ends; errors and truncation are
reported after the text before them. Bodies come from a real socket pair, nothing mocked."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.providers import transport
from engine.providers.base import Chunk, ProviderError
from engine.providers.transport import POOL, Body, Connection, Pool, send
from engine.providers.wire import (
    AnthropicReader,
    BodyStream,
    Lines,
    OpenAIReader,
    PoeReader,
    Reader,
    loads,
)


def _openai(text: str) -> bytes:
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def _splits(data: bytes) -> Iterator[list[bytes]]:
    """`data` whole, byte by byte, and cut at every position into two reads."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def _read(reader: Reader, reads: list[bytes]) -> list[Chunk]:
    chunks: list[Chunk] = []
    for data in reads:
        chunks += reader.feed(data)
    return chunks


def test_lines_end_with_lf_crlf_or_cr_across_any_split() -> None:
    data = b"a\nb\r\nc\rd\r\n\r\ne"
    for reads in _splits(data):
        lines = Lines()
        got = [line for read in reads for line in lines.feed(read)]
        assert got == [b"a", b"b", b"c", b"d", b""], reads


def test_openai_chunks_are_the_same_for_every_split_of_the_bytes() -> None:
    """Multi-byte characters cut between reads, CRLF, comments, `data:` without a space."""
    body = (
        _openai("Hé")
        + b": keep-alive comment\r\n\r\n"
        + _openai('😀 "quoted"\n').replace(b"\n\n", b"\r\n\r\n")
        + b'data:{"choices":[{"delta":{"content":"end"}}]}\n\n'
        + b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
        + b"data: [DONE]\n\n"
    )
    for reads in _splits(body):
        reader = OpenAIReader()
        assert [c.text for c in _read(reader, reads)] == ["Hé", '😀 "quoted"\n', "end"], reads
        assert reader.ended


def test_openai_an_error_line_mid_stream_fails_after_the_text_before_it() -> None:
    body = _openai("par") + b'data: {"error": {"message": "overloaded"}}\n\n'
    reader = OpenAIReader()
    assert [c.text for c in reader.feed(body)] == ["par"]  # the text first ...
    with pytest.raises(ProviderError, match="overloaded") as failure:
        reader.feed(b"")  # ... the error at the next read
    assert failure.value.retryable


def test_openai_invalid_json_is_a_retryable_error() -> None:
    with pytest.raises(ProviderError, match="invalid JSON") as failure:
        OpenAIReader().feed(b"data: {not json\n\n")
    assert failure.value.retryable


def _anthropic(event: str, data: Mapping[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def test_anthropic_text_deltas_for_every_split_and_message_stop_ends() -> None:
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Grüß 🙂"}}
    body = (
        _anthropic("message_start", {"type": "message_start", "message": {}})
        + b"event: ping\r\ndata: {}\r\n\r\n"
        + _anthropic("content_block_delta", delta)
        + b": comment\n\n"
        + _anthropic("content_block_delta", {"delta": {"type": "input_json_delta"}})
        + b"event:message_stop\ndata:{}\n\n"
    )
    for reads in _splits(body):
        reader = AnthropicReader()
        assert [c.text for c in _read(reader, reads)] == ["Grüß 🙂"], reads
        assert reader.ended


def test_anthropic_an_error_event_is_retryable() -> None:
    body = _anthropic("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(ProviderError, match="overloaded_error") as failure:
        AnthropicReader().feed(body)
    assert failure.value.retryable


def test_poe_text_replace_and_error_events() -> None:
    body = (
        b'event: meta\r\ndata: {"content_type": "text/markdown"}\r\n\r\n'
        b'event: text\r\ndata: {"text": "a\xc3\xa9"}\r\n\r\n'
        b'event: replace_response\r\ndata: {"text": "b"}\r\n\r\n'
        b'event: suggested_reply\r\ndata: {"text": "no"}\r\n\r\n'
        b"event: done\r\ndata: {}\r\n\r\n"
    )
    for reads in _splits(body):
        reader = PoeReader("bot")
        assert _read(reader, reads) == [Chunk("aé"), Chunk("b", replace=True)], reads
        assert reader.ended
    error = b'event: error\r\ndata: {"text": "nope", "allow_retry": false}\r\n\r\n'
    with pytest.raises(ProviderError, match="nope") as failure:
        PoeReader("bot").feed(error)
    assert not failure.value.retryable


# The HTTP/1.1 body reader, over a real socket pair.


_POOL = Pool()  # the tests' own, closed at the end (`_closed_pool`)


@pytest.fixture(autouse=True, scope="module")
def _closed_pool() -> Iterator[None]:
    yield
    _POOL.close()


def _served(response: bytes, reads: list[bytes] | None = None) -> tuple[int, Body]:
    """`send` a request to a one-shot server that answers `response` in `reads`."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for piece in reads or [response]:
                connection.sendall(piece)
                threading.Event().wait(0.01)  # separate reads on the other side
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0}
    status, _, body = send(
        _POOL, ("http", "127.0.0.1", port), b"GET / HTTP/1.1\r\n\r\n", b"", timeouts
    )
    return status, body


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def test_a_chunked_body_read_in_any_split_gives_the_same_bytes() -> None:
    payload = _chunked(b"hello ", b"w\xc3\xb6rld", b"!" * 300)
    for cut in (1, 3, 7, 12, 20, len(payload) - 3):
        status, body = _served(b"", [HEAD + payload[:cut], payload[cut:]])
        assert status == 200
        assert b"".join(body) == b"hello w\xc3\xb6rld" + b"!" * 300


def test_a_body_cut_before_its_last_chunk_is_an_error() -> None:
    import httpx2

    _, body = _served(HEAD + b"5\r\nhello\r\n")
    with pytest.raises(httpx2.RemoteProtocolError):
        b"".join(body)


def test_a_stream_without_its_end_marker_is_a_broken_answer() -> None:
    """The body ends cleanly (a whole chunked body) but `[DONE]` never came."""
    _, body = _served(HEAD + _chunked(_openai("half")))
    stream = BodyStream(body, OpenAIReader())
    got: list[str] = []
    with pytest.raises(ProviderError, match=r"ended without \[DONE\]") as failure:
        for chunk in stream:
            got.append(chunk.text)
    assert got == ["half"] and failure.value.retryable


def test_poll_times_out_while_the_upstream_is_silent_then_reads_on() -> None:
    _, body = _served(b"", [HEAD + _chunked(_openai("a"))[:-5], b"", b"0\r\n\r\n"])
    stream = BodyStream(body, OpenAIReader())
    assert stream.poll(5.0) == [Chunk("a")]
    with pytest.raises(ProviderError, match="without"):
        while stream.poll(5.0) is not None:
            pass


def test_a_whole_answer_gives_its_connection_back_to_the_shared_pool() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    answer = HEAD + _chunked(_openai("x"), b"data: [DONE]\n\n")
    accepted: list[int] = []

    def serve() -> None:
        connection, _ = server.accept()
        accepted.append(1)
        with connection:
            for _ in range(2):
                connection.recv(65536)
                connection.sendall(answer)
            connection.recv(1)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    origin = ("http", "127.0.0.1", port)
    timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0}
    for _ in range(2):
        _, _, body = send(POOL, origin, b"POST / HTTP/1.1\r\n\r\n", b"", timeouts)
        assert [c.text for c in BodyStream(body, OpenAIReader())] == ["x"]
    assert accepted == [1]  # both requests on one connection
    connection = POOL.take(origin)
    assert connection is not None
    connection.close()


def test_the_pool_keeps_connections_up_to_its_bound_and_closes_expired_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "_MAX_IDLE", 2)
    pool, origin = Pool(), ("http", "127.0.0.1", 1)
    pairs = [socket.socketpair() for _ in range(3)]
    connections = [Connection(ours, origin) for ours, _ in pairs]
    for _, theirs in pairs:
        theirs.settimeout(5.0)  # a connection left open fails the test instead of hanging it
    for connection in connections:
        pool.give(connection)
    assert pairs[2][1].recv(1) == b""  # no room for the third: closed, its peer sees the end
    assert pool.take(origin) is connections[1]  # the most recently used first
    monkeypatch.setattr(transport, "_IDLE_FOR", 0.0)
    pool.give(connections[1])
    assert pairs[0][1].recv(1) == b""  # idle too long: closed when another came back
    assert pool.take(origin) is None  # and the one given back has expired by now
    assert pairs[1][1].recv(1) == b""
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_the_pool_looks_up_a_host_once_and_again_after_no_address_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Addresses are reused while fresh; the first that answers is used; when none does,
    the next connection looks them up again."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    with socket.create_server(("127.0.0.1", 0)) as dead:
        dead_port = dead.getsockname()[1]  # closed when the block ends: refuses connections
    live_port = listener.getsockname()[1]
    lookups: list[str] = []
    real_lookup = socket.getaddrinfo

    def lookup(host: str, port: int, *args: Any) -> Any:
        lookups.append(host)  # the refusing address first, then the one that answers
        here = "127.0.0.1"
        return [*real_lookup(here, dead_port, *args), *real_lookup(here, live_port, *args)]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    pool, origin = Pool(), ("http", "model.invalid", live_port)

    def connected() -> None:
        connection = pool.connect(origin, 5.0)
        assert connection.sock.getpeername()[1] == live_port
        connection.close()

    connected()
    connected()
    assert lookups == ["model.invalid"]
    monkeypatch.setattr(transport, "_ADDRESSES_FOR", 0.0)
    connected()
    assert len(lookups) == 2  # stale at once: looked up again
    monkeypatch.setattr(transport, "_ADDRESSES_FOR", 60.0)
    listener.close()
    import httpx2

    with pytest.raises(httpx2.ConnectError, match="model.invalid"):
        pool.connect(origin, 5.0)  # the addresses it knows
    assert len(lookups) == 2
    with pytest.raises(httpx2.ConnectError):
        pool.connect(origin, 5.0)
    assert len(lookups) == 3


def test_stream_json_reads_as_json_does_where_orjson_refuses() -> None:
    chunk = b'{"choices":[{"delta":{"content":"hi"}}]}'
    assert loads(chunk) == json.loads(chunk)
    assert loads(b'"\\ud83d"') == "\ud83d"  # half an emoji, which WholeText joins
    assert math.isnan(loads(b"NaN"))
    with pytest.raises(ValueError):
        loads(b'{"choices": [')
