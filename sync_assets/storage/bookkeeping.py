"""The store's bookkeeping as SQL that SQLite and PostgreSQL both speak: written once, used by every backend.

What lives here: each committed partition's state row; stages (a unit of work being read) with
their checkpoint, their staged pages (Arrow IPC, one row per page) and the items they finished
(a substream's parents); full refreshes and their chunks; each stream's columns, and the views that
show it. A page and the checkpoint that covers it are one transaction, so a killed read resumes
exactly after the last page it committed: nothing lost, nothing stored twice, no file to cut back.

A backend hands over a ``Dialect``: how to connect (one connection per thread), how a write
transaction begins, and the few DDL words that differ. Statements use ``?`` placeholders.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sync_assets.storage.layout import chunk_scope, refresh_scope

if TYPE_CHECKING:  # the engine's modules load pydantic; `sync-assets sql` opens the bookkeeping without them
    from sync_assets.windows import Window


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def copy(self, sql: str) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    connect: Callable[[], Any]
    begin: str  # starts a write transaction that takes the write lock at once
    blob: str  # the column type of staged pages
    placeholder: str = "?"
    schema_lock: str | None = None
    """Run first in the transaction that creates the tables (PostgreSQL: an advisory lock), so that
    processes opening a new store at once create each table once: ``IF NOT EXISTS`` alone races there.
    SQLite's ``BEGIN IMMEDIATE`` already takes its one write lock."""
    one_writer: bool = False
    """The database has one write lock (SQLite): threads of a process take turns on a lock of their own
    first, because SQLite makes a waiting writer sleep in growing steps (up to 100 ms) however soon
    the lock frees; waits between processes are rarer, and SQLite's own."""


@dataclass(frozen=True)
class PartitionState:
    """What is known about one committed partition."""

    partition_key: str
    window: Window | None
    records: int
    pages: int
    requests: int
    bytes_received: int
    max_cursor: datetime | None
    completed_at: datetime


@dataclass(frozen=True)
class Checkpoint:
    """Where a stage stands: ``pages`` pages and ``records`` records are committed; read on from ``token``."""

    records: int = 0
    pages: int = 0
    requests: int = 0
    bytes_received: int = 0
    token: Any = None
    done: bool = False


@dataclass(frozen=True)
class RefreshState:
    """A full refresh: its number, its status, and its chunks' start tokens."""

    refresh: int
    status: str
    chunks: dict[int, Any]


SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_partitions (
    source TEXT NOT NULL, stream TEXT NOT NULL, partition_key TEXT NOT NULL,
    window_start TEXT, window_end TEXT, records BIGINT NOT NULL, pages BIGINT NOT NULL,
    requests BIGINT NOT NULL, bytes_received BIGINT NOT NULL, max_cursor TEXT, completed_at TEXT NOT NULL,
    PRIMARY KEY (source, stream, partition_key));
CREATE TABLE IF NOT EXISTS sync_stages (
    scope TEXT PRIMARY KEY, records BIGINT NOT NULL, pages BIGINT NOT NULL, requests BIGINT NOT NULL,
    bytes_received BIGINT NOT NULL, token TEXT, done INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_stage_pages (
    scope TEXT NOT NULL, page BIGINT NOT NULL, batch {blob} NOT NULL, PRIMARY KEY (scope, page));
CREATE TABLE IF NOT EXISTS sync_stage_tokens (
    scope TEXT NOT NULL, fingerprint BIGINT NOT NULL, PRIMARY KEY (scope, fingerprint));
CREATE TABLE IF NOT EXISTS sync_stage_items (
    scope TEXT NOT NULL, item TEXT NOT NULL, PRIMARY KEY (scope, item));
CREATE TABLE IF NOT EXISTS sync_refreshes (
    source TEXT NOT NULL, stream TEXT NOT NULL, refresh BIGINT NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, chunks BIGINT, PRIMARY KEY (source, stream, refresh));
CREATE UNIQUE INDEX IF NOT EXISTS sync_one_running_refresh ON sync_refreshes (source, stream)
    WHERE status = 'running';
CREATE TABLE IF NOT EXISTS sync_chunks (
    source TEXT NOT NULL, stream TEXT NOT NULL, refresh BIGINT NOT NULL, chunk BIGINT NOT NULL,
    start_token TEXT, PRIMARY KEY (source, stream, refresh, chunk));
CREATE TABLE IF NOT EXISTS sync_columns (
    source TEXT NOT NULL, stream TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    position BIGINT NOT NULL, PRIMARY KEY (source, stream, name));
CREATE TABLE IF NOT EXISTS sync_views (
    source TEXT NOT NULL, stream TEXT NOT NULL, sql TEXT NOT NULL, applied INTEGER NOT NULL,
    PRIMARY KEY (source, stream));
"""

_STAGE_TABLES = ("sync_stage_pages", "sync_stage_tokens", "sync_stage_items", "sync_stages")
_PARTITION_COLUMNS = ("partition_key, window_start, window_end, records, pages, requests, bytes_received, "
                      "max_cursor, completed_at")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Bookkeeping:
    """Bookkeeping statements, each one transaction; ``transaction()`` groups several."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._local = threading.local()
        self._opened: list[Any] = []  # every connection of every thread, so that close() releases them all
        self._opened_lock = threading.Lock()
        self._generation = 0  # bumped by close(): a thread's connection from before is not used again
        self._writer = threading.Lock() if dialect.one_writer else contextlib.nullcontext()
        with self.transaction() as db:
            if dialect.schema_lock:
                db.execute(dialect.schema_lock)
            for statement in SCHEMA.format(blob=dialect.blob).split(";"):
                if statement.strip():
                    db.execute(statement)

    # --- connections and transactions ---

    def _connection(self, purpose: str = "conn") -> Any:
        """This thread's connection for ``purpose``: statements and transactions, or reading stages."""
        held = getattr(self._local, purpose, None)
        if held is None or held[0] != self._generation:
            conn = self.dialect.connect()
            with self._opened_lock:
                self._opened.append(conn)
                held = (self._generation, conn)
            setattr(self._local, purpose, held)
        return held[1]

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A write transaction (holding the write lock from its start): committed, or rolled back on error."""
        conn = self._connection()
        cursor = _Placeholders(conn.cursor(), self.dialect.placeholder)
        with self._writer:
            cursor.execute(self.dialect.begin)
            try:
                yield cursor
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def rows(self, sql: str, params: Sequence[Any] = (), purpose: str = "conn") -> list[Any]:
        conn = self._connection(purpose)
        cursor = _Placeholders(conn.cursor(), self.dialect.placeholder)
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            conn.commit()  # end the read transaction: PostgreSQL would hold its snapshot otherwise

    def close(self) -> None:
        """Close every connection this object opened, in any thread (a step's threads are gone by now; a
        process that runs many steps, a Celery worker, must not keep theirs). Usable again afterwards."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._generation += 1
        for conn in opened:
            with contextlib.suppress(Exception):  # a connection the server dropped is closed already
                conn.close()

    # --- partitions ---

    def save_partition(self, db: Cursor, source: str, stream: str, state: PartitionState) -> None:
        window = state.window
        db.execute(
            f"INSERT INTO sync_partitions (source, stream, {_PARTITION_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, stream, partition_key) DO UPDATE SET "
            "window_start = excluded.window_start, window_end = excluded.window_end, records = excluded.records, "
            "pages = excluded.pages, requests = excluded.requests, bytes_received = excluded.bytes_received, "
            "max_cursor = excluded.max_cursor, completed_at = excluded.completed_at",
            (source, stream, state.partition_key, _iso(window.start) if window else None,
             _iso(window.end) if window else None, state.records, state.pages, state.requests,
             state.bytes_received, _iso(state.max_cursor), state.completed_at.isoformat()),
        )

    def partition_states(self, source: str, stream: str) -> dict[str, PartitionState]:
        rows = self.rows(f"SELECT {_PARTITION_COLUMNS} FROM sync_partitions WHERE source = ? AND stream = ? "
                         "ORDER BY partition_key", (source, stream))
        return {row[0]: _partition_from_row(row) for row in rows}

    # --- stages ---

    def checkpoint(self, scope: str) -> Checkpoint | None:
        rows = self.rows("SELECT records, pages, requests, bytes_received, token, done FROM sync_stages "
                         "WHERE scope = ?", (scope,))
        if not rows:
            return None
        records, pages, requests, bytes_received, token, done = rows[0]
        return Checkpoint(records, pages, requests, bytes_received, json.loads(token) if token else None, bool(done))

    def stage_items(self, scope: str) -> set[str]:
        return {row[0] for row in self.rows("SELECT item FROM sync_stage_items WHERE scope = ?", (scope,))}

    def reset_stage(self, scope: str, checkpoint: Checkpoint) -> None:
        with self.transaction() as db:
            self.drop_stage(db, scope)
            self._save_checkpoint(db, scope, checkpoint)

    def append_page(self, scope: str, batch: bytes | None, checkpoint: Checkpoint, item: str | None) -> None:
        """A page and the checkpoint that covers it, in one transaction.

        The checkpoint's token is remembered too (``followed_tokens``): a resumed read of a refresh must
        know every page token followed before it, or a cursor that points back is followed into a page
        already staged, and its records are stored twice.
        """
        from sync_assets.pagination import token_fingerprint

        with self.transaction() as db:
            if checkpoint.token is not None:
                db.execute("INSERT INTO sync_stage_tokens (scope, fingerprint) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (scope, token_fingerprint(checkpoint.token)))
            if batch is not None:
                db.execute("INSERT INTO sync_stage_pages (scope, page, batch) VALUES (?, ?, ?)",
                           (scope, checkpoint.pages, batch))
            if item is not None:
                db.execute("INSERT INTO sync_stage_items (scope, item) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (scope, item))
            self._save_checkpoint(db, scope, checkpoint)

    def _save_checkpoint(self, db: Cursor, scope: str, c: Checkpoint) -> None:
        token = json.dumps(c.token) if c.token is not None else None
        db.execute(
            "INSERT INTO sync_stages (scope, records, pages, requests, bytes_received, token, done, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET records = excluded.records, "
            "pages = excluded.pages, requests = excluded.requests, bytes_received = excluded.bytes_received, "
            "token = excluded.token, done = excluded.done, updated_at = excluded.updated_at",
            (scope, c.records, c.pages, c.requests, c.bytes_received, token, int(c.done), _now()),
        )

    def staged_pages(self, scope: str) -> Iterator[bytes]:
        """The stage's pages in order, one at a time (memory holds one page, not the stage).

        Read on a connection of their own: a publish streams them into its transaction (PostgreSQL's
        ``COPY`` holds the transaction's connection while it runs).
        """
        numbers = [row[0] for row in self.rows("SELECT page FROM sync_stage_pages WHERE scope = ? ORDER BY page",
                                               (scope,), "reader")]
        for number in numbers:
            rows = self.rows("SELECT batch FROM sync_stage_pages WHERE scope = ? AND page = ?", (scope, number),
                             "reader")
            yield bytes(rows[0][0])

    def followed_tokens(self, prefix: str) -> set[int]:
        """The fingerprints of every token checkpointed by the stages whose scope starts with ``prefix``."""
        return {int(row[0]) for row in self.rows("SELECT fingerprint FROM sync_stage_tokens "
                                                  "WHERE substr(scope, 1, ?) = ?", (len(prefix), prefix))}

    def drop_stage(self, db: Cursor, scope: str) -> None:
        for table in _STAGE_TABLES:
            db.execute(f"DELETE FROM {table} WHERE scope = ?", (scope,))

    def drop_stages_under(self, db: Cursor, prefix: str) -> None:
        """Every stage whose scope starts with ``prefix`` (not LIKE: ``_`` is a wildcard there)."""
        for table in _STAGE_TABLES:
            db.execute(f"DELETE FROM {table} WHERE substr(scope, 1, ?) = ?", (len(prefix), prefix))

    # --- full refreshes ---

    def latest_refresh(self, source: str, stream: str, status: str | None = None) -> RefreshState | None:
        query = "SELECT refresh, status FROM sync_refreshes WHERE source = ? AND stream = ?"
        params: tuple[Any, ...] = (source, stream)
        if status:
            query, params = query + " AND status = ?", (*params, status)
        rows = self.rows(query + " ORDER BY refresh DESC LIMIT 1", params)
        if not rows:
            return None
        refresh, found = rows[0]
        chunks = self.rows("SELECT chunk, start_token FROM sync_chunks WHERE source = ? AND stream = ? "
                           "AND refresh = ? ORDER BY chunk", (source, stream, refresh))
        return RefreshState(refresh, found, {c: json.loads(t) if t else None for c, t in chunks})

    def next_refresh(self, source: str, stream: str) -> int:
        """The refresh a run would work on now: the running one, or the one after the latest."""
        running = self.latest_refresh(source, stream, "running")
        if running is not None:
            return running.refresh
        rows = self.rows("SELECT COALESCE(MAX(refresh), 0) FROM sync_refreshes WHERE source = ? AND stream = ?",
                         (source, stream))
        return int(rows[0][0]) + 1

    def refresh_finished_at(self, source: str, stream: str, refresh: int) -> datetime | None:
        rows = self.rows("SELECT finished_at FROM sync_refreshes WHERE source = ? AND stream = ? AND refresh = ?",
                         (source, stream, refresh))
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None

    def start_refresh(self, source: str, stream: str) -> RefreshState:
        """The running refresh, or a new one (from the first page); two runs starting at once get one."""
        with self.transaction() as db:
            db.execute("SELECT refresh FROM sync_refreshes WHERE source = ? AND stream = ? AND status = 'running'",
                       (source, stream))
            if db.fetchone() is None:
                db.execute("SELECT COALESCE(MAX(refresh), 0) FROM sync_refreshes WHERE source = ? AND stream = ?",
                           (source, stream))
                refresh = int(db.fetchone()[0]) + 1
                db.execute("INSERT INTO sync_refreshes (source, stream, refresh, status, started_at) "
                           "VALUES (?, ?, ?, 'running', ?) ON CONFLICT DO NOTHING", (source, stream, refresh, _now()))
                db.execute("INSERT INTO sync_chunks (source, stream, refresh, chunk, start_token) "
                           "VALUES (?, ?, ?, 0, NULL) ON CONFLICT DO NOTHING", (source, stream, refresh))
        state = self.latest_refresh(source, stream, "running")
        assert state is not None
        return state

    def chunk_checkpoints(self, source: str, stream: str, state: RefreshState) -> dict[int, Checkpoint | None]:
        """Where each chunk of a refresh stands, in reading order (``None``: not started)."""
        return {c: self.checkpoint(chunk_scope(source, stream, state.refresh, c)) for c in sorted(state.chunks)}

    def add_chunks(self, source: str, stream: str, refresh: int, start_tokens: dict[int, Any]) -> None:
        with self.transaction() as db:
            for chunk, token in start_tokens.items():
                db.execute("INSERT INTO sync_chunks (source, stream, refresh, chunk, start_token) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           (source, stream, refresh, chunk, json.dumps(token)))

    def set_chunk_start(self, source: str, stream: str, refresh: int, chunk: int, start_token: Any) -> None:
        """Register ``chunk`` at ``start_token``, or move its start there if nothing of it is read yet.

        A chunk re-read after a kill can end at a fresh token (some APIs issue new cursors each time);
        the next chunk then starts from the fresh one, unless it has already begun from the old one.
        """
        with self.transaction() as db:
            db.execute("SELECT 1 FROM sync_stages WHERE scope = ?", (chunk_scope(source, stream, refresh, chunk),))
            started = db.fetchone() is not None
            on_conflict = "DO NOTHING" if started else "DO UPDATE SET start_token = excluded.start_token"
            db.execute("INSERT INTO sync_chunks (source, stream, refresh, chunk, start_token) VALUES (?, ?, ?, ?, ?) "
                       f"ON CONFLICT (source, stream, refresh, chunk) {on_conflict}",
                       (source, stream, refresh, chunk, json.dumps(start_token)))

    def mark_published(self, db: Cursor, source: str, stream: str, refresh: int, chunks: int) -> None:
        """``refresh`` becomes the stream's snapshot; the one before is superseded (its data removable)."""
        db.execute("UPDATE sync_refreshes SET status = 'superseded' WHERE source = ? AND stream = ? "
                   "AND status = 'published'", (source, stream))
        db.execute("UPDATE sync_refreshes SET status = 'published', finished_at = ?, chunks = ? "
                   "WHERE source = ? AND stream = ? AND refresh = ?", (_now(), chunks, source, stream, refresh))
        db.execute("DELETE FROM sync_chunks WHERE source = ? AND stream = ? AND refresh = ? AND chunk >= ?",
                   (source, stream, refresh, chunks))
        self.drop_stages_under(db, refresh_scope(source, stream, refresh))

    def superseded(self, source: str, stream: str) -> list[int]:
        return [row[0] for row in self.rows("SELECT refresh FROM sync_refreshes WHERE source = ? AND stream = ? "
                                            "AND status = 'superseded' ORDER BY refresh", (source, stream))]

    def mark_removed(self, source: str, stream: str, refresh: int) -> None:
        with self.transaction() as db:
            self.drop_stages_under(db, refresh_scope(source, stream, refresh))
            db.execute("DELETE FROM sync_chunks WHERE source = ? AND stream = ? AND refresh = ?",
                       (source, stream, refresh))
            db.execute("UPDATE sync_refreshes SET status = 'removed' WHERE source = ? AND stream = ? AND refresh = ?",
                       (source, stream, refresh))

    def supersede_running(self, source: str, stream: str) -> int | None:
        """Give up the running refresh; returns its number."""
        with self.transaction() as db:
            db.execute("SELECT refresh FROM sync_refreshes WHERE source = ? AND stream = ? AND status = 'running'",
                       (source, stream))
            row = db.fetchone()
            if row is None:
                return None
            db.execute("UPDATE sync_refreshes SET status = 'superseded' WHERE source = ? AND stream = ? "
                       "AND refresh = ?", (source, stream, row[0]))
        return int(row[0])

    # --- columns ---

    def columns(self, source: str, stream: str) -> dict[str, str]:
        rows = self.rows("SELECT name, type FROM sync_columns WHERE source = ? AND stream = ? ORDER BY position",
                         (source, stream))
        return {name: kind for name, kind in rows}

    def save_columns(self, db: Cursor, source: str, stream: str, columns: dict[str, str]) -> None:
        for position, (name, kind) in enumerate(columns.items()):
            db.execute("INSERT INTO sync_columns (source, stream, name, type, position) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (source, stream, name) DO UPDATE SET type = excluded.type",
                       (source, stream, name, kind, position))

    def columns_in(self, db: Cursor, source: str, stream: str) -> dict[str, str]:
        """The stream's columns as this transaction sees them (under its write lock)."""
        db.execute("SELECT name, type FROM sync_columns WHERE source = ? AND stream = ? ORDER BY position",
                   (source, stream))
        return {name: kind for name, kind in db.fetchall()}


class _Placeholders:
    """A cursor that takes ``?`` placeholders whatever the driver's style."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self._cursor, self._placeholder = cursor, placeholder

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        return self._cursor.execute(sql, tuple(params))

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def copy(self, sql: str) -> Any:
        """PostgreSQL's ``COPY ... FROM STDIN`` (psycopg), inside this transaction."""
        return self._cursor.copy(sql)


def _partition_from_row(row: Sequence[Any]) -> PartitionState:
    from sync_assets.windows import Window

    key, start, end, records, pages, requests, bytes_received, max_cursor, completed_at = row
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end)) if start and end else None
    return PartitionState(
        key, window, records, pages, requests, bytes_received,
        datetime.fromisoformat(max_cursor) if max_cursor else None, datetime.fromisoformat(completed_at),
    )
