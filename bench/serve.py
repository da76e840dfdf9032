"""Start one benchmark target in the foreground: `python -m bench.serve TARGET --port N`.

Targets (each answers POST on the path printed by `bench.run`):
  fastapi  fastapi_poe echo bot on uvicorn, 1 worker (the baseline Poe's docs suggest)
  flask    hand-written Flask SSE echo app on our production gunicorn config
  engine   our engine serving bench/bots/ on our production gunicorn config
  slow     bench-only Flask app streaming a chunk every 0.5 s (for bench.streams)
  canned   a raw asyncio server sending one fixed SSE answer: the load generator's ceiling
  upstream a local OpenAI-compatible model streaming 20 chunks 50 ms apart (bench/upstream.py)
  llm-engine   our engine relaying that model (`--upstream-port`): an `llm: {}` route
  llm-fastapi  a fastapi_poe bot relaying it with openai.AsyncOpenAI, on uvicorn

`--worker-class stock` swaps our worker back to gunicorn's own gevent worker, to show
the keep-alive starvation that engine/worker.py fixes. `--limited` gives the engine's faq
bot three rate limits (bench.limits.LIMITED, never reached), counted in a SQLite file in a
fresh STATE_DIR, or in Redis with `--redis-url`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from engine.server import Server, gunicorn_options
from engine.settings import Settings

BENCH = Path(__file__).resolve().parent
_EOL = "\r\n"
META = f'event: meta{_EOL}data: {{"content_type": "text/markdown"}}{_EOL}{_EOL}'.encode()
DONE = f"event: done{_EOL}data: {{}}{_EOL}{_EOL}".encode()
ACCESS_KEY = "b" * 32  # bench/bots/faq.yaml reads it from BENCH_ACCESS_KEY
KEY_VAR = "BENCH_ACCESS_KEY"
SSE_TYPE = "text/event-stream; charset=utf-8"


def flask_echo_app() -> Flask:
    """The smallest honest Flask Poe echo: parse the JSON, stream meta, text, done."""
    app = Flask("flask_echo")

    @app.post("/echo")
    def echo() -> Response:
        data = request.get_json()
        text = data["query"][-1]["content"]

        def events() -> Iterator[bytes]:
            yield META
            payload = json.dumps({"text": text}, ensure_ascii=False)
            yield f"event: text{_EOL}data: {payload}{_EOL}{_EOL}".encode()
            yield DONE

        return Response(events(), 200, content_type=SSE_TYPE)

    return app


def slow_stream_app(chunks: int, interval: float) -> Flask:
    """A stream that stays open: one text event every `interval` seconds."""
    app = Flask("slow_stream")

    @app.post("/slow")
    def slow() -> Response:
        def events() -> Iterator[bytes]:
            meta = {"content_type": "text/markdown", "worker": os.getpid()}
            yield f"event: meta{_EOL}data: {json.dumps(meta)}{_EOL}{_EOL}".encode()
            for i in range(chunks):
                time.sleep(interval)  # gevent-patched: parks this greenlet only
                yield f'event: text{_EOL}data: {{"text": "chunk {i} "}}{_EOL}{_EOL}'.encode()
            yield DONE

        return Response(events(), 200, content_type=SSE_TYPE)

    return app


LLM_BOT = """\
# Written by bench/serve.py for bench/llm_streams.py: relays the local bench/upstream.py model.
name: relay
description: Relays a local OpenAI-compatible model, chunk by chunk.
access_key: ${BENCH_ACCESS_KEY}
model:
  provider: openai
  name: bench
  base_url: http://127.0.0.1:PORT/v1
  api_key: ${BENCH_KEY}
routes:
  - llm: {}
"""
# The same relay for the other wire formats bench/upstream.py speaks (bench/relay_cpu.py).
LLM_BOTS = {
    "relay-anthropic": "model:\n  provider: anthropic\n  name: bench\n"
    "  base_url: http://127.0.0.1:PORT\n  api_key: ${BENCH_KEY}\n",
    "relay-poe": "model:\n  provider: poe\n  bot: bench\n  base_url: http://127.0.0.1:PORT/poe/\n",
}
UPSTREAM_KEY = "sk-bench-local"  # the upstream accepts any key; both relays send this one


def llm_bot_dir(upstream_port: int, parent: Path | None = None) -> Path:
    """A bots folder holding only the relay bot, naming the upstream's port."""
    from .procs import RESULTS

    folder = (parent or RESULTS / "llm-bots") / str(upstream_port)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "relay.yaml").write_text(LLM_BOT.replace("PORT", str(upstream_port)))
    head, _, tail = LLM_BOT.partition("model:\n")
    tail = tail.split("routes:", 1)[1]
    for name, model in LLM_BOTS.items():
        bot = head.replace("name: relay", f"name: {name}") + model + "routes:" + tail
        (folder / f"{name}.yaml").write_text(bot.replace("PORT", str(upstream_port)))
    return folder


def fastapi_relay_app() -> Any:
    """The fastapi_poe way to relay a model: AsyncOpenAI, stream=True, one PartialResponse
    per chunk. A factory (uvicorn imports it in each worker); the upstream from the env."""
    import fastapi_poe as fp
    import openai

    client = openai.AsyncOpenAI(
        base_url=os.environ["BENCH_UPSTREAM_URL"], api_key=os.environ["BENCH_KEY"]
    )
    roles = {"bot": "assistant", "user": "user", "system": "system"}

    class RelayBot(fp.PoeBot):
        async def get_response(self, request: fp.QueryRequest) -> Any:
            messages: Any = [{"role": roles[m.role], "content": m.content} for m in request.query]
            stream = await client.chat.completions.create(
                model="bench", messages=messages, stream=True
            )
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield fp.PartialResponse(text=choice.delta.content)

    return fp.make_app(RelayBot(), access_key=ACCESS_KEY)


def fastapi_echo_app() -> Any:
    import fastapi_poe as fp

    class EchoBot(fp.PoeBot):
        async def get_response(self, request: fp.QueryRequest) -> Any:
            yield fp.PartialResponse(text=request.query[-1].content)

    return fp.make_app(EchoBot(), allow_without_key=True)


class _Canned(asyncio.Protocol):
    """Keep-alive HTTP/1.1 with no framework: read a request, write a fixed chunked answer."""

    body = META + b'event: text\r\ndata: {"text": "canned"}\r\n\r\n' + DONE
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.answer)


def serve_canned(port: int) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class _StockServer(Server):
    """Our exact config with gunicorn's own gevent worker, for the before/after numbers."""

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("worker_class", "gevent")


def _accepting_worker(max_accept: int) -> type:
    """FairGeventWorker whose gevent StreamServer accepts up to `max_accept` connections per
    event-loop turn, whatever gunicorn or engine/worker.py set. gunicorn's gevent worker sets
    1 whenever there are several workers (to spread accepts over workers sharing one socket),
    even with reuse_port, where each worker has its own socket. Bench-only, to measure what
    that costs (bench/README.md)."""
    import gunicorn.workers.ggevent as ggevent

    import engine.worker as ours
    from engine.worker import FairGeventWorker

    class _StreamServer(ggevent.StreamServer):  # type: ignore[misc]
        @property
        def max_accept(self) -> int:
            return max_accept

        @max_accept.setter
        def max_accept(self, value: int) -> None:
            pass  # ignore gunicorn's `max_accept = 1`

    class AcceptingWorker(FairGeventWorker):
        def run(self) -> None:
            ggevent.StreamServer = _StreamServer  # the name gunicorn's run() looks up
            if hasattr(ours, "_OwnSocketServer"):  # engine/worker.py's own accept setting
                setattr(ours, "_OwnSocketServer", _StreamServer)  # noqa: B010
            super().run()

    return AcceptingWorker


def engine_sets_max_accept() -> bool:
    """Whether engine/worker.py changes gunicorn's accepting (it overrides `run` to do so)."""
    from gunicorn.workers.ggevent import GeventWorker

    from engine.worker import FairGeventWorker

    return bool(FairGeventWorker.run is not GeventWorker.run)


class _ProfiledServer(Server):
    """Our exact config, each worker under cProfile from start to exit (bench only)."""

    profile_dir: Path

    def load_config(self) -> None:
        super().load_config()
        folder = self.profile_dir

        def post_worker_init(worker: Any) -> None:
            import cProfile

            worker.profiler = cProfile.Profile()
            worker.profiler.enable()

        def worker_exit(server: Any, worker: Any) -> None:
            worker.profiler.disable()
            worker.profiler.dump_stats(str(folder / f"worker-{os.getpid()}.prof"))

        self.cfg.set("post_worker_init", post_worker_init)
        self.cfg.set("worker_exit", worker_exit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "target",
        choices=[
            "fastapi",
            "flask",
            "engine",
            "slow",
            "canned",
            "upstream",
            "llm-engine",
            "llm-fastapi",
        ],
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-class", choices=["ours", "stock"], default="ours")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--upstream-port", type=int, help="for llm-engine and llm-fastapi")
    parser.add_argument("--profile", type=Path, help="gunicorn targets: cProfile each worker")
    parser.add_argument("--max-accept", type=int, help="gunicorn targets: accepts per loop turn")
    parser.add_argument(
        "--pool-limit", type=int, help="llm targets: the openai SDK's connections per client"
    )
    parser.add_argument("--bots", type=Path, help="engine: serve this bots folder instead")
    parser.add_argument("--limited", action="store_true", help="engine: faq with three limits")
    parser.add_argument("--redis-url", help="engine --limited: count in this Redis")
    parser.add_argument(
        "--observed",
        choices=["off", "text", "json"],
        help="engine: request lines (INFO) and metrics both off, or both on with text or JSON "
        "lines (the server's log file); default: metrics as configured, lines off",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.target == "canned":
        serve_canned(args.port)
        return
    if args.target == "upstream":
        from .upstream import serve as serve_upstream

        serve_upstream(args.port, chunks=20, interval=0.05)
        return
    os.environ.setdefault("BENCH_KEY", UPSTREAM_KEY)
    if args.pool_limit:  # bench-only experiment: the SDK's default is 1,000 per client
        import httpx2
        import openai._base_client

        openai._base_client.DEFAULT_CONNECTION_LIMITS = httpx2.Limits(  # type: ignore[attr-defined]
            max_connections=args.pool_limit, max_keepalive_connections=min(args.pool_limit, 1000)
        )
    if args.target == "llm-fastapi":
        import uvicorn

        os.environ["BENCH_UPSTREAM_URL"] = f"http://127.0.0.1:{args.upstream_port}/v1"
        uvicorn.run(
            "bench.serve:fastapi_relay_app",
            factory=True,
            host="127.0.0.1",
            port=args.port,
            workers=args.workers,
            log_level="warning",
            access_log=False,
        )
        return
    if args.target == "fastapi":
        import uvicorn

        uvicorn.run(
            fastapi_echo_app(),
            host="127.0.0.1",
            port=args.port,
            workers=1,
            log_level="warning",
            access_log=False,
        )
        return

    bots_dir = args.bots or BENCH / "bots"
    if args.target == "llm-engine":
        bots_dir = llm_bot_dir(args.upstream_port)
    if args.limited:
        from .limits import limited_bot_dir

        bots_dir = limited_bot_dir(args.port)
    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        bots_dir=bots_dir,
        web_concurrency=args.workers,
        state_dir=bots_dir / "state",
        redis_url=args.redis_url,
        **{"log_level": "warning", **_observed(args.observed)},
    )
    if args.observed is not None:
        from engine.logs import configure

        configure(settings)
    if args.target == "flask":
        app = flask_echo_app()
    elif args.target == "slow":
        app = slow_stream_app(args.chunks, args.interval)
    else:  # engine, llm-engine
        from engine.web import create_app

        os.environ.setdefault(KEY_VAR, ACCESS_KEY)
        app = create_app(settings=settings)
    server_class = _StockServer if args.worker_class == "stock" else Server
    if args.max_accept:
        worker_class = _accepting_worker(args.max_accept)

        class _Accepting(server_class):  # type: ignore[valid-type,misc]
            def load_config(self) -> None:
                super().load_config()
                self.cfg.set("worker_class", worker_class)

        server_class = _Accepting
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        _ProfiledServer.profile_dir = args.profile.resolve()
        server_class = _ProfiledServer
    assert gunicorn_options(settings)["workers"] == args.workers
    server_class(app, settings).run()


def _observed(choice: str | None) -> dict[str, Any]:
    """The settings of `--observed`: what bench.observe compares."""
    if choice is None:
        return {}
    if choice == "off":
        return {"metrics": False, "log_level": "warning"}
    return {"metrics": True, "log_level": "info", "log_format": choice}


if __name__ == "__main__":
    main()
