"""The local store's SQL side: its SQLite bookkeeping and the DuckDB database of views a team queries.

Apart from the Parquet writing (``duckdb.py``) so that ``sync-assets sql`` opens a store with DuckDB and
SQLite alone: a query should not wait for Arrow and the HTTP engine to load.

The views are recorded in the bookkeeping first (``sync_views``) and created in ``warehouse.duckdb``
after: DuckDB lets one process at a time open that file for writing, and a person holding it open in a
shell must not fail a sync whose data is already published. A view that could not be created now is
created by the next publish, or by ``sync-assets sql``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from sync_assets.storage.bookkeeping import Bookkeeping, Dialect

log = logging.getLogger(__name__)

CATALOG_PATIENCE_SECONDS = 10.0
_CATALOG_LOCK = threading.Lock()  # threads of one process share one DuckDB instance; one writer at a time


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    # WAL without a sync per commit: a killed process loses nothing committed; a power loss may lose the
    # last commits, whole (page and checkpoint together), so a resumed read fetches those pages again.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _write_ahead_log(path: Path, patience: float = 60.0) -> None:
    """Put the bookkeeping database in WAL mode (readers never wait for writers). SQLite answers "locked" at
    once, without its busy timeout, when processes opening a new store switch it together: tried again."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with contextlib.closing(_sqlite_connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Catalog:
    """``state.sqlite`` (as a ``Bookkeeping``) and ``warehouse.duckdb`` of the store under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bookkeeping = root / "state.sqlite"
        _write_ahead_log(bookkeeping)
        self.books = Bookkeeping(Dialect(connect=lambda: _sqlite_connect(bookkeeping), begin="BEGIN IMMEDIATE",
                                     blob="BLOB", one_writer=True))
        self.path = root / "warehouse.duckdb"
        self._views: dict[tuple[str, str], str] = {}  # views known to be created, so a publish skips the check

    def ensure_view(self, source: str, stream: str, sql: str) -> None:
        """Record ``sql`` as the statements of a stream's views, and create them if they changed."""
        if self._views.get((source, stream)) == sql:
            return
        with self.books.transaction() as db:
            db.execute("SELECT sql, applied FROM sync_views WHERE source = ? AND stream = ?", (source, stream))
            row = db.fetchone()
            if row is None or row[0] != sql:
                db.execute("INSERT INTO sync_views (source, stream, sql, applied) VALUES (?, ?, ?, 0) "
                           "ON CONFLICT (source, stream) DO UPDATE SET sql = excluded.sql, applied = 0",
                           (source, stream, sql))
            elif row[1]:
                self._views[(source, stream)] = sql
                return
        self.apply_views()

    def apply_views(self, patience: float | None = None) -> bool:
        """Create the views not yet in the DuckDB database; ``False`` if that could not be done now.

        Never raises for the database itself: the data is already published when this runs, and a
        view that is late must not fail the sync (the next publish, or ``sync-assets sql``, catches up).
        DuckDB is loaded here, not with the module: a step whose views exist never needs it (about 50 MB).
        """
        with _CATALOG_LOCK:
            pending = self.books.rows("SELECT source, stream, sql FROM sync_views WHERE applied = 0")
            if not pending:
                return True
            import duckdb

            try:
                return self._apply_views(pending, CATALOG_PATIENCE_SECONDS if patience is None else patience)
            except duckdb.Error as exc:
                log.warning("the views of the store %s could not be created now (%s); the data is stored, and "
                            "the next publish, or `sync-assets sql`, tries again", self.root, exc)
                return False

    def _apply_views(self, pending: list[tuple[str, str, str]], patience: float) -> bool:
        import duckdb

        deadline, warned = time.monotonic() + patience, False
        while True:
            try:
                catalog = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() > deadline:
                    log.warning("the views of %s are not created yet: %s is open in another process (%s). The "
                                "data is stored; the next publish, or `sync-assets sql`, creates them",
                                ", ".join(f"{s}.{t}" for s, t, _ in pending), self.path, exc)
                    return False
                if not warned:
                    log.warning("waiting for %s, which another process holds open: %s", self.path, exc)
                    warned = True
                time.sleep(0.2)
        with catalog:
            for *_, sql in pending:
                catalog.execute(sql)
        with self.books.transaction() as db:
            for source, stream, sql in pending:
                db.execute("UPDATE sync_views SET applied = 1 WHERE source = ? AND stream = ? AND sql = ?",
                           (source, stream, sql))
                self._views[(source, stream)] = sql
        return True
