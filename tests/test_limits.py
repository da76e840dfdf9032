"""Rate limits and remembered vars, on the embedded SQLite store and on a real redis-server.

The counts that matter are checked exactly across processes: two fresh interpreters hammer
one key at once (threads in each, or gevent greenlets after monkey-patching, as in the
server's workers) and the hits allowed add up to the limit, no more, no fewer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from engine.limits import (
    STORE_DOWN_MESSAGE,
    Limiter,
    Verdict,
    _counter_key,
    describe_limit,
    format_wait,
    parse_limit,
    retry_message,
)
from engine.store import RedisBackend, SqliteStorage, Store, StoreDown, redact

from ._redis import RedisServer, needs_redis
from .conftest import REPO


class Clock:
    """Wall time, stopped at the test's start, that the test moves forward by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


StoreFactory = Callable[..., Store]


@pytest.fixture(params=["sqlite", "memory", pytest.param("redis", marks=needs_redis)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens a Store on each backend (options go to Store.from_url)."""
    url = "memory://" if request.param == "memory" else None
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url

    def make(**options: Any) -> Store:
        store = Store.from_url(url, state_dir=tmp_path / "state", **options)
        store.prepare()
        return store

    return make


def test_a_state_folder_that_cannot_be_made_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    store = Store.from_url(None, state_dir=tmp_path / "taken" / "state")
    with pytest.raises(StoreDown, match=r"^cannot open SQLite .*engine\.sqlite3: "):
        store.prepare()


def test_a_url_that_is_not_redis_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError) as error:
        Store.from_url("http://user:hunter2@example.invalid:6379")
    assert str(error.value) == (
        "REDIS_URL: got 'http://user:***@example.invalid:6379'; expected a URL starting "
        "redis://, rediss:// or redis+unix:// (unset, limits and remembered vars stay in a file "
        "on this server)"
    )
    assert redact("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    # redis-py also reads a password from the query.
    assert redact("redis://h:6379/0?password=s3cret&db=1") == "redis://h:6379/0?password=***&db=1"
    assert redact("redis://h/0?Username=u&PASSWORD=p") == "redis://h/0?Username=***&PASSWORD=***"


# Limits: parsing and the words the user reads.


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("20/minute", "20 messages per minute"),
        ("500 per day", "500 messages per day"),
        ("1/second", "1 message per second"),
        ("5/10 minutes", "5 messages per 10 minutes"),
        ("10000/day", "10,000 messages per day"),
    ],
)
def test_limits_read_as_text(text: str, described: str) -> None:
    assert describe_limit(parse_limit(text)) == described


@pytest.mark.parametrize("text", ["20", "20/minit", "0/minute", "1/second; 5/minute", ""])
def test_a_limit_that_is_not_one_count_per_period_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_limit(text)
    assert str(error.value) == (
        f"got {text!r}; expected a count of at least 1 per period, like '20/minute', "
        "'500/day' or '5 per 10 minutes' (periods: second, minute, hour, day, month, year)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 second"),
        (41.01, "42 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (3600, "1 hour"),
        (3 * 3600 + 4 * 60 + 1, "3 hours 5 minutes"),
        (86400 + 3600, "1 day 1 hour"),
        (2 * 86400, "2 days"),
    ],
)
def test_waits_are_rounded_up(seconds: float, text: str) -> None:
    assert format_wait(seconds) == text


def test_retry_messages() -> None:
    minute = parse_limit("20/minute")
    refused = Verdict(False, retry_after_seconds=41.3, limit=minute)
    assert retry_message(refused) == (
        "You have reached this bot's limit of 20 messages per minute. Try again in 42 seconds."
    )
    daily = Verdict(False, retry_after_seconds=7200, limit=parse_limit("1000/day"))
    assert retry_message(daily, noun="model call", whole_bot=True) == (
        "This bot has reached its limit of 1,000 model calls per day for everyone. "
        "Try again in 2 hours."
    )
    down = Verdict(False, retry_after_seconds=60, store_down=True)
    assert retry_message(down) == STORE_DOWN_MESSAGE
    with pytest.raises(ValueError, match="allowed"):
        retry_message(Verdict(True))


# Limits: counting.


def test_a_fixed_window_allows_exactly_the_limit(make_store: StoreFactory) -> None:
    limiter = Limiter(make_store())
    verdicts = [limiter.hit("3/minute", "bot", "messages", "user", "u1") for _ in range(5)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert all(58 < v.retry_after_seconds <= 60 for v in verdicts[3:])
    other_user = limiter.hit("3/minute", "bot", "messages", "user", "u2")
    assert other_user.allowed and other_user.remaining == 2


def test_keys_cannot_pass_for_one_another(make_store: StoreFactory) -> None:
    limiter = Limiter(make_store())
    assert limiter.hit("1/minute", "a/b", "c").allowed
    assert limiter.hit("1/minute", "a", "b/c").allowed
    assert not limiter.hit("1/minute", "a/b", "c").allowed
    limiter.clear("1/minute", "a/b", "c")
    assert limiter.hit("1/minute", "a/b", "c").allowed


def test_a_window_starts_again_when_its_period_ends(tmp_path: Path) -> None:
    clock = Clock()
    limiter = Limiter.from_url(None, state_dir=tmp_path, clock=clock)
    for _ in range(3):
        assert limiter.hit("3/minute", "u").allowed
    clock.advance(18)
    refused = limiter.hit("3/minute", "u")
    assert not refused.allowed
    assert refused.retry_after_seconds == pytest.approx(42)
    assert retry_message(refused).endswith("Try again in 42 seconds.")
    clock.advance(42)
    assert limiter.hit("3/minute", "u") == Verdict(True, remaining=2, limit=parse_limit("3/minute"))


def test_a_moving_window_frees_one_hit_as_each_leaves_it(tmp_path: Path) -> None:
    clock = Clock()
    limiter = Limiter.from_url(None, state_dir=tmp_path, clock=clock, strategy="moving-window")
    for _ in range(3):
        assert limiter.hit("3/minute", "u").allowed
        clock.advance(10)
    refused = limiter.hit("3/minute", "u")  # 30 s after the first hit
    assert not refused.allowed and refused.retry_after_seconds == pytest.approx(30)
    clock.advance(30.5)
    assert limiter.hit("3/minute", "u").allowed  # the first hit has left the window
    assert not limiter.hit("3/minute", "u").allowed  # the other two have not


@needs_redis
def test_a_redis_window_expires_on_redis_time(redis_server: RedisServer) -> None:
    limiter = Limiter.from_url(redis_server.url)
    assert [limiter.hit("2/second", "u").allowed for _ in range(3)] == [True, True, False]
    time.sleep(1.05)
    assert limiter.hit("2/second", "u").allowed


def test_hit_all_stops_at_the_first_refusal(tmp_path: Path) -> None:
    limiter = Limiter.from_url(None, state_dir=tmp_path)
    checks: list[tuple[str, tuple[str, ...]]] = [
        ("2/minute", ("bot", "user", "u1")),
        ("100/day", ("bot", "everyone")),
    ]
    assert limiter.hit_all(checks) == Verdict(True, remaining=1)
    assert limiter.hit_all(checks).allowed
    refused = limiter.hit_all(checks)
    assert not refused.allowed and refused.limit == parse_limit("2/minute")
    # The refused hit did not use up the bot's daily ceiling: 2 of 100 are used.
    assert limiter.hit("100/day", "bot", "everyone").remaining == 97


# One round trip for all of a turn's limits, with hit_all's semantics unchanged.

TURN = [  # a turn's usual three: the user's per minute and per day, the whole bot's per day
    ("3/minute", ("bot", "messages", "user", "u1")),
    ("5/day", ("bot", "messages", "user", "u1")),
    ("100/day", ("bot", "messages", "everyone")),
]


def count_round_trips(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the store is sent from now on: SQL statements, or Redis commands."""
    sent: list[str] = []
    backend = store.backend
    if isinstance(backend, SqliteStorage):
        backend._connection().set_trace_callback(lambda sql: sent.append(" ".join(sql.split())))
    else:
        assert isinstance(backend, RedisBackend)
        client = backend.client
        execute: Callable[..., Any] = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            sent.append(str(args[0]))
            return execute(*args, **options)

        monkeypatch.setattr(client, "execute_command", counted)
    return sent


def one_write(sent: list[str], hits: int) -> bool:
    """One SQLite write transaction of `hits` upserts, or one Redis script call."""
    if sent and sent[0].upper().startswith("EVAL"):
        return sent == ["EVALSHA"]
    upserts = sent[1:-1]
    return (
        sent[:1] == ["BEGIN IMMEDIATE"]
        and sent[-1:] == ["COMMIT"]
        and len(upserts) == hits
        and all(sql.startswith("INSERT INTO counters") for sql in upserts)
    )


def test_a_turns_limits_are_one_round_trip_allowed_or_refused(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    limiter = Limiter(store)
    assert limiter.hit_all(TURN).allowed  # warm: connection opened, script loaded
    sent = count_round_trips(store, monkeypatch)
    assert limiter.hit_all(TURN) == Verdict(True, remaining=1)
    assert one_write(sent, hits=3), sent
    assert limiter.hit_all(TURN).allowed
    sent.clear()
    refused = limiter.hit_all(TURN)  # the 4th this minute: refused by the first limit
    assert not refused.allowed and refused.limit == parse_limit("3/minute")
    assert 58 < refused.retry_after_seconds <= 60
    assert one_write(sent, hits=1), sent  # no upsert after the refusal, no window asked


def test_one_hit_is_one_statement_or_one_script(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    limiter = Limiter(store)
    assert limiter.hit("1/minute", "u").allowed
    sent = count_round_trips(store, monkeypatch)
    refused = limiter.hit("1/minute", "u")  # a refusal no longer asks for the window's end
    assert not refused.allowed and 58 < refused.retry_after_seconds <= 60
    assert len(sent) == 1 and sent[0].split()[0] in ("INSERT", "EVALSHA"), sent


def test_a_refusal_counts_itself_and_nothing_after_it(make_store: StoreFactory) -> None:
    limiter = Limiter(make_store())
    for _ in range(3):
        assert limiter.hit_each(TURN) == (Verdict(True, remaining=(2, 1, 0)[_]), None)
    verdict, index = limiter.hit_each(TURN)
    assert (verdict.allowed, verdict.limit, index) == (False, parse_limit("3/minute"), 0)
    # The refused hit counted against the per-minute limit (as one `hit` does), not after it.
    assert limiter.hit("3/minute", *TURN[0][1]).remaining == 0
    assert limiter.hit("5/day", *TURN[1][1]).remaining == 1  # 3 turns and this hit
    assert limiter.hit("100/day", *TURN[2][1]).remaining == 96  # 3 turns and this hit
    # A refusal in the middle: the first limit counted, the last did not.
    limiter.hit("5/day", *TURN[1][1])  # now 5 of 5
    checks = [("50/minute", ("bot", "messages", "user", "u1")), *TURN[1:]]
    verdict, index = limiter.hit_each(checks)
    assert (verdict.allowed, verdict.limit, index) == (False, parse_limit("5/day"), 1)
    assert limiter.hit("50/minute", "bot", "messages", "user", "u1").remaining == 48
    assert limiter.hit("100/day", *TURN[2][1]).remaining == 95


def test_hit_each_counts_as_hitting_one_limit_after_another(tmp_path: Path) -> None:
    """The batched path against one `hit` at a time, over the same random turns: the same
    verdicts, the same refusing limit, the same counts afterwards (a limit listed twice
    counts twice, as two hits would)."""
    import random

    clock = Clock()
    batched = Limiter.from_url(None, state_dir=tmp_path / "a", clock=clock)
    one_by_one = Limiter.from_url(None, state_dir=tmp_path / "b", clock=clock)
    limits = ["2/minute", "4/minute", "6/hour", "9/day"]
    whose = [("bot", "user", "u1"), ("bot", "user", "u2"), ("bot", "everyone")]
    rng = random.Random(9)
    for _ in range(300):
        checks = [(rng.choice(limits), rng.choice(whose)) for _ in range(rng.randint(0, 4))]
        got = batched.hit_each(checks)
        expected: tuple[Verdict, int | None] = (Verdict(True), None)
        remaining: list[int] = []
        for index, (limit, keys) in enumerate(checks):
            verdict = one_by_one.hit(limit, *keys)
            if not verdict.allowed:
                expected = (verdict, index)
                break
            remaining.append(verdict.remaining)
        else:
            expected = (Verdict(True, remaining=min(remaining, default=0)), None)
        assert got == expected, checks
        clock.advance(rng.choice([0, 0, 1, 7, 31]))
    for limit in limits:
        for keys in whose:
            assert batched.hit(limit, *keys) == one_by_one.hit(limit, *keys)


def test_a_refusal_by_the_whole_bot_is_told_as_one(tmp_path: Path) -> None:
    limiter = Limiter.from_url(None, state_dir=tmp_path)
    checks = [(limit, keys) for limit, keys in TURN[:2]] + [("1/day", ("bot", "everyone"))]
    assert limiter.hit_each(checks)[1] is None
    verdict, index = limiter.hit_each(checks)
    assert index == 2 and verdict.limit == parse_limit("1/day")


def test_when_the_store_is_down_a_turns_limits_fail_open_or_closed(tmp_path: Path) -> None:
    store = Store.from_url(None, state_dir=tmp_path, recheck_seconds=60.0)
    limiter = Limiter(store)

    def broken(hits: object) -> NoReturn:
        raise sqlite3.OperationalError("disk I/O error")

    store.backend.incr_until_refused = broken  # type: ignore[method-assign]
    assert limiter.hit_each(TURN) == (Verdict(True, store_down=True), None)
    closed = limiter.hit_each(TURN, fail_closed=True)
    assert closed == (Verdict(False, retry_after_seconds=60.0, store_down=True), None)


def test_a_write_that_fails_half_way_counts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.from_url(None, state_dir=tmp_path, recheck_seconds=0.0)
    limiter = Limiter(store)
    counted = SqliteStorage._incr_in_order

    def fails_after_one(db: sqlite3.Connection, now: float, hits: Any) -> Any:
        counted(db, now, hits[:1])
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SqliteStorage, "_incr_in_order", staticmethod(fails_after_one))
    assert limiter.hit_all(TURN) == Verdict(True, store_down=True)
    monkeypatch.undo()
    assert limiter.hit_all(TURN) == Verdict(True, remaining=2)  # the first was rolled back


def test_counter_keys_are_limits_own() -> None:
    """Counts kept before the batched path go on counting after it: the same keys."""
    assert _counter_key(parse_limit("2/minute"), ("a/b", "c d")) == "LIMITER/a%2Fb/c%20d/2/1/minute"


# Exact across processes.

HAMMER = r"""
import json, sys, time
mode, url, state_dir, limit, hits = sys.argv[1:]
if mode == "gevent":
    from gevent import monkey
    monkey.patch_all()
from pathlib import Path
from engine.limits import Limiter

limiter = Limiter.from_url(url or None, state_dir=Path(state_dir))
hit = lambda _: limiter.hit(limit, "hammer", "messages", "user", "u1").allowed
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
if mode == "gevent":
    from gevent.pool import Pool
    allowed = sum(Pool(8).imap_unordered(hit, range(int(hits))))
else:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as pool:
        allowed = sum(pool.map(hit, range(int(hits))))
seconds = time.perf_counter() - start
print(json.dumps({"allowed": allowed, "us_per_hit": seconds / int(hits) * 1e6}), flush=True)
"""


def hammer(mode: str, url: str | None, state_dir: Path, limit: int, hits: int) -> list[int]:
    """Two fresh interpreters hit one key `hits` times each, starting together."""
    command = [sys.executable, "-c", HAMMER, mode, url or "", str(state_dir), f"{limit}/hour"]
    processes = [
        subprocess.Popen(
            [*command, str(hits)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=30) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    return [json.loads(out)["allowed"] for out, _ in outputs]


@pytest.mark.parametrize("mode", ["threads", "gevent"])
def test_the_embedded_store_counts_exactly_across_processes(mode: str, tmp_path: Path) -> None:
    Store.from_url(None, state_dir=tmp_path).prepare()  # as the server's master does
    allowed = hammer(mode, None, tmp_path, limit=500, hits=400)
    assert sum(allowed) == 500
    assert min(allowed) >= 100  # each process got what the other left


@needs_redis
def test_two_processes_share_one_redis_quota_exactly(redis_server: RedisServer) -> None:
    allowed = hammer("gevent", redis_server.url, Path("unused"), limit=500, hits=400)
    assert sum(allowed) == 500 and min(allowed) >= 100


def test_a_forked_process_keeps_counting_in_the_same_file(tmp_path: Path) -> None:
    limiter = Limiter.from_url(None, state_dir=tmp_path)
    assert limiter.hit("5/minute", "u").remaining == 4  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        code = 1
        try:
            code = 0 if limiter.hit("5/minute", "u").remaining == 3 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter.hit("5/minute", "u").remaining == 2


# Redis going away.


@needs_redis
def test_when_redis_stops_limits_fail_open_or_closed_and_log_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.from_url(redis_server.url, recheck_seconds=0.0)
    limiter = Limiter(store)
    assert limiter.hit("2/minute", "u").allowed
    assert store.remember("bot", "u", "name", "Ana", 60)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="engine.store"):
        opened = [limiter.hit("2/minute", "u") for _ in range(20)]
        closed = limiter.hit("2/minute", "u", fail_closed=True)
        assert store.recall("bot", "u") == {}
        assert not store.remember("bot", "u", "name", "Bea", 60)
    assert all(v == Verdict(True, store_down=True) for v in opened)
    assert closed == Verdict(False, retry_after_seconds=60.0, store_down=True)
    assert retry_message(closed) == STORE_DOWN_MESSAGE
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1, reports
    assert reports[0].startswith(f"Redis {redis_server.url} is unreachable (ConnectionError: ")
    caplog.clear()
    redis_server.start()  # an empty Redis on the same port: counts start again
    with caplog.at_level(logging.WARNING, logger="engine.store"):
        assert limiter.hit("2/minute", "u").remaining == 1
    assert caplog.records[0].getMessage().startswith(f"Redis {redis_server.url} is reachable")


@needs_redis
def test_a_redis_that_never_answers_costs_one_timeout_then_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never replies
        store = Store.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)
        limiter = Limiter(store)
        start = time.monotonic()
        assert limiter.hit("1/minute", "u") == Verdict(True, store_down=True)
        first = time.monotonic() - start
        assert limiter.hit("1/minute", "u", fail_closed=True).store_down
        assert store.recall("bot", "u") == {}
        rest = time.monotonic() - start - first
    assert 0.2 <= first < 0.6 and rest < 0.05  # one timeout, no retry; then the recheck wait


def test_while_down_the_store_is_not_asked_again_until_the_recheck(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing() -> int:
        calls.append(1)
        raise OSError("disk gone")

    store = Store.from_url(None, state_dir=tmp_path, recheck_seconds=60.0)
    for _ in range(3):
        with pytest.raises(StoreDown):
            store.run(failing)
    assert len(calls) == 1
    assert Limiter(store).hit("1/minute", "u") == Verdict(True, store_down=True)


@needs_redis
def test_a_redis_that_is_down_at_start_only_logs(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.stop()
    store = Store.from_url(redis_server.url)
    with caplog.at_level(logging.WARNING, logger="engine.store"):
        store.prepare()
    assert "is unreachable at start" in caplog.text
    assert Limiter(store).hit("1/minute", "u").allowed


# Remembered vars.


def test_remembered_vars_come_back_for_that_bot_and_user_only(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.remember("trip", "u1", "name", "Zoë", ttl_seconds=3600)
    assert store.remember("trip", "u1", "prefs", {"language": "pt-BR", "units": [1, 2]}, 3600)
    assert store.remember("trip", "u1", "name", "Zoé", ttl_seconds=3600)  # replaced
    assert store.recall("trip", "u1") == {
        "name": "Zoé",
        "prefs": {"language": "pt-BR", "units": [1, 2]},
    }
    assert store.recall("trip", "u2") == {}
    assert store.recall("other", "u1") == {}
    assert store.forget("trip", "u1")
    assert store.recall("trip", "u1") == {}


def test_remembered_vars_expire(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    store.remember("trip", "u1", "name", "Ana", ttl_seconds=60)
    store.remember("trip", "u1", "language", "fr", ttl_seconds=3600)
    clock.advance(61)
    assert store.recall("trip", "u1") == {"language": "fr"}


def test_a_user_cannot_be_remembered_past_the_cap(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    store = make_store(memory_cap_bytes=100, clock=clock)
    assert store.remember("trip", "u1", "a", "x" * 40, 60)  # 1 + 42 bytes
    assert store.remember("trip", "u1", "b", "é" * 20, 60)  # 1 + 42 bytes
    assert not store.remember("trip", "u1", "c", "y" * 20, 60)  # 1 + 22: over 100
    assert "not remembering c (23 bytes) for a user" in caplog.text
    assert store.remember("trip", "u1", "a", "z" * 50, 60)  # a replaced: 52 + 43 bytes
    assert set(store.recall("trip", "u1")) == {"a", "b"}
    clock.advance(61)  # expired vars no longer count
    assert store.remember("trip", "u1", "c", "y" * 90, 60)


def test_the_state_file_is_readable_by_the_server_alone(tmp_path: Path) -> None:
    """Remembered vars are users' data (emails, order numbers): not for other local users."""
    store = Store.from_url(None, state_dir=tmp_path / "state")
    store.prepare()
    assert store.remember("bot", "u-1", "email", "a@example.com", 60)
    for path in (tmp_path / "state").iterdir():
        if path.name.startswith("engine.sqlite3"):
            assert path.stat().st_mode & 0o077 == 0, path.name
