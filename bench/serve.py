"""Start one benchmark target in the foreground: `python -m bench.serve TARGET --port N`.

Targets (each answers POST on the path printed by `bench.run`):
  fastapi  fastapi_poe echo bot on uvicorn, 1 worker (the baseline Poe's docs suggest)
  flask    hand-written Flask SSE echo app on our production gunicorn config
  engine   our engine serving bench/bots/ on our production gunicorn config
  slow     bench-only Flask app streaming a chunk every 0.5 s (for bench.streams)
  canned   a raw asyncio server sending one fixed SSE answer: the load generator's ceiling

`--worker-class stock` swaps our worker back to gunicorn's own gevent worker, to show
the keep-alive starvation that engine/worker.py fixes.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["fastapi", "flask", "engine", "slow", "canned"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-class", choices=["ours", "stock"], default="ours")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.target == "canned":
        serve_canned(args.port)
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

    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        bots_dir=BENCH / "bots",
        web_concurrency=args.workers,
        log_level="warning",
    )
    if args.target == "flask":
        app = flask_echo_app()
    elif args.target == "slow":
        app = slow_stream_app(args.chunks, args.interval)
    else:
        from engine.web import create_app

        os.environ.setdefault(KEY_VAR, ACCESS_KEY)
        app = create_app(settings=settings)
    server_class = _StockServer if args.worker_class == "stock" else Server
    assert gunicorn_options(settings)["workers"] == args.workers
    server_class(app, settings).run()


if __name__ == "__main__":
    main()
