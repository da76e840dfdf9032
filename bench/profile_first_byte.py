"""What a model answer's first bytes cost the production worker, in-process:
`python -m bench.profile_first_byte [-n 2000] [--rounds 3] [--profile]`.

bench/first_byte.py times 5,000 conversations opened at once through real servers; its p99
is about the worker's CPU from accepting a connection to writing `meta`, times the
conversations each worker takes. This measures that path alone: `n` client connections
(plain blocking sockets, connected and their query sent beforehand) wait in the accept
queue of engine/worker.py's own server, run by the real `FairGeventWorker.handle` on
the bot of bench/first_byte.py, with gunicorn's configuration from `engine.server.Server`.
Each answer is parked where it makes way after its first bytes (`make_way`), so nothing
after them is counted. Prints the process CPU per connection (best of the rounds), then,
with `--profile`, a cProfile of one round by package and function.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after gevent's patching, as in the worker
import cProfile  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from gevent import event, sleep  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from engine import worker as engine_worker  # noqa: E402
from engine.server import Server  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.web import create_app, poe  # noqa: E402

from .first_byte import bot_dir, query  # noqa: E402
from .serve import ACCESS_KEY, KEY_VAR  # noqa: E402
from .streams import raise_fd_limit  # noqa: E402

_PlainSocket = monkey.get_original("socket", "socket")


def build_worker(folder: Any) -> tuple[Any, Any]:
    settings = Settings(bots_dir=folder, host="127.0.0.1", port=0, metrics=False)
    app = create_app(settings=settings)
    server = Server(app, settings)
    log = logging.getLogger("bench.profile_first_byte")
    worker = engine_worker.FairGeventWorker(0, os.getpid(), [], server, 30, server.cfg, _Log(log))
    worker.wsgi = app
    worker.alive = True
    return worker, server


class _Log:
    """What the worker calls on gunicorn's logger."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name, lambda *a, **k: None)

    def access(self, *args: Any) -> None:
        pass


def one_round(worker: Any, n: int, request: bytes, profiler: cProfile.Profile | None) -> float:
    """CPU seconds per connection from its accept to its first bytes."""
    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(n + 10)
    port = listener.getsockname()[1]
    clients = []
    for _ in range(n):
        client = _PlainSocket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        client.connect(("127.0.0.1", port))
        client.sendall(request.replace(b"{port}", str(port).encode()))
        clients.append(client)
    parked = event.Event()
    answered = [0]
    all_in = event.Event()

    def park() -> None:  # where `make_way` would let the loop run: the first bytes are out
        answered[0] += 1
        if answered[0] == n:
            all_in.set()
        parked.wait()

    make_way = poe.make_way  # type: ignore[attr-defined]
    poe.make_way = park  # type: ignore[attr-defined]
    named = engine_worker._Listener(listener)  # as FairGeventWorker.run hands it over
    server = engine_worker._OwnSocketServer(
        listener, handle=lambda c, a: worker.handle(named, c, a), spawn=Pool(n + 10)
    )
    try:
        start = time.process_time()
        if profiler is not None:
            profiler.enable()
        server.start()
        all_in.wait()
        if profiler is not None:
            profiler.disable()
        used = time.process_time() - start
    finally:
        poe.make_way = make_way  # type: ignore[attr-defined]
        parked.set()
        server.close()
        for client in clients:
            client.close()
        sleep(0.2)  # the parked answers end (their clients are gone)
    return used / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="connections per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    raise_fd_limit(2 * args.n + 200)
    os.environ.setdefault(KEY_VAR, ACCESS_KEY)
    worker, _server = build_worker(bot_dir(20, 0.05))
    engine_worker._tune_gc()
    request = query(0).replace(b":0\r\n", b":{port}\r\n")
    one_round(worker, 100, request, None)  # warm-up: imports, templates
    costs = [one_round(worker, args.n, request, None) for _ in range(args.rounds)]
    print(
        f"first bytes: {min(costs) * 1e6:.1f} µs of CPU per connection (best of "
        f"{args.rounds}; rounds {', '.join(f'{c * 1e6:.1f}' for c in costs)})"
    )
    if args.profile:
        profiler = cProfile.Profile()
        one_round(worker, args.n, request, profiler)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        print(out.getvalue())


if __name__ == "__main__":
    main()
