"""One request budget per API, shared by every thread and every process that calls it.

Dagster runs each step in its own process and backfills as concurrent runs, so a limiter held in
memory would give each process the whole budget. The budget therefore lives in a store:

- ``sqlite`` (default): a file under the state directory, guarded by a file lock; shared by all
  processes of one machine.
- ``postgres`` / ``redis``: shared by every machine that reaches the server.

Budgets are moving windows (pyrate-limiter's sliding log), several at once (``10/s`` and
``1000/h``). A 429's ``Retry-After`` is published to the same store as a *pause*, so every worker
of that API waits, not just the one that was told. The same store keeps what else every worker of an
API must share (the ``SharedBoard``): a refresh token that the provider rotates, renewed by one worker at
a time and kept for the next run.

What the API itself says of its budget is read here too (``RateLimitHeaders``): the reset and remaining
headers of each answer, in their common spellings, become the pauses and the announced budget that
every worker follows; the HTTP client only hands the headers over.
"""

from __future__ import annotations

import email.utils
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyrate_limiter import Limiter
from pyrate_limiter import Rate as PyrateRate

from sync_assets.errors import ConfigurationError
from sync_assets.redaction import get_logger
from sync_assets.secrets import Env, Secret, resolve_secret

log = get_logger(__name__)

# How long a process trusts its last look at the shared pause before looking again. A 429 pause is
# at least a second, so this delays nobody much and keeps the store off the hot path.
_PAUSE_POLL_SECONDS = 0.2


class Rate(BaseModel):
    """At most ``requests`` requests in any window of ``per`` (seconds, or an ISO 8601 duration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    requests: int = Field(gt=0)
    per: timedelta

    def __init__(self, requests: int | None = None, /, **data: Any) -> None:
        if requests is not None:
            data["requests"] = requests
        super().__init__(**data)

    @field_validator("per")
    @classmethod
    def _positive(cls, per: timedelta) -> timedelta:
        if per.total_seconds() < 0.001:
            raise ValueError("per must be a positive duration, e.g. 60 (seconds) or PT1M")
        return per


SHARED_BUDGET_ENV = "SYNC_ASSETS_RATE_LIMIT_URL"


class RateLimitStore(BaseModel):
    """Where budgets and pauses are kept; ``url`` is a Postgres DSN or a Redis URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sqlite", "postgres", "redis"] = "sqlite"
    url: Secret | None = Field(None, description="postgresql://... or redis://...; unused for sqlite.")

    @classmethod
    def deployment_default(cls) -> RateLimitStore | None:
        """The budget store an operator set for every source that names none (``SYNC_ASSETS_RATE_LIMIT_URL``).

        One variable moves every budget of a deployment onto PostgreSQL or Redis, as a multi-machine
        deployment needs, without editing sources.
        """
        url = os.environ.get(SHARED_BUDGET_ENV, "")
        if not url:
            return None
        kind = "redis" if url.startswith(("redis://", "rediss://")) else "postgres"
        return cls(kind=kind, url=Env(env=SHARED_BUDGET_ENV))


T = TypeVar("T")
Renewal = Callable[[str | None], tuple[str, T]]
"""Given the value kept in a slot (None: nothing kept yet), what to keep instead and what to hand back."""


class SharedBoard(Protocol):
    """What every worker of an API shares besides its budget, in the budget's store."""

    def get(self) -> float:
        """Until when (epoch seconds) the API is paused after a 429."""

    def set(self, until: float) -> None:
        """Pause the API until ``until``, unless it already is for longer."""

    def rotate(self, slot: str, renew: Renewal[T]) -> T:
        """Run ``renew`` on the value kept in ``slot`` and keep what it returns, one worker at a time
        across every process and machine of the store: a value used once (a rotating refresh token) is
        never used twice, and the next run finds the newest."""


class _SqliteBoard:
    def __init__(self, path: Path, key: str) -> None:
        self._key, self._path = key, path
        self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("CREATE TABLE IF NOT EXISTS pauses (key TEXT PRIMARY KEY, until REAL NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS rotations (slot TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self) -> float:
        with self._lock:
            row = self._conn.execute("SELECT until FROM pauses WHERE key = ?", (self._key,)).fetchone()
        return float(row[0]) if row else 0.0

    def set(self, until: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO pauses (key, until) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until)",
                (self._key, until),
            )

    def rotate(self, slot: str, renew: Renewal[T]) -> T:
        # A file lock, not SQLite's: the budget's buckets share this database, and a token request must
        # not hold their writes up.
        with self._lock, FileLock(self._path.with_name(f"{self._path.name}.rotation.lock"), timeout=300):
            slot = f"{self._key}:{slot}"
            row = self._conn.execute("SELECT value FROM rotations WHERE slot = ?", (slot,)).fetchone()
            kept, result = renew(row[0] if row else None)
            self._conn.execute("INSERT INTO rotations (slot, value) VALUES (?, ?) "
                               "ON CONFLICT(slot) DO UPDATE SET value = excluded.value", (slot, kept))
        return result


class _PostgresBoard:
    def __init__(self, pool: Any, key: str) -> None:
        self._pool, self._key = pool, key
        with pool.connection() as conn, conn.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS races in Postgres; an advisory lock serialises it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('sync_assets_pauses'))")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS sync_assets_pauses (key TEXT PRIMARY KEY, until DOUBLE PRECISION)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS sync_assets_rotations (slot TEXT PRIMARY KEY, "
                         "value TEXT NOT NULL)")

    def get(self) -> float:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT until FROM sync_assets_pauses WHERE key = %s", (self._key,)).fetchone()
        return float(row[0]) if row else 0.0

    def set(self, until: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO sync_assets_pauses (key, until) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET until = GREATEST(sync_assets_pauses.until, EXCLUDED.until)",
                (self._key, until),
            )

    def rotate(self, slot: str, renew: Renewal[T]) -> T:
        slot = f"{self._key}:{slot}"
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sync_assets_rotation:{slot}",))
            row = conn.execute("SELECT value FROM sync_assets_rotations WHERE slot = %s", (slot,)).fetchone()
            kept, result = renew(row[0] if row else None)
            conn.execute("INSERT INTO sync_assets_rotations (slot, value) VALUES (%s, %s) ON CONFLICT (slot) "
                         "DO UPDATE SET value = EXCLUDED.value", (slot, kept))
        return result


class _RedisBoard:
    """A one-member sorted set: ``ZADD GT`` only ever moves the pause later, atomically."""

    def __init__(self, client: Any, key: str) -> None:
        self._client, self._api, self._key = client, key, f"sync_assets:pause:{key}"

    def get(self) -> float:
        value = self._client.zscore(self._key, "until")
        return float(value) if value else 0.0

    def set(self, until: float) -> None:
        self._client.zadd(self._key, {"until": until}, gt=True)
        self._client.expireat(self._key, int(until) + 60, gt=True)

    def rotate(self, slot: str, renew: Renewal[T]) -> T:
        key = f"sync_assets:rotation:{self._api}:{slot}"
        with self._client.lock(f"{key}:lock", timeout=300, blocking_timeout=300):
            value = self._client.get(key)
            kept, result = renew(value.decode() if value is not None else None)
            self._client.set(key, kept)
        return result


class _ThreadsFirstLock:
    """The SQLite budget's file lock, taken by one thread of this process at a time.

    ``filelock`` polls every 50 ms while another holder has the file, and it was every thread of a
    step contending for it: each window of a budget started up to 50 ms late, per thread in line.
    Now threads queue on a thread lock (handed over at once), and only the thread holding it polls
    for the file lock, which other processes hold only for the instant of a count.
    """

    _POLL_SECONDS = 0.002

    def __init__(self, file_lock: Any) -> None:
        self._threads, self._file = threading.RLock(), file_lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._threads.acquire(blocking, timeout):
            return False
        try:
            self._file.acquire(timeout=-1 if blocking and timeout == -1 else max(timeout, 0) if blocking else 0,
                               poll_interval=self._POLL_SECONDS)
        except Timeout:
            self._threads.release()
            return False
        return True

    def release(self) -> None:
        self._file.release()
        self._threads.release()

    def __enter__(self) -> _ThreadsFirstLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- what an API says about its budget: the response headers that announce it ---


class RateLimitHeaders(BaseModel):
    """Which response headers announce an API's budget; defaults cover the common spellings.

    A reset header says how long until the budget refills: seconds (``Retry-After``, ``RateLimit-Reset``,
    the IETF ``RateLimit: ...;t=30`` or ``reset=30``) or, for the ``X-`` headers of many APIs, either
    seconds or an epoch timestamp (told apart by size). A remaining count of zero pauses every worker
    until that reset, before the API has to refuse anyone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    reset: list[str] = Field(default_factory=lambda: ["Retry-After", "RateLimit-Reset", "RateLimit",
                                                      "X-RateLimit-Reset"],
                             description="Headers that tell when the budget refills, first found wins.")
    remaining: list[str] = Field(default_factory=lambda: ["RateLimit-Remaining", "RateLimit",
                                                          "X-RateLimit-Remaining"],
                                 description="Headers that tell how many requests are left.")
    max_wait_seconds: float = Field(900, gt=0, description="Longer announced waits are capped to this, and logged.")


_EPOCH_AFTER = 1_000_000_000  # a reset this large is a Unix timestamp (2001 on), not a delay in seconds


def _header_number(name: str, value: str, key: str) -> float | None:
    """A header's number: plain, or the ``key``/``r``/``t`` parameter of the IETF structured ``RateLimit``."""
    if name.lower() == "ratelimit":
        for part in value.replace(",", ";").split(";"):
            field, _, number = part.strip().partition("=")
            if field.strip().lower() in ({"reset", "t"} if key == "reset" else {"remaining", "r"}):
                value = number
                break
        else:
            return None
    try:
        return float(value.strip().strip('"'))
    except ValueError:
        return None


def _reset_seconds(name: str, value: str) -> float | None:
    """Seconds until a reset header's moment: a delay, an epoch timestamp, or an HTTP date (Retry-After)."""
    number = _header_number(name, value, "reset")
    if number is not None:
        return number - time.time() if number >= _EPOCH_AFTER else number
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None  # unreadable: back off on our own


def _announced_reset(headers: Mapping[str, str], names: RateLimitHeaders) -> tuple[float, str, str] | None:
    """The seconds until the reset a header announces, uncapped, with that header's name and value."""
    for name in names.reset:
        value = headers.get(name)
        seconds = _reset_seconds(name, value) if value else None
        if value and seconds is not None:
            return seconds, name, value
    return None


def announced_wait(headers: Mapping[str, str], names: RateLimitHeaders, where: str) -> tuple[float, str] | None:
    """How long the API says to wait before the next request (capped), and the header that said so."""
    announced = _announced_reset(headers, names)
    if announced is None:
        return None
    seconds, name, value = announced
    if seconds > names.max_wait_seconds:
        log.warning("%s announced a wait of %.0fs (%s: %s); waiting %.0fs, the source's max_wait_seconds",
                    where, seconds, name, value, names.max_wait_seconds)
        return names.max_wait_seconds, f"{name}: {value}"
    return max(0.0, seconds), f"{name}: {value}"


def announced_reset_seconds(headers: Mapping[str, str], names: RateLimitHeaders) -> float | None:
    """The seconds until the announced reset, capped like a wait, but said nowhere: every answer carries it."""
    announced = _announced_reset(headers, names)
    return None if announced is None else min(max(0.0, announced[0]), names.max_wait_seconds)


def announced_remaining(headers: Mapping[str, str], names: RateLimitHeaders) -> int | None:
    """How many requests a remaining-count header says are left until the reset; None if none says."""
    for name in names.remaining:
        value = headers.get(name)
        number = _header_number(name, value, "remaining") if value else None
        if number is not None:
            return int(number)
    return None


class AnnouncedBudget:
    """What the API's own headers (a remaining count and its reset) leave to the threads of one client.

    Answers come back in another order than the API counted their requests, so no single answer tells what
    is left now. The least count told since the budget last refilled is what was left after the latest
    request the API counted among those answered; every request still on its way may be counted after
    it. A thread may therefore send while that least count exceeds the requests on their way. The least
    count starts again from the first answer to a request sent after the announced reset has passed.

    Until an answer says what is left (at the start, and once a spent budget's reset has passed) one
    request goes at a time, so threads never race into a refusal; after a 2xx answer announcing nothing,
    nobody is held back. Other processes' requests are not seen here: across processes, the limiter's
    pause at a spent budget and the retry of a refusal still apply.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._least: int | None = None  # the least remaining count told since the last refill
        self._silent = False  # the last 2xx answer announced nothing
        self._reset_at = 0.0  # time.time() when the API said the budget refills
        self._sent = 0
        self._on_their_way = 0
        self._refill_from = 1  # the first ticket taken after the last reset passed
        self._counted_from = 0  # the ticket whose answer started the current least count

    def _room(self) -> bool:
        if self._silent or (self._least is not None and self._least > self._on_their_way):
            return True
        return self._on_their_way == 0 and time.time() >= self._reset_at  # one request may ask

    def take(self) -> tuple[int, float]:
        """Wait until what is left has room for one more request: its ticket, and the seconds waited."""
        started = time.monotonic()
        with self._changed:
            while not self._room():
                wait = self._reset_at - time.time()
                self._changed.wait(wait if wait > 0 else None)
            self._sent += 1
            self._on_their_way += 1
            if time.time() >= self._reset_at and self._refill_from <= self._counted_from:
                self._refill_from = self._sent
            return self._sent, time.monotonic() - started

    def answered(self, ticket: int, remaining: int | None, ok: bool, reset_seconds: float | None) -> None:
        """Take in an answer: ``remaining`` and the seconds until the reset as its headers say (None: they do
        not say), and whether it is a 2xx (only those tell that an API announces nothing)."""
        with self._changed:
            self._on_their_way -= 1
            if remaining is None:
                self._silent = self._silent or ok
            else:
                self._silent = False
                refilled = ticket >= self._refill_from > self._counted_from
                if refilled or self._least is None or remaining < self._least:
                    self._least = remaining
                    self._reset_at = time.time() + (reset_seconds or 0.0)
                if refilled:
                    self._counted_from = ticket
            self._changed.notify_all()

    def unanswered(self) -> None:
        """A request that got no answer (a timeout, a broken connection) is no longer on its way."""
        with self._changed:
            self._on_their_way -= 1
            self._changed.notify_all()


class SharedRateLimiter:
    """Blocks each request until every budget of the API has room and no pause is in force."""

    def __init__(
        self, key: str, rates: list[Rate], store: RateLimitStore, state_dir: Path, margin_seconds: float = 0.1
    ) -> None:
        """``margin_seconds`` widens every window: a request counted here at t reaches the API a little
        later, by a delay that varies (connection set-up, scheduling), so requests spaced exactly one
        window apart here can land inside one window there."""
        self.key = key
        pyrate_rates = sorted(
            (PyrateRate(r.requests, int((r.per.total_seconds() + margin_seconds) * 1000)) for r in rates),
            key=lambda r: r.interval,
        )
        self._limiter: Limiter | None = None
        self._closers: list[Any] = []
        bucket = self._open(store, pyrate_rates, state_dir)
        if bucket is not None:
            self._limiter = Limiter(bucket)
        self._pause_seen_at = 0.0
        self._pause_until = 0.0

    def _open(self, store: RateLimitStore, rates: list[PyrateRate], state_dir: Path) -> Any:
        table = f"rate_{self.key}"
        if store.kind == "sqlite":
            from pyrate_limiter import SQLiteBucket

            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / "rate_limits.sqlite"
            self.board: SharedBoard = _SqliteBoard(path, self.key)
            if not rates:
                return None
            bucket = SQLiteBucket.init_from_file(rates, table=table, db_path=str(path), use_file_lock=True)
            bucket.lock = _ThreadsFirstLock(bucket.lock)  # type: ignore[assignment]  # before the Limiter takes it
            self._closers.append(bucket)
            return bucket
        if store.url is None:
            raise ConfigurationError(f"rate_limit_store.url is required for kind {store.kind!r}")
        url = resolve_secret(store.url, "rate_limit_store.url")
        if store.kind == "postgres":
            from psycopg_pool import ConnectionPool
            from pyrate_limiter import PostgresBucket

            # Not autocommit: pyrate-limiter takes its table locks per transaction.
            pool = ConnectionPool(url, min_size=1, max_size=4, open=True)
            self._closers.append(pool)
            self.board = _PostgresBoard(pool, self.key)
            return PostgresBucket(pool, table, rates) if rates else None
        import redis
        from pyrate_limiter import RedisBucket

        client = redis.Redis.from_url(url)
        self._closers.append(client)
        self.board = _RedisBoard(client, self.key)
        return RedisBucket.init(rates, client, f"sync_assets:rate:{self.key}") if rates else None

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds spent waiting (pauses included)."""
        started = time.monotonic()
        self._wait_out_pause()
        if self._limiter is not None:
            self._limiter.try_acquire(self.key, blocking=True)
        return time.monotonic() - started

    def pause(self, seconds: float) -> None:
        """Tell every worker of this API to hold off for ``seconds`` (a 429's Retry-After)."""
        until = time.time() + seconds
        self.board.set(until)
        self._pause_until = max(self._pause_until, until)

    def _wait_out_pause(self) -> None:
        """Sleep until no pause is in force; looked at again after each sleep, because a 429 answered
        meanwhile (to a request already on its way) may have moved the end later."""
        told = False
        while True:
            now = time.monotonic()
            if now - self._pause_seen_at >= _PAUSE_POLL_SECONDS:
                self._pause_until = max(self._pause_until, self.board.get())
                self._pause_seen_at = now
            remaining = self._pause_until - time.time()
            if remaining <= 0:
                return
            if not told:
                log.info("API %s paused by a 429: waiting %.1fs", self.key, remaining)
                told = True
            time.sleep(remaining)
            self._pause_seen_at = 0.0  # look at the board once more before going

    def close(self) -> None:
        if self._limiter is not None:
            self._limiter.close()
        for closer in self._closers:
            closer.close()
