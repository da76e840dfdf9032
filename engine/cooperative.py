"""First bytes first: what an answer asks of the event loop when it is served by gunicorn's
gevent worker (the production server, engine/worker.py); under any other server these do
nothing.

Poe gives up on an answer whose first bytes take over 5 s, while a chunk that comes a
little late costs nothing. So when thousands of conversations open at once, the worker
answers each new request as far as its first bytes (`meta`) before it does anything else:
the worker counts requests whose bytes came in and that have no answer yet (`arrived`),
and answers already under way wait for that count to fall to 0 before their model call
and before each chunk (`make_way`, `make_way_for_arrivals`), at most `WAIT_LIMIT` seconds
each time. bench/first_byte.py measures it: 5,000 conversations opened at once.

A request counts only while it can run: not while it waits for more of its bytes, nor
while its answer waits for room to be written. A client that sends half a request, or
reads nothing, holds no one up.
"""

from __future__ import annotations

import sys
from typing import Any

# The longest an answer under way waits for the requests arriving (seconds), each time.
WAIT_LIMIT = 0.5

_arriving = 0  # requests with bytes in and no answer yet, not waiting (engine/worker.py)
# The gevent Waiters of the answers waiting for `_arriving` to be 0, in the order they came.
_waiting: dict[Any, None] = {}


def arrived(count: int) -> None:
    """The worker's count of requests arriving changed by `count` (1 or -1)."""
    global _arriving
    _arriving += count
    if _arriving == 0 and _waiting:
        _resume_waiting()


def under_gevent() -> bool:
    """Whether this process serves with gevent's cooperative sockets (gunicorn's gevent
    worker, the production server), not under a server of threads."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def make_way() -> None:
    """Called once an answer that waits for a model has written its first bytes (`meta`),
    before the model is called: every request that has come in gets its first bytes
    before this answer goes on.

    One turn of the event loop first: the worker takes new connections in its accept
    watcher and answers each there, as far as it can go before waiting (engine/worker.py),
    so connections still in the kernel's queue are taken before this answer resumes. At
    low load that pause is the whole cost.
    """
    if under_gevent():
        import gevent

        gevent.sleep(0)
        make_way_for_arrivals()


def make_way_for_arrivals() -> None:
    """Before an answer under way writes its next chunk: wait while requests are arriving.

    A model's chunk wakes its answer straight from the event loop (the upstream's socket,
    or a scripted model's timer), at the same rank as a new request's bytes; its write
    and the next read then took CPU that the new requests' first bytes were waiting for.
    Without arrivals, this is one comparison.
    """
    if _arriving > 0:
        _wait_for_arrivals()


def _wait_for_arrivals() -> None:
    from gevent.hub import Waiter, get_hub

    waiter = Waiter()
    _waiting[waiter] = None
    timer = get_hub().loop.timer(WAIT_LIMIT)
    timer.start(waiter.switch, None)
    try:
        waiter.get()
    finally:
        timer.close()
        _waiting.pop(waiter, None)  # still there if the timer woke it


def _resume_waiting() -> None:
    """Each waiting answer resumes from a callback of its own: gevent runs callbacks for
    at most 5 ms per turn of its loop, so new connections are taken again in between, as
    they would not be if thousands of answers went on at once."""
    from gevent.hub import get_hub

    run_callback = get_hub().loop.run_callback
    for waiter in _waiting:
        run_callback(waiter.switch, None)
    _waiting.clear()
