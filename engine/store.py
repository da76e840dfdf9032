"""Where rate-limit counters and remembered vars live: one SQLite file, or Redis.

By default (no `REDIS_URL`) both live in `<STATE_DIR>/engine.sqlite3` on the server's own
disk (STATE_DIR defaults to `.state` in the folder the server runs in, as `.env` does). The
master creates it before forking (`Store.prepare`), every worker opens it, so a limit counts
exactly across the workers of one server with no extra service, and remembered vars survive
restarts and deploys. It must be a local disk: SQLite's locks do not hold over NFS.

Each write is one SQLite write transaction (`BEGIN IMMEDIATE`, or a single UPSERT), in WAL
mode so readers never wait for writers; writers among the engine's processes take turns on a
`flock` (`_WriteLock`). Expired rows are swept by whichever process writes first after a
minute. With `REDIS_URL` both live in Redis, so every machine behind a load balancer shares
one count; the counters are `limits`' own Redis storage. All of a turn's limits are counted
in one round trip (`incr_until_refused`): one write transaction, or one Lua script.

Under gevent: sqlite3 is C and never yields, so a write cannot interleave with another
greenlet's; it holds the worker for its length (about 30 µs, bench/limits.py). redis-py is
pure Python over `socket`, so once gevent has patched it a Redis call waits cooperatively.

`Store` wraps either backend and fails open: when the backend raises, it logs once per
`log_every_seconds`, stops calling the backend for `recheck_seconds` and raises `StoreDown`,
which callers turn into "allowed" (or "refused", for a bot that asks to fail closed), an
empty recall and a skipped remember.

Over the 500-line budget on purpose: both backends and the wrapper that makes them fail
open stay side by side, so that their rules (expiry, the size cap, what counts as down) can
be read and kept the same in one place.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from limits.errors import StorageError
from limits.storage import MovingWindowSupport, RedisStorage, Storage

from .errors import EngineError

if TYPE_CHECKING:
    import redis

log = logging.getLogger("engine.store")

T = TypeVar("T")
Clock = Callable[[], float]

STATE_FILE = "engine.sqlite3"
REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
MEMORY_CAP_BYTES = 16 * 1024  # per bot and user: names plus JSON values, in UTF-8
_SWEEP_EVERY = 60.0  # seconds between sweeps of expired rows, per process
_MAKING_LOCKS = threading.Lock()  # held only to make a process's lock, never across a yield
_YIELD_FOR = 2e-3  # a write holds the file ~20 µs: retry at every chance this long, then each ms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at);
CREATE TABLE IF NOT EXISTS entries (key TEXT NOT NULL, at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_window ON entries (key, at);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
CREATE TABLE IF NOT EXISTS memory (
    bot TEXT NOT NULL, user TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (bot, user, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memory_expiry ON memory (expires_at);
"""

# What `limits`' fixed window does in Redis (incr_expire.lua), as one statement: a counter
# whose window has ended starts again at `amount`, with a new expiry. Parameters: key,
# amount, the expiry of a new window, now.
_INCR = """
INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN counters.expires_at <= ?4 THEN ?2 ELSE counters.value + ?2 END,
    expires_at = CASE WHEN counters.expires_at <= ?4 THEN ?3 ELSE counters.expires_at END
RETURNING value, expires_at
"""

# A turn's limits in one round trip: incr_expire.lua for each key in order, stopping at the
# first count over its limit. KEYS: the counters; ARGV: expiry in seconds, amount, limit, for
# each key in turn. Returns the counts, then the milliseconds left in the last one's window
# (0 when it was allowed).
_REDIS_INCR_UNTIL_REFUSED = """
local counted = {}
for i, key in ipairs(KEYS) do
  local amount, limit = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local used = redis.call('INCRBY', key, amount)
  if used == amount then
    redis.call('EXPIRE', key, ARGV[3 * i - 2])
  end
  counted[i] = used
  if used > limit then
    counted[i + 1] = redis.call('PTTL', key)
    return counted
  end
end
counted[#counted + 1] = 0
return counted
"""

# Remembered vars in Redis: one hash per bot and user, each field "<expires_at> <json>". Field
# expiry needs Redis 7.4, so expired fields are dropped here and the key expires with its
# latest field. Refuses (0) a write that would take the user's vars over the cap.
_REDIS_REMEMBER = """
local now, name, stored = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local size, latest, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  local space = string.find(value, ' ', 1, true)
  local expires = tonumber(string.sub(value, 1, space - 1))
  if expires <= now then
    redis.call('HDEL', KEYS[1], field)
  elseif field ~= name then
    size = size + #field + #value - space
    latest = math.max(latest, expires)
  end
end
if size > cap then return 0 end
redis.call('HSET', KEYS[1], name, stored)
redis.call('PEXPIREAT', KEYS[1], math.ceil(latest * 1000))
return 1
"""


class StoreDown(EngineError):
    """The store could not be reached (or could not be opened, at start-up)."""


# One fixed-window hit: the counter's key, its window in seconds, the amount, the limit.
Hit = tuple[str, int, int, int]
# The counts after each hit made, in order, and the seconds left in the last one's window.
Counted = tuple[list[int], float]


class Backend(Protocol):
    """A `limits` storage that also keeps remembered vars (JSON text with an expiry)."""

    description: str

    @property
    def counters(self) -> Storage: ...

    def now(self) -> float: ...

    def errors(self) -> tuple[type[Exception], ...]: ...

    def prepare(self) -> None: ...

    def incr_until_refused(self, hits: Sequence[Hit]) -> Counted: ...

    def put_memory(
        self, bot: str, user: str, name: str, encoded: str, expires_at: float, cap: int
    ) -> bool: ...

    def get_memory(self, bot: str, user: str) -> dict[str, str]: ...

    def drop_memory(self, bot: str, user: str) -> None: ...


class _WriteLock:
    """One writer at a time among processes: `flock` on `<file>.lock`, retried without sleeping.

    Why not SQLite's own lock alone: a writer that finds it taken sleeps in SQLite's busy
    handler, in C, 1 ms, then 2, 5, 10 ..., holding its whole gevent worker. Here a waiter
    retries each time the other greenlets (or threads) have had their turn, so it goes on
    as soon as the other process's write (about 20 µs) is done and its own worker keeps
    serving meanwhile; after 2 ms it retries once a millisecond. SQLite's own lock is then
    never contended among the engine's processes (other programs still get busy_timeout).
    bench/limits.py's `paced` rows compare the two.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd = -1
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self.acquire()
        try:
            yield
        finally:
            self.release(fd)

    def acquire(self) -> int:
        """Take the lock; the descriptor to `release` it with."""
        fd = self._descriptor()
        self._acquire(fd)
        return fd

    @staticmethod
    def release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # a forked child shares the parent's open file, and
            if self._fd >= 0:  # flock locks belong to that: open our own
                os.close(self._fd)
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _acquire(self, fd: int) -> None:
        start = time.monotonic()
        patient_after, deadline = start + _YIELD_FOR, start + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise sqlite3.OperationalError(
                        f"{self.path} was held by another process for over {self.timeout:g} s"
                    ) from None
            # sleep(0) lets other greenlets (threads) run and comes straight back; a real
            # sleep under gevent lasts at least a millisecond (the event loop's resolution).
            time.sleep(0 if now < patient_after else 1e-3)


class SqliteStorage(Storage, MovingWindowSupport):
    """`limits` storage in one SQLite file shared by the processes of one machine.

    One connection per process, opened on first use. A connection inherited through fork is
    kept but never used or closed: closing its descriptor would drop this process's own
    POSIX locks on the file, which SQLite relies on (see "How To Corrupt An SQLite Database").
    A per-process lock serialises threads and greenlets; inside it nothing yields but the
    wait for another process's write (`_WriteLock`). `:memory:` is a database of this
    process alone (for `engine test` and `engine chat`), with no file and no `_WriteLock`.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 1.0, clock: Clock = time.time):
        super().__init__(str(path), wrap_exceptions=True)
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self.clock = clock
        in_process = self.path == ":memory:"
        self.description = "an in-process SQLite database" if in_process else f"SQLite {path}"
        self._writers = None if in_process else _WriteLock(f"{path}.lock", busy_timeout)
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._inherited: list[sqlite3.Connection] = []
        self._lock, self._lock_pid = threading.Lock(), 0
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error, OSError)

    @property
    def counters(self) -> Storage:
        return self

    def now(self) -> float:
        return self.clock()

    def errors(self) -> tuple[type[Exception], ...]:
        return self.base_exceptions

    def prepare(self) -> None:
        """Create the folder, the file and its tables, then close, so no fork inherits it."""
        with self._write() as db:
            db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        if self._db is not None:
            self._inherited.append(self._db)  # forked: see the class docstring
        if self._writers is not None:  # a file: remembered vars are users' data, ours alone
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).touch(mode=0o600)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; a power cut may
        db.executescript(_SCHEMA)  # lose the last counts, which is fine for rate limits
        self._db, self._pid = db, os.getpid()
        return db

    def _process_lock(self) -> threading.Lock:
        """This process's lock, made in it: never one a fork copied while held, and made
        after gevent's patching (which precedes any request), so waiting for it yields."""
        if self._lock_pid != os.getpid():
            with _MAKING_LOCKS:
                if self._lock_pid != os.getpid():
                    self._lock, self._lock_pid = threading.Lock(), os.getpid()
        return self._lock

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._process_lock():  # in WAL mode readers never wait for a writer
            yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._process_lock():
            if self._writers is None:
                yield self._connection()
                return
            with self._writers.held():
                yield self._connection()

    @contextmanager
    def _transaction(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """A write transaction, taken at once (no read-then-upgrade that could fail busy)."""
        with self._write() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db, self.clock()
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _sweep(self, db: sqlite3.Connection, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY
        for table in ("counters", "entries", "memory"):
            db.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))

    # What the fixed-window strategy needs.

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        with self._write() as db:
            now = self.clock()
            self._sweep(db, now)
            # fetchall: the statement (and so its implicit transaction) ends here.
            return int(db.execute(_INCR, (key, amount, now + expiry, now)).fetchall()[0][0])

    def incr_until_refused(self, hits: Sequence[Hit]) -> Counted:
        """Count each hit in order, stopping after the first whose count passes its limit:
        one write transaction, so one commit however many limits a turn has (one hit is one
        UPSERT, its own transaction).

        `_transaction` written out: this runs once per limited turn, and its three nested
        context managers cost about 7 µs of a 3-limit turn's 40 (bench/limits.py)."""
        with self._process_lock():
            writers = self._writers
            fd = -1 if writers is None else writers.acquire()  # makes the folder, if need be
            try:
                db = self._connection()
                now = self.clock()
                if len(hits) == 1:
                    self._sweep(db, now)
                    ((key, expiry, amount, limit),) = hits
                    ((used, expires_at),) = db.execute(_INCR, (key, amount, now + expiry, now))
                    return [used], (expires_at - now if used > limit else 0.0)
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._sweep(db, now)
                    counts, reset_in = self._incr_in_order(db, now, hits)
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return counts, reset_in
            finally:
                if writers is not None:
                    writers.release(fd)

    @staticmethod
    def _incr_in_order(db: sqlite3.Connection, now: float, hits: Sequence[Hit]) -> Counted:
        counts: list[int] = []
        for key, expiry, amount, limit in hits:
            ((used, expires_at),) = db.execute(_INCR, (key, amount, now + expiry, now))
            counts.append(used)
            if used > limit:
                return counts, expires_at - now
        return counts, 0.0

    def get(self, key: str) -> int:
        with self._read() as db:
            sql = "SELECT value FROM counters WHERE key = ? AND expires_at > ?"
            row = db.execute(sql, (key, self.clock())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        with self._read() as db:
            now = self.clock()
            sql = "SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?"
            row = db.execute(sql, (key, now)).fetchone()
        return float(row[0]) if row else now

    def check(self) -> bool:
        try:
            with self._read() as db:
                db.execute("SELECT 1").fetchall()
        except self.base_exceptions:
            return False
        return True

    def reset(self) -> int | None:
        with self._transaction() as (db, _):
            return sum(
                db.execute(f"DELETE FROM {table}").rowcount for table in ("counters", "entries")
            )

    def clear(self, key: str) -> None:
        with self._transaction() as (db, _):
            db.execute("DELETE FROM counters WHERE key = ?", (key,))
            db.execute("DELETE FROM entries WHERE key = ?", (key,))

    # What the moving-window strategy needs: one row per hit.

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        with self._transaction() as (db, now):
            self._sweep(db, now)
            sql = "SELECT count(*) FROM entries WHERE key = ? AND at > ?"
            if db.execute(sql, (key, now - expiry)).fetchone()[0] + amount > limit:
                return False
            rows = [(key, now, now + expiry)] * amount
            db.executemany("INSERT INTO entries (key, at, expires_at) VALUES (?, ?, ?)", rows)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        with self._read() as db:
            now = self.clock()
            sql = "SELECT min(at), count(*) FROM entries WHERE key = ? AND at > ?"
            oldest, count = db.execute(sql, (key, now - expiry)).fetchone()
        return (float(oldest), int(count)) if count else (now, 0)

    # Remembered vars.

    def put_memory(
        self, bot: str, user: str, name: str, encoded: str, expires_at: float, cap: int
    ) -> bool:
        with self._transaction() as (db, now):
            self._sweep(db, now)
            sql = (
                "SELECT coalesce(sum(length(CAST(name AS BLOB)) + length(CAST(value AS BLOB))), 0)"
                " FROM memory WHERE bot = ? AND user = ? AND name != ? AND expires_at > ?"
            )
            others = db.execute(sql, (bot, user, name, now)).fetchone()[0]
            if others + _size(name, encoded) > cap:
                return False
            db.execute(
                "INSERT OR REPLACE INTO memory (bot, user, name, value, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (bot, user, name, encoded, expires_at),
            )
            return True

    def get_memory(self, bot: str, user: str) -> dict[str, str]:
        with self._read() as db:
            sql = "SELECT name, value FROM memory WHERE bot = ? AND user = ? AND expires_at > ?"
            return dict(db.execute(sql, (bot, user, self.clock())).fetchall())

    def drop_memory(self, bot: str, user: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM memory WHERE bot = ? AND user = ?", (bot, user))


class RedisBackend(RedisStorage):
    """`limits`' Redis storage, with short timeouts and remembered vars beside the counters.

    redis-py's defaults would retry a refused connection 10 times with backoff and wait 5 s
    for a silent server, per call; here a call fails within `timeout` seconds (one retry on
    a fresh connection covers a server that restarted), and `Store` then stops calling.
    """

    PREFIX = "engine"

    def __init__(self, url: str, timeout: float = 0.5, clock: Clock = time.time):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.clock = clock
        self.description = f"Redis {redact(url)}"
        pool = redis.ConnectionPool.from_url(
            url.replace("redis+unix://", "unix://"),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Retry only a refused or dropped connection, not a server too slow to answer.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        super().__init__(url, connection_pool=pool, key_prefix=self.PREFIX, wrap_exceptions=True)

    def initialize_storage(self, _uri: str) -> None:
        super().initialize_storage(_uri)
        self._remember = self.get_connection().register_script(_REDIS_REMEMBER.encode())
        self._incr_until_refused = self.get_connection().register_script(
            _REDIS_INCR_UNTIL_REFUSED.encode()
        )

    @property
    def counters(self) -> Storage:
        return self

    @property
    def client(self) -> redis.Redis:
        return self.get_connection()  # type: ignore[return-value]  # limits' union of clients

    def now(self) -> float:
        return self.clock()

    def get_expiry(self, key: str) -> float:
        """When the key's window ends, to the millisecond (`limits` rounds to a second)."""
        milliseconds = int(self.client.pttl(self.prefixed_key(key)))
        return max(milliseconds, 0) / 1000 + self.clock()

    def errors(self) -> tuple[type[Exception], ...]:
        import redis

        return (redis.RedisError,)

    def incr_until_refused(self, hits: Sequence[Hit]) -> Counted:
        """Count each hit in order, stopping after the first whose count passes its limit:
        one script (EVALSHA), so one round trip however many limits a turn has."""
        keys: list[str] = []
        args: list[int] = []
        for key, expiry, amount, limit in hits:
            keys.append(self.prefixed_key(key))
            args += (expiry, amount, limit)
        *counts, milliseconds = self._incr_until_refused(keys, args)
        return counts, max(milliseconds, 0) / 1000

    def prepare(self) -> None:
        """Check the server answers (a down Redis only logs: answers fail open)."""
        self.client.ping()

    def _memory_key(self, bot: str, user: str) -> str:
        return f"{self.PREFIX}:memory:{quote(bot, safe='')}:{quote(user, safe='')}"

    def put_memory(
        self, bot: str, user: str, name: str, encoded: str, expires_at: float, cap: int
    ) -> bool:
        stored = f"{expires_at!r} {encoded}"
        args: list[str | float] = [
            self.clock(),
            name,
            stored,
            _size(name, encoded),
            expires_at,
            cap,
        ]
        return bool(self._remember([self._memory_key(bot, user)], args))

    def get_memory(self, bot: str, user: str) -> dict[str, str]:
        now, fields = self.clock(), self.client.hgetall(self._memory_key(bot, user))
        kept = {}
        for name, value in fields.items():
            expires, _, encoded = _text(value).partition(" ")
            if float(expires) > now:
                kept[_text(name)] = encoded
        return kept

    def drop_memory(self, bot: str, user: str) -> None:
        self.client.delete(self._memory_key(bot, user))


class Store:
    """Counters and remembered vars, failing open when the backend is unreachable."""

    def __init__(
        self,
        backend: Backend,
        *,
        memory_cap_bytes: int = MEMORY_CAP_BYTES,
        recheck_seconds: float = 2.0,
        log_every_seconds: float = 60.0,
    ) -> None:
        self.backend = backend
        self.memory_cap_bytes = memory_cap_bytes
        self.recheck_seconds = recheck_seconds
        self.log_every_seconds = log_every_seconds
        self._errors: tuple[type[Exception], ...] = (StorageError, *backend.errors())
        self._retry_at = 0.0  # time.monotonic() before which the backend is not called
        self._down_since: float | None = None
        self._logged_at = 0.0
        self._failures = 0  # since the last report

    @classmethod
    def from_url(
        cls,
        url: str | None,
        *,
        state_dir: Path = Path(".state"),
        clock: Clock = time.time,
        timeout: float = 0.5,
        **options: Any,
    ) -> Store:
        """Redis for `redis://`, `rediss://`, `redis+unix://`; else SQLite in `state_dir`.

        `memory://` is a SQLite database in this process only (`engine test`, `engine chat`).
        `timeout` bounds each Redis call (connecting, then each reply), in seconds.
        """
        if not url:
            return cls(SqliteStorage(state_dir / STATE_FILE, clock=clock), **options)
        scheme = urlsplit(url).scheme
        if scheme == "memory":
            return cls(SqliteStorage(":memory:", clock=clock), **options)
        if scheme in REDIS_SCHEMES:
            return cls(RedisBackend(url, timeout, clock), **options)
        raise ValueError(
            f"REDIS_URL: got {redact(url)!r}; expected a URL starting redis://, rediss:// or "
            "redis+unix:// (unset, limits and remembered vars stay in a file on this server)"
        )

    @property
    def storage(self) -> Storage:
        """The `limits` storage, for `limits`' strategies."""
        return self.backend.counters

    @property
    def description(self) -> str:
        return self.backend.description

    def now(self) -> float:
        """The backend's wall clock (injectable in tests)."""
        return self.backend.now()

    def prepare(self) -> None:
        """At start-up, in the master: a state file that cannot be made stops the server;
        an unreachable Redis is only logged, since answers fail open."""
        try:
            self.backend.prepare()
        except self._errors as exc:
            if isinstance(self.backend, SqliteStorage):
                raise StoreDown(f"cannot open {self.description}: {_reason(exc)}") from exc
            log.warning(
                "%s is unreachable at start (%s); limits fail open", self.description, _reason(exc)
            )

    def run(self, op: Callable[[], T]) -> T:
        """`op()`, or StoreDown if the backend fails now or failed under `recheck_seconds` ago."""
        now = time.monotonic()
        if now < self._retry_at:
            self._failures += 1
            raise StoreDown(f"{self.description} is unreachable")
        try:
            result = op()
        except self._errors as exc:
            self._failed(exc, now)
            raise StoreDown(f"{self.description} is unreachable: {_reason(exc)}") from exc
        if self._down_since is not None:
            log.warning(
                "%s is reachable again after %.0f s", self.description, now - self._down_since
            )
            self._down_since, self._failures = None, 0
        return result

    def _failed(self, exc: BaseException, now: float) -> None:
        self._retry_at = now + self.recheck_seconds
        self._failures += 1
        first = self._down_since is None
        if first:
            self._down_since = now
        if first or now - self._logged_at >= self.log_every_seconds:
            log.error(
                "%s is unreachable (%s): limits fail open (or closed, where a bot asks), "
                "remembered vars are neither read nor kept; %d failed calls since the last "
                "report, next report in %.0f s at the earliest",
                self.description,
                _reason(exc),
                self._failures,
                self.log_every_seconds,
            )
            self._logged_at, self._failures = now, 0

    def remember(self, bot: str, user: str, name: str, value: Any, ttl_seconds: float) -> bool:
        """Keep a JSON value for this bot's user for `ttl_seconds`; False if not kept
        (the store is down, or the user's vars would pass `memory_cap_bytes`)."""
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        expires_at = self.now() + ttl_seconds
        put = self.backend.put_memory
        cap = self.memory_cap_bytes
        try:
            kept = self.run(lambda: put(bot, user, name, encoded, expires_at, cap))
        except StoreDown:
            return False
        if not kept:
            log.warning(
                "bot %s: not remembering %s (%d bytes) for a user: their remembered vars would "
                "pass %d bytes",
                bot,
                name,
                _size(name, encoded),
                cap,
            )
        return kept

    def recall(self, bot: str, user: str) -> dict[str, Any]:
        """This bot's remembered vars for the user, unexpired; {} when the store is down."""
        try:
            stored = self.run(lambda: self.backend.get_memory(bot, user))
        except StoreDown:
            return {}
        return {name: json.loads(encoded) for name, encoded in stored.items()}

    def forget(self, bot: str, user: str) -> bool:
        """Drop everything this bot remembers about the user; False when the store is down."""
        try:
            self.run(lambda: self.backend.drop_memory(bot, user))
        except StoreDown:
            return False
        return True


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for logs and error messages: in the
    `user:password@` part, and in a `?password=` query, which redis-py reads too."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    if parts.query:
        query = re.sub(r"(?i)((?:^|&)(?:password|username)=)[^&]*", r"\1***", parts.query)
        parts = parts._replace(query=query)
    return parts.geturl()


def _size(name: str, encoded: str) -> int:
    return len(name.encode()) + len(encoded.encode())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _reason(exc: BaseException) -> str:
    cause = exc.storage_error if isinstance(exc, StorageError) else exc
    return f"{type(cause).__name__}: {cause}"
