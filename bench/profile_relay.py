"""Where relaying one model chunk spends its CPU, in-process: `python -m bench.profile_relay`.

Runs under gevent's monkey patching, as a gunicorn gevent worker does, with no sockets: the
upstream's answer (20 chunks in OpenAI's wire format, bench/upstream.py's bytes) comes from
an in-memory httpx transport. Prints µs per chunk for each layer, then one JSON object:

  sdk        openai.OpenAI(...).chat.completions.create(stream=True) and iterating it
  raw        the same HTTP call and bytes, parsed by hand (iter_lines + json.loads)
  relay      the engine's relay alone (engine.providers.relay.stream_chain: a producer
             greenlet per attempt, a queue handover per chunk), with chunks from a list
  engine     a whole answer through the engine (engine.runtime.run, the protocol guard,
             SSE encoding) with the real openai provider over the in-memory transport
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as gunicorn's gevent worker does, before anything else is imported

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx2  # noqa: E402
import openai  # noqa: E402

import engine.providers.openai as engine_openai  # noqa: E402
from engine.compiled import CompiledModel  # noqa: E402
from engine.loader import load_paths  # noqa: E402
from engine.protocol import sse  # noqa: E402
from engine.protocol.guard import guarded  # noqa: E402
from engine.protocol.requests import parse_query  # noqa: E402
from engine.providers.base import Chunk, ChunkStream, ModelCall  # noqa: E402
from engine.providers.relay import RelayTiming, stream_chain  # noqa: E402
from engine.runtime import run  # noqa: E402
from engine.spec.models import OpenAIModel  # noqa: E402

from .serve import UPSTREAM_KEY, llm_bot_dir  # noqa: E402
from .upstream import CHUNK_AFTER, CHUNK_BEFORE, FINISH  # noqa: E402

CHUNKS = 20
BASE_URL = "http://upstream.invalid/v1"
BODY = (
    b"".join(
        b"data: " + CHUNK_BEFORE + b"tok%d [t=0] " % i + CHUNK_AFTER + b"\n\n"
        for i in range(CHUNKS)
    )
    + FINISH
)


def _answer(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=BODY)


def http_client() -> httpx2.Client:
    return httpx2.Client(transport=httpx2.MockTransport(_answer))


MESSAGES: Any = [{"role": "user", "content": "Tell me a story."}]


def sdk(client: openai.OpenAI) -> int:
    stream = client.chat.completions.create(model="bench", messages=MESSAGES, stream=True)
    count = 0
    for event in stream:
        for choice in event.choices:
            if choice.delta.content:
                count += 1
    return count


def raw(client: httpx2.Client) -> int:
    body = {"model": "bench", "messages": MESSAGES, "stream": True}
    count = 0
    with client.stream("POST", f"{BASE_URL}/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    if choice["delta"].get("content"):
                        count += 1
    return count


class _ListStream:
    def __init__(self) -> None:
        self.parts = [Chunk(f"tok{i} [t=0] ") for i in range(CHUNKS)]

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.parts)

    def close(self) -> None:
        pass


def relay() -> int:
    model = CompiledModel(OpenAIModel(provider="openai", name="bench"))
    call = ModelCall(system=None, messages=())

    def opener(model: CompiledModel, call: ModelCall) -> ChunkStream:
        return _ListStream()

    items = stream_chain([model], lambda m: call, opener, RelayTiming())
    return sum(1 for item in items if isinstance(item, Chunk))


def engine_answer(bot: Any, query: Any) -> int:
    count = 0
    for event in guarded(run(bot, query), bot.name):
        data = sse.encode(event)
        count += data.startswith(b"event: text")
    return count


def per_chunk(function: Callable[[], int], streams: int) -> float:
    function()  # warm caches and imports
    start = time.perf_counter()
    chunks = sum(function() for _ in range(streams))
    assert chunks == streams * CHUNKS, (chunks, streams)
    return (time.perf_counter() - start) / chunks * 1e6


def by_package(function: Callable[[], int], streams: int) -> dict[str, float]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(streams):
        function()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    totals: dict[str, float] = defaultdict(float)
    for (file, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in file:
            area = file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        elif "/engine/" in file:
            area = "engine." + file.split("/engine/", 1)[1].split("/", 1)[0].removesuffix(".py")
        elif file == "~":
            area = "builtins"
        else:
            area = "stdlib"
        if area in ("typing", "inspect", "typing_extensions"):
            area = "stdlib"
        totals[area] += own
    whole = sum(totals.values()) or 1.0
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:8]
    return {area: round(100 * own / whole, 1) for area, own in top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    args = parser.parse_args()

    sdk_client = openai.OpenAI(
        base_url=BASE_URL, api_key=UPSTREAM_KEY, http_client=http_client(), max_retries=0
    )
    raw_client = http_client()
    # The engine's provider with its client swapped for one on the in-memory transport.
    engine_openai.sdk_client = lambda *args: sdk_client  # type: ignore[attr-defined,assignment]
    with tempfile.TemporaryDirectory() as folder:
        env = {"BENCH_KEY": UPSTREAM_KEY, "BENCH_ACCESS_KEY": "k"}
        bot = load_paths([llm_bot_dir(1, Path(folder))], env).bots["relay"]
    query = parse_query(
        {
            "version": "1.2",
            "type": "query",
            "query": [{"role": "user", "content": "Tell me a story."}],
            "user_id": "u",
            "conversation_id": "c",
            "message_id": "m",
        }
    )
    layers: dict[str, Callable[[], int]] = {
        "sdk": lambda: sdk(sdk_client),
        "raw": lambda: raw(raw_client),
        "relay": relay,
        "engine": lambda: engine_answer(bot, query),
    }
    us = {name: round(per_chunk(fn, args.streams), 1) for name, fn in layers.items()}
    profile = {
        name: by_package(layers[name], max(args.streams // 3, 20)) for name in ("sdk", "engine")
    }
    for name, value in us.items():
        print(f"{name:7} {value:7.1f} µs per chunk")
    print(f"profile of engine, own time by package: {profile['engine']}")
    print(json.dumps({"us_per_chunk": us, "profile_percent": profile, "chunks": CHUNKS}))


if __name__ == "__main__":
    main()
