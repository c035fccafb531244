"""Where synced records and sync state live: one JSON-lines file per partition, state in SQLite.

The contract every reader of this module relies on: **state is never ahead of data**. A partition's
records are written to a private temporary file, flushed to disk, and renamed over the partition's
file; only then is its state row committed. A crash at any point leaves either the old partition
(file and state) or the new one, never a state that claims records the file does not hold. Two
writers of the same partition (a retry racing a backfill) each write their own temporary file and
publish under a per-partition lock, so the file and the state row always come from the same writer.

Layout under ``root``::

    state.sqlite                        partition state of every stream
    <source>/<stream>/<partition>.jsonl one file per partition (a window, or a refresh chunk)
"""

from __future__ import annotations

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
from sync_assets.windows import Window

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
)
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
        with self._store.partition_lock(self.path):
            self._tmp.replace(self.path)
            _fsync_dir(self.path.parent)
            self._store.save_state(self.source, self.stream, state)
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
            db.execute(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per thread; each use is one transaction."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / "state.sqlite", timeout=60)
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

    def save_state(self, source: str, stream: str, state: PartitionState) -> None:
        window = state.window
        with self._db() as db:
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
    end = start
    for window in sorted(windows):
        if window.start > end:
            break
        end = max(end, window.end)
    return end
