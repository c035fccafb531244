"""Where synced records and sync state live: one JSON-lines file per partition, state in SQLite.

The contract every reader of this module relies on: **state is never ahead of data**. A partition's
records are written to a private temporary file, flushed to disk, and renamed over the partition's
file; only then is its state row committed. A crash at any point leaves either the old partition
(file and state) or the new one, never a state that claims records the file does not hold. Two
writers of the same partition (a retry racing a backfill) each write their own temporary file and
publish under a per-partition lock, so the file and the state row always come from the same writer.

Resumable reads (a full refresh's chunks, a substream's partition) also append to a **journal**: a
staging file that grows page by page, each append followed by a checkpoint row saying how many bytes
the file holds and where the read stands (the next page token, the parents done). A killed read,
re-run, cuts the file back to its checkpoint and goes on from there: the page written after the last
checkpoint is dropped and fetched again, so nothing is lost and nothing is stored twice.

A full refresh writes its chunks into its own folder and is **published** as the stream's snapshot only
when its last chunk is done; readers see the previous snapshot until then.

Layout under ``root``::

    state.sqlite                                  partition state, journals, refreshes
    <source>/<stream>/<partition>.jsonl           one file per window partition
    <source>/<stream>/.staging/<partition>.jsonl  a substream partition being read
    <source>/<stream>/refresh-<n>/chunk-<k>.jsonl the chunks of full refresh n
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync_assets.errors import ConfigurationError
from sync_assets.windows import Window, merge_windows

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS partitions (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    records INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    max_cursor TEXT,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (source, stream, partition_key)
);
CREATE TABLE IF NOT EXISTS journals (
    scope TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL,
    records INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    token TEXT,
    done INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_items (
    scope TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (scope, item)
);
CREATE TABLE IF NOT EXISTS refreshes (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    refresh INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    chunks INTEGER,
    PRIMARY KEY (source, stream, refresh)
);
CREATE TABLE IF NOT EXISTS chunks (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    refresh INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    start_token TEXT,
    PRIMARY KEY (source, stream, refresh, chunk)
);
"""


def safe_name(name: str, what: str) -> str:
    """``name`` if it is safe as one path component; names reach the file system unchanged."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ConfigurationError(
            f"{what} {name!r} cannot be used as a file name; use letters, digits and _ . : + - only"
        )
    return name


@dataclass(frozen=True)
class PartitionState:
    """What is known about one committed partition."""

    partition_key: str
    window: Window | None
    records: int
    pages: int
    requests: int
    bytes: int
    max_cursor: datetime | None
    completed_at: datetime


# --- journals: checkpointed appends --------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Where a journal stands: the file holds exactly ``bytes`` committed bytes."""

    bytes: int = 0
    records: int = 0
    pages: int = 0
    requests: int = 0
    token: Any = None
    done: bool = False


class JournalBusyError(RuntimeError):
    """Another process is appending to the same journal right now."""


class Journal:
    """A staging file that grows by committed appends, and its checkpoint.

    Opening a journal takes an exclusive lock on its file for as long as it is open (a second reader
    of the same chunk or partition fails at once instead of interleaving pages), then cuts the file
    back to the checkpoint: whatever was written after the last commit is dropped.
    """

    def __init__(self, store: LocalStore, scope: str, path: Path, start_token: Any = None) -> None:
        self._store, self.scope, self.path = store, scope, path
        self._encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise JournalBusyError(f"{scope} is being read by another run right now") from None
        checkpoint = store.checkpoint(scope)
        if checkpoint is None or path.stat().st_size < checkpoint.bytes:
            # New, or the file lost committed bytes (power loss before the OS wrote them): start over.
            checkpoint = Checkpoint(token=start_token)
            store.reset_journal(scope, checkpoint)
        self._file.truncate(checkpoint.bytes)
        self._file.seek(checkpoint.bytes)
        self.checkpoint = checkpoint
        self.items = store.journal_items(scope)

    def append(
        self, records: list[dict[str, Any]], requests: int, token: Any = None, item: str | None = None,
        done: bool = False,
    ) -> Checkpoint:
        """Write ``records``, then commit the checkpoint that covers them (with ``token``/``item``)."""
        data = "".join(self._encode(record) + "\n" for record in records).encode()
        self._file.write(data)
        self._file.flush()  # in the OS's hands: a killed process cannot lose it any more
        previous = self.checkpoint
        self.checkpoint = Checkpoint(
            previous.bytes + len(data), previous.records + len(records), previous.pages + 1,
            previous.requests + requests, token, done,
        )
        self._store.save_checkpoint(self.scope, self.checkpoint, item)
        if item is not None:
            self.items.add(item)
        return self.checkpoint

    def sync(self) -> None:
        """Flush to disk: before the journal's file is published."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class RefreshState:
    """A full refresh: its number, whether it is published, and its chunks' start tokens."""

    def __init__(self, refresh: int, status: str, chunks: dict[int, Any]) -> None:
        self.refresh, self.status, self.chunks = refresh, status, chunks


def _checkpoint_from_row(row: tuple[Any, ...]) -> Checkpoint:
    bytes_, records, pages, requests, token, done = row
    return Checkpoint(bytes_, records, pages, requests, json.loads(token) if token else None, bool(done))


def chunk_scope(source: str, stream: str, refresh: int, chunk: int) -> str:
    """The journal of one chunk of one refresh."""
    return f"{source}/{stream}/refresh-{refresh}/chunk-{chunk:06d}"


def chunk_file(chunk: int) -> str:
    return f"chunk-{chunk:06d}.jsonl"


def _checkpoint_values(checkpoint: Checkpoint) -> tuple[Any, ...]:
    token = json.dumps(checkpoint.token) if checkpoint.token is not None else None
    return (checkpoint.bytes, checkpoint.records, checkpoint.pages, checkpoint.requests, token,
            int(checkpoint.done))


@contextmanager
def _reader_lock(folder: Path, exclusive: bool) -> Iterator[bool]:
    """Readers of a snapshot hold it shared; removal needs it alone (and skips if it cannot have it).

    Raises ``FileNotFoundError`` when the snapshot's folder is gone (removed by a publish).
    """
    with (folder / ".readers").open("a") as lock:
        try:
            fcntl.flock(lock, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class PartitionWriter:
    """Collects one partition's pages in a temporary file; ``commit`` publishes file and state."""

    def __init__(self, store: LocalStore, source: str, stream: str, key: str) -> None:
        self._store, self.source, self.stream, self.key = store, source, stream, key
        self.path = store.partition_path(source, stream, key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self._file = self._tmp.open("w", encoding="utf-8")
        self._encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.records = 0

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        lines = [self._encode(record) + "\n" for record in records]
        self._file.write("".join(lines))
        self.records += len(lines)

    def commit(
        self, window: Window | None, pages: int, requests: int, bytes_read: int, max_cursor: datetime | None
    ) -> PartitionState:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        state = PartitionState(
            self.key, window, self.records, pages, requests, bytes_read, max_cursor, datetime.now(UTC)
        )
        self._store.publish_partition(self.source, self.stream, self._tmp, state)
        return state

    def abort(self) -> None:
        """Drop what was written; the partition keeps its previous data and state."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Partition files and state under ``root``; safe for many threads and processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per thread; each use is one transaction."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / "state.sqlite", timeout=60)
            # WAL without a sync per commit: a killed process loses nothing committed; after a power
            # loss a journal whose file is shorter than its checkpoint starts its scope over.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        with conn:
            yield conn

    def partition_path(self, source: str, stream: str, key: str) -> Path:
        return (
            self.root / safe_name(source, "source") / safe_name(stream, "stream")
            / f"{safe_name(key, 'partition key')}.jsonl"
        )

    @contextmanager
    def partition_lock(self, path: Path) -> Iterator[None]:
        """Serialises publishing within a stream's folder; held for a rename and one state row."""
        with (path.parent / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def writer(self, source: str, stream: str, key: str) -> PartitionWriter:
        return PartitionWriter(self, source, stream, key)

    def publish_partition(
        self, source: str, stream: str, staged: Path, state: PartitionState, journal: str | None = None
    ) -> None:
        """Make ``staged`` (flushed to disk) the partition's file, then commit its state: in that order.

        ``journal`` (the scope ``staged`` was written under) is dropped in the same transaction.
        """
        path = self.partition_path(source, stream, state.partition_key)
        with self.partition_lock(path):
            staged.replace(path)
            _fsync_dir(path.parent)
            self.save_state(source, stream, state, drop_journal=journal)

    def save_state(self, source: str, stream: str, state: PartitionState, drop_journal: str | None = None) -> None:
        window = state.window
        with self._db() as db:
            if drop_journal is not None:
                db.execute("DELETE FROM journals WHERE scope = ?", (drop_journal,))
                db.execute("DELETE FROM journal_items WHERE scope = ?", (drop_journal,))
            db.execute(
                "INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source, stream, state.partition_key,
                    window.start.isoformat() if window else None, window.end.isoformat() if window else None,
                    state.records, state.pages, state.requests, state.bytes,
                    state.max_cursor.isoformat() if state.max_cursor else None, state.completed_at.isoformat(),
                ),
            )

    def partition_states(self, source: str, stream: str) -> dict[str, PartitionState]:
        with self._db() as db:
            rows = db.execute(
                "SELECT partition_key, window_start, window_end, records, pages, requests, bytes, max_cursor, "
                "completed_at FROM partitions WHERE source = ? AND stream = ? ORDER BY partition_key",
                (source, stream),
            ).fetchall()
        return {row[0]: _state_from_row(row) for row in rows}

    def iter_records(self, source: str, stream: str, keys: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Records of the given partitions, streamed from disk; a missing partition is an error."""
        for key in keys:
            path = self.partition_path(source, stream, key)
            if not path.exists():
                raise FileNotFoundError(f"partition {key!r} of {source}/{stream} has not been synced ({path})")
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    yield json.loads(line)

    # --- journals: checkpointed appends ---

    def checkpoint(self, scope: str) -> Checkpoint | None:
        with self._db() as db:
            row = db.execute(
                "SELECT bytes, records, pages, requests, token, done FROM journals WHERE scope = ?", (scope,)
            ).fetchone()
        return _checkpoint_from_row(row) if row else None

    def journal_items(self, scope: str) -> set[str]:
        with self._db() as db:
            return {row[0] for row in db.execute("SELECT item FROM journal_items WHERE scope = ?", (scope,))}

    def reset_journal(self, scope: str, checkpoint: Checkpoint) -> None:
        with self._db() as db:
            db.execute("DELETE FROM journal_items WHERE scope = ?", (scope,))
            db.execute("INSERT OR REPLACE INTO journals VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (scope, *_checkpoint_values(checkpoint)))

    def save_checkpoint(self, scope: str, checkpoint: Checkpoint, item: str | None) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO journals VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (scope, *_checkpoint_values(checkpoint)))
            if item is not None:
                db.execute("INSERT OR IGNORE INTO journal_items VALUES (?, ?)", (scope, item))

    # --- full refreshes and snapshots ---

    def refresh_dir(self, source: str, stream: str, refresh: int) -> Path:
        return self.root / safe_name(source, "source") / safe_name(stream, "stream") / f"refresh-{refresh}"

    def latest_refresh(self, source: str, stream: str, status: str | None = None) -> RefreshState | None:
        query = "SELECT refresh, status FROM refreshes WHERE source = ? AND stream = ?"
        params: tuple[Any, ...] = (source, stream)
        if status:
            query, params = query + " AND status = ?", (*params, status)
        with self._db() as db:
            row = db.execute(query + " ORDER BY refresh DESC LIMIT 1", params).fetchone()
            if row is None:
                return None
            chunks = db.execute(
                "SELECT chunk, start_token FROM chunks WHERE source = ? AND stream = ? AND refresh = ? ORDER BY chunk",
                (source, stream, row[0]),
            ).fetchall()
        return RefreshState(row[0], row[1], {c: json.loads(t) if t else None for c, t in chunks})

    def refresh_finished_at(self, source: str, stream: str, refresh: int) -> datetime | None:
        with self._db() as db:
            row = db.execute("SELECT finished_at FROM refreshes WHERE source = ? AND stream = ? AND refresh = ?",
                             (source, stream, refresh)).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def start_refresh(self, source: str, stream: str) -> RefreshState:
        """The running refresh, or a new one (from the first page) when none is running."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # two runs starting at once get one refresh
            row = db.execute(
                "SELECT refresh FROM refreshes WHERE source = ? AND stream = ? AND status = 'running'",
                (source, stream),
            ).fetchone()
            if row is None:
                latest = db.execute(
                    "SELECT COALESCE(MAX(refresh), 0) FROM refreshes WHERE source = ? AND stream = ?",
                    (source, stream),
                ).fetchone()[0]
                db.execute("INSERT INTO refreshes VALUES (?, ?, ?, 'running', ?, NULL, NULL)",
                           (source, stream, latest + 1, datetime.now(UTC).isoformat()))
                db.execute("INSERT INTO chunks VALUES (?, ?, ?, 0, NULL)", (source, stream, latest + 1))
        state = self.latest_refresh(source, stream, "running")
        assert state is not None
        return state

    def chunk_checkpoints(self, source: str, stream: str, state: RefreshState) -> dict[int, Checkpoint | None]:
        """Where each chunk of a refresh stands, in reading order (``None``: not started)."""
        return {c: self.checkpoint(chunk_scope(source, stream, state.refresh, c)) for c in sorted(state.chunks)}

    def add_chunks(self, source: str, stream: str, refresh: int, start_tokens: dict[int, Any]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?)",
                [(source, stream, refresh, chunk, json.dumps(token)) for chunk, token in start_tokens.items()],
            )

    def set_chunk_start(self, source: str, stream: str, refresh: int, chunk: int, start_token: Any) -> None:
        """Register ``chunk`` at ``start_token``, or move its start there if nothing of it is read yet.

        A chunk re-read after a kill can end at a fresh token (some APIs issue new cursors each time);
        the next chunk then starts from the fresh one, unless it has already begun from the old one.
        """
        with self._db() as db:
            started = db.execute("SELECT 1 FROM journals WHERE scope = ?",
                                 (chunk_scope(source, stream, refresh, chunk),)).fetchone()
            verb = "INSERT OR IGNORE" if started else "INSERT OR REPLACE"
            db.execute(f"{verb} INTO chunks VALUES (?, ?, ?, ?, ?)",
                       (source, stream, refresh, chunk, json.dumps(start_token)))

    def publish_refresh(self, source: str, stream: str, refresh: int, chunks: int) -> None:
        """Make ``refresh`` the stream's snapshot in one transaction, then remove older snapshots."""
        with self._db() as db:
            db.execute("UPDATE refreshes SET status = 'superseded' WHERE source = ? AND stream = ? "
                       "AND status = 'published'", (source, stream))
            db.execute("UPDATE refreshes SET status = 'published', finished_at = ?, chunks = ? "
                       "WHERE source = ? AND stream = ? AND refresh = ?",
                       (datetime.now(UTC).isoformat(), chunks, source, stream, refresh))
            db.execute("DELETE FROM chunks WHERE source = ? AND stream = ? AND refresh = ? AND chunk >= ?",
                       (source, stream, refresh, chunks))
        self._remove_superseded(source, stream)

    def _remove_superseded(self, source: str, stream: str) -> None:
        with self._db() as db:
            old = [r for (r,) in db.execute("SELECT refresh FROM refreshes WHERE source = ? AND stream = ? "
                                            "AND status = 'superseded'", (source, stream))]
        for refresh in old:
            folder = self.refresh_dir(source, stream, refresh)
            if folder.exists():
                with _reader_lock(folder, exclusive=True) as free:
                    if not free:
                        continue  # someone is still reading it; the next publish removes it
                    for path in folder.glob("*"):
                        path.unlink()
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with self._db() as db:
                prefix = f"{source}/{stream}/refresh-{refresh}/"  # not LIKE: "_" in names is a wildcard there
                db.execute("DELETE FROM journals WHERE substr(scope, 1, ?) = ?", (len(prefix), prefix))
                db.execute("DELETE FROM chunks WHERE source = ? AND stream = ? AND refresh = ?",
                           (source, stream, refresh))
                db.execute("UPDATE refreshes SET status = 'removed' WHERE source = ? AND stream = ? AND refresh = ?",
                           (source, stream, refresh))

    def iter_snapshot(self, source: str, stream: str) -> Iterator[dict[str, Any]]:
        """The records of the last published refresh, chunk by chunk; empty if none was published."""
        for _ in range(5):  # a publish can remove the snapshot between our look and our lock: look again
            with self._db() as db:
                row = db.execute("SELECT refresh, chunks FROM refreshes WHERE source = ? AND stream = ? "
                                 "AND status = 'published'", (source, stream)).fetchone()
            if row is None:
                return
            folder = self.refresh_dir(source, stream, row[0])
            try:
                with _reader_lock(folder, exclusive=False):
                    current = self.latest_refresh(source, stream, "published")
                    if current is None or current.refresh != row[0]:
                        continue
                    for chunk in range(row[1]):
                        with (folder / chunk_file(chunk)).open(encoding="utf-8") as lines:
                            for line in lines:
                                yield json.loads(line)
                    return
            except FileNotFoundError:
                continue
        raise RuntimeError(f"the snapshot of {source}/{stream} kept changing while it was being opened")

    def abandon_refresh(self, source: str, stream: str) -> int | None:
        """Give up the running refresh (its cursor expired, say); the next run starts from the first page."""
        state = self.latest_refresh(source, stream, "running")
        if state is None:
            return None
        with self._db() as db:
            db.execute("UPDATE refreshes SET status = 'superseded' WHERE source = ? AND stream = ? AND refresh = ?",
                       (source, stream, state.refresh))
        self._remove_superseded(source, stream)
        return state.refresh

    def journal_busy(self, path: Path) -> bool:
        """Whether a process is appending to the journal at ``path`` right now (it holds the lock)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we may have taken
        return False


def _state_from_row(row: tuple[Any, ...]) -> PartitionState:
    key, start, end, records, pages, requests, bytes_read, max_cursor, completed_at = row
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end)) if start and end else None
    return PartitionState(
        key, window, records, pages, requests, bytes_read,
        datetime.fromisoformat(max_cursor) if max_cursor else None, datetime.fromisoformat(completed_at),
    )


def contiguous_end(start: datetime, windows: Iterable[Window]) -> datetime:
    """The end of the longest run of windows that covers ``[start, end)`` without a gap.

    This is the stream's state: everything before it is synced, whatever order windows finished
    in. A window that completes after a gap is kept, and extends the run once the gap is filled.
    """
    for run in merge_windows(windows):
        if run.start <= start < run.end:
            return run.end
    return start
