"""The embedded default: Parquet group files of partitions, exposed by a DuckDB database as views.

Why not tables inside the DuckDB file? DuckDB lets one process at a time open a database file for
writing, and a Dagster run writes from several step processes (and several runs at once); a person
holding the file open in a DuckDB shell would stall them all. So published data is Parquet: partitions
in group files (a partition joins an open group when first published and never moves, so replacing it
rewrites one file), a refresh's chunks a file each; every file written aside and renamed into place:
atomic, and no reader can ever block a writer. Files follow the data, not the partition count. The
DuckDB database (``warehouse.duckdb``) holds only views over those files (``demo.surveys``, and
``demo.surveys_current`` for streams with a primary key), defined once per stream with a glob, so
publishing a partition never touches it. A refresh's
snapshot is a folder that a symbolic link (``snapshot``) points at, swapped in one rename.

Staging, checkpoints and state rows live in SQLite (``state.sqlite``, WAL) next to the files. A
publish renames the files of its partitions into place and commits their state rows while holding
SQLite's write lock, so two writers of one partition are serialised, and file and row always come
from the same writer; a kill between the two leaves data ahead of state, never behind it.

Layout under the store's folder::

    state.sqlite                                   staging, checkpoints, state, columns
    warehouse.duckdb                               views: one schema per source, one view per stream
    tables/<source>/<stream>/group-<id>.parquet     window and substream partitions, many to a file
    tables/<source>/<stream>/<partition>.parquet   a partition written by release 0.2, alone in its file
    tables/<source>/<stream>/refresh-<n>/refresh-<n>-chunk-<k>.parquet, snapshot -> refresh-<n>
    locks/                                         one file per resumable stage being read, per run going
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync_assets.concurrency import page_work
from sync_assets.errors import ConfigurationError
from sync_assets.schema import CURSOR_COLUMN, EXTRACTED_AT_COLUMN, PARTITION_COLUMN, arrow_schema, conform
from sync_assets.storage.bookkeeping import Cursor, PartitionState
from sync_assets.storage.catalog import Catalog
from sync_assets.storage.layout import chunk_key, legacy_store_dir, quote, safe_name
from sync_assets.storage.store import (
    KeyTally,
    Part,
    Published,
    Stage,
    StageBusyError,
    Store,
    TableSpec,
    Tallies,
)

log = logging.getLogger(__name__)

_LOCK_PATIENCE_SECONDS = 2.0  # a stage lock held this long is another run, not a passing probe
_ROW_GROUP = 65_536  # rows held before a Parquet row group is written: memory stays bounded, files stay few-grouped
_GROUP_ROWS = 50_000
"""New partitions join a group file while it holds fewer rows than this: files follow the data, not the
partition count (a year of hourly partitions of 5 rows is one file), and replacing a partition rewrites at
most a group's worth of rows beside it."""


class DuckDBStore(Store):
    """Parquet partitions, DuckDB views, SQLite bookkeeping, all under ``root``; many processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        legacy = legacy_store_dir(root.parent) / "state.sqlite"
        if legacy.exists() and not (root / "state.sqlite").exists():
            raise ConfigurationError(
                f"{legacy.parent} holds data synced by sync-assets 0.1 (JSON-lines files), which this release "
                f"does not read. Re-sync into tables: move that folder aside (mv {legacy.parent} "
                f"{legacy.parent}.0.1) and materialize the assets again; nothing in it is deleted"
            )
        for folder in ("tables", "locks", "spool"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.spool_dir = root / "spool"  # beside the tables: the same disk, not a RAM-backed /tmp
        self.catalog = Catalog(root)
        self._books = self.catalog.books
        with self._books.transaction() as db:  # which file holds each partition: this backend's own bookkeeping
            db.execute("CREATE TABLE IF NOT EXISTS sync_partition_files (source TEXT NOT NULL, stream TEXT NOT NULL, "
                       "partition_key TEXT NOT NULL, file TEXT NOT NULL, PRIMARY KEY (source, stream, partition_key))")
        # One publish at a time in a process: they take SQLite's one write lock and sync one folder anyway,
        # and threads that queue here once cost less than threads meeting at each of a publish's steps.
        self._publishing = threading.Lock()

    def __repr__(self) -> str:
        return f"DuckDBStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        return f"{socket.gethostname()}:{self.root.resolve()}"  # a local disk: the same path elsewhere is another store

    # --- places ---

    def stream_dir(self, table: TableSpec) -> Path:
        return self.root / "tables" / safe_name(table.source, "source") / safe_name(table.stream, "stream")

    def refresh_dir(self, table: TableSpec, refresh: int) -> Path:
        return self.stream_dir(table) / f"refresh-{refresh}"

    # --- locks ---

    def _lock_path(self, scope: str) -> Path:
        return self.root / "locks" / f"{hashlib.sha1(scope.encode()).hexdigest()}.lock"

    @contextmanager
    def lock(self, scope: str) -> Iterator[None]:
        path = self._lock_path(scope)
        deadline = time.monotonic() + _LOCK_PATIENCE_SECONDS
        while True:
            handle = path.open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(handle, path):
                    break
                handle.close()  # its holder removed it as we opened it: lock the file now at that path
                continue
            except BlockingIOError:
                handle.close()
                if time.monotonic() > deadline:
                    raise StageBusyError(f"{scope} is being read by another run right now") from None
                time.sleep(0.05)
            except BaseException:
                handle.close()
                raise
        try:
            yield
        finally:
            try:
                # Removed while still held, so the folder holds only the locks of runs at work (or killed):
                # whoever opened this file meanwhile finds it is no longer at the path, and tries again.
                path.unlink(missing_ok=True)
            finally:
                handle.close()  # closing the file releases the lock, also when the process dies

    def locked(self, scope: str) -> bool:
        try:
            handle = self._lock_path(scope).open("r+")  # never creates one: a probe leaves nothing behind
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False

    # --- publishing ---

    def _write(self, path: Path, parts: list[Part], schema: pa.Schema, tallies: Tallies) -> Path:
        """Write the stages' pages (each with its partition key) to a temporary file beside ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        pending: list[pa.RecordBatch] = []  # pages gathered into row groups of up to _ROW_GROUP rows
        try:
            with page_work, pq.ParquetWriter(tmp, full) as writer:  # encoding the rows: see page_work
                for rows in self._rows(parts, schema, tallies):
                    pending.append(rows)
                    if sum(b.num_rows for b in pending) >= _ROW_GROUP:
                        writer.write_table(pa.Table.from_batches(pending, full))
                        pending = []
                if pending:
                    writer.write_table(pa.Table.from_batches(pending, full))
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def publish_partitions(self, stages: Sequence[Stage], states: Sequence[PartitionState]) -> list[Published]:
        """Each file that holds a published partition is rewritten with it replaced (its other partitions
        copied unchanged), and partitions never published before join the stream's open group: every file
        swaps in by one rename, so a reader sees each partition old or new, never both, never neither."""
        table = stages[0].table
        new: list[Part] = [(state.partition_key, stage.batches) for stage, state in zip(stages, states, strict=True)]
        published = {state.partition_key for state in states}
        columns, _ = self._partition_columns(new, table)
        folder = self.stream_dir(table)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[tuple[Path, Path]] = []
        with self._publishing, self._books.transaction() as db:  # SQLite's write lock: one publisher at a time
            merged, drift = self._merge_stream_columns(db, table, columns)
            schema = arrow_schema(merged)
            tallies = {key: KeyTally(table, schema) for key in published}
            placed = self._place(db, table, [state.partition_key for state in states])
            try:
                for name, keys in placed.items():
                    path = folder / name
                    parts = [part for part in new if part[0] in keys]
                    if path.exists():  # the rows it keeps first: a file's rows stay in publish order
                        parts.insert(0, (None, partial(_kept_rows, path, published)))
                    written.append((self._write(path, parts, schema, tallies.get), path))
                for tmp, path in written:
                    os.replace(tmp, path)
                _fsync_dir(folder)
            finally:
                for tmp, _ in written:
                    tmp.unlink(missing_ok=True)
            for stage, state in zip(stages, states, strict=True):
                self._books.save_partition(db, table.source, table.stream, state)
                self._books.drop_stage(db, stage.scope)  # a substream's stage; a window's has no rows here
            for name, keys in placed.items():
                for key in keys:
                    db.execute("INSERT INTO sync_partition_files (source, stream, partition_key, file) "
                               "VALUES (?, ?, ?, ?) ON CONFLICT (source, stream, partition_key) "
                               "DO UPDATE SET file = excluded.file", (table.source, table.stream, key, name))
        for stage in stages:
            stage.close()
        self._ensure_views(table)  # outside the lock: it may wait for a DuckDB database held open elsewhere
        return self._published(merged, drift, tallies, states)

    def _place(self, db: Cursor, table: TableSpec, keys: list[str]) -> dict[str, list[str]]:
        """The file each partition goes to: the one it is in (a partition never moves, so that replacing it
        is one rename), or for a partition never published, the stream's open group (a group of fewer
        than ``_GROUP_ROWS`` rows), or a new group when none is open."""
        db.execute("SELECT partition_key, file FROM sync_partition_files WHERE source = ? AND stream = ?",
                   (table.source, table.stream))
        files: dict[str, str] = dict(db.fetchall())
        placed: dict[str, list[str]] = {}
        fresh: list[str] = []
        for key in keys:
            name = files.get(key) or _legacy_name(key)
            if key in files or (self.stream_dir(table) / name).exists():  # published before (a legacy file: 0.2)
                placed.setdefault(name, []).append(key)
            else:
                fresh.append(key)
        if fresh:
            db.execute("SELECT f.file, sum(p.records) FROM sync_partition_files f JOIN sync_partitions p ON "
                       "p.source = f.source AND p.stream = f.stream AND p.partition_key = f.partition_key "
                       "WHERE f.source = ? AND f.stream = ? AND f.file LIKE 'group-%' GROUP BY f.file",
                       (table.source, table.stream))
            open_groups = sorted((rows, name) for name, rows in db.fetchall() if rows < _GROUP_ROWS)
            group = open_groups[-1][1] if open_groups else f"group-{uuid.uuid4().hex}.parquet"
            placed.setdefault(group, []).extend(fresh)
        return placed

    def publish_refresh(self, table: TableSpec, refresh: int, chunks: int) -> Published:
        parts = self._chunk_parts(table, refresh, chunks)
        columns, schema = self._partition_columns(parts, table)
        keys = KeyTally(table, schema)
        folder = self.refresh_dir(table, refresh)
        written = set()
        for chunk, part in enumerate(parts):
            # Named for their refresh, not just their place: a query that listed ``snapshot/*.parquet`` before a
            # swap finds none of these under its old names, so it fails and is run again, never mixing refreshes.
            path = folder / f"{chunk_key(refresh, chunk)}.parquet"
            os.replace(self._write(path, [part], schema, lambda _: keys), path)
            written.add(path)
        for stale in set(folder.glob("*.parquet")) - written:  # an earlier try of this publish, killed (or older)
            stale.unlink()
        _fsync_dir(folder)
        link = self.stream_dir(table) / "snapshot"
        with self._books.transaction() as db:
            tmp = link.with_name(f".snapshot.{uuid.uuid4().hex}")
            tmp.symlink_to(folder.name)
            os.replace(tmp, link)  # readers of the view switch here, at once
            _fsync_dir(link.parent)
            self._books.mark_published(db, table.source, table.stream, refresh, chunks)
            merged, drift = self._merge_stream_columns(db, table, columns)
        self._remove_superseded(table)
        self._ensure_views(table)
        return Published(merged, drift, keys.duplicates())

    def _remove_refresh_data(self, table: TableSpec, refresh: int) -> None:
        shutil.rmtree(self.refresh_dir(table, refresh), ignore_errors=True)

    # --- reading ---

    def _read(self, files: list[pq.ParquetFile], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        for file in files:
            with contextlib.closing(file):
                for batch in file.iter_batches(batch_size=65536):
                    yield conform(batch, schema)

    def read_partitions(self, table: TableSpec, keys: list[str]) -> Iterator[pa.RecordBatch]:
        schema = self.read_schema(table)
        rows = self._books.rows("SELECT partition_key, file FROM sync_partition_files WHERE source = ? AND stream = ?",
                               (table.source, table.stream))
        files: dict[str, str] = dict(rows)
        by_file: dict[str, list[str]] = {}
        for key in keys:
            by_file.setdefault(files.get(key) or _legacy_name(key), []).append(key)
        opened = []
        for name, wanted in by_file.items():  # open every file first: what is open stays readable
            try:
                opened.append((pq.ParquetFile(self.stream_dir(table) / name), wanted))
            except FileNotFoundError:
                raise ConfigurationError(
                    f"partition {wanted[0]!r} of {table.name} has not been synced; materialize it first"
                ) from None
        for file, wanted in opened:
            only = pa.array(wanted, pa.string())
            with contextlib.closing(file):
                for batch in file.iter_batches(batch_size=65536):
                    yield conform(batch.filter(pc.is_in(batch.column(PARTITION_COLUMN), value_set=only)), schema)

    def read_snapshot(self, table: TableSpec) -> Iterator[pa.RecordBatch]:
        for _ in range(5):  # a publish can remove the snapshot between our look and our open: look again
            published = self._books.latest_refresh(table.source, table.stream, "published")
            if published is None:
                return
            folder = self.refresh_dir(table, published.refresh)
            try:  # open every file first: a later publish may remove the folder, not what is open
                files = [pq.ParquetFile(path) for path in sorted(folder.glob("*.parquet"))]
            except FileNotFoundError:
                continue
            if files or folder.exists():
                yield from self._read(files, self.read_schema(table))
                return
        raise StageBusyError(f"the snapshot of {table.name} kept changing while it was being opened")

    # --- the DuckDB catalog ---

    def view_sql(self, table: TableSpec) -> str:
        """The views of one stream: its table, and for a primary key the latest version of each key."""
        schema, name = quote(table.source), quote(table.stream)
        folder = self.stream_dir(table) / ("snapshot" if table.kind == "snapshot" else "")
        files = str(folder / "*.parquet").replace("'", "''")
        statements = [
            f"CREATE SCHEMA IF NOT EXISTS {schema}",
            f"CREATE OR REPLACE VIEW {schema}.{name} AS SELECT * FROM read_parquet('{files}', union_by_name = true)",
        ]
        known = self._books.columns(table.source, table.stream)
        # The latest version of each key needs the key's columns: not yet while every partition published
        # so far was empty (the view comes with the first rows: its text changes, so it is created then).
        if table.primary_key and table.kind == "partitions" and all(k in known for k in table.primary_key):
            order = f"{quote(CURSOR_COLUMN)} DESC NULLS LAST, " if CURSOR_COLUMN in known else ""
            statements.append(
                f"CREATE OR REPLACE VIEW {schema}.{quote(table.stream + '_current')} AS SELECT * FROM {schema}.{name} "
                f"QUALIFY row_number() OVER (PARTITION BY {', '.join(quote(k) for k in table.primary_key)} "
                f"ORDER BY {order}{quote(EXTRACTED_AT_COLUMN)} DESC) = 1"
            )
        return ";\n".join(statements)

    def _ensure_views(self, table: TableSpec) -> None:
        self.catalog.ensure_view(table.source, table.stream, self.view_sql(table))


def _legacy_name(key: str) -> str:
    """The file of a partition published alone (release 0.2, before group files): it stays its file."""
    return f"{safe_name(key, 'partition key')}.parquet"


def _kept_rows(path: Path, replaced: set[str]) -> Iterator[pa.RecordBatch]:
    """The rows of the file at ``path`` but those of the ``replaced`` partitions."""
    drop = pa.array(sorted(replaced), pa.string())
    with contextlib.closing(pq.ParquetFile(path)) as file:
        for batch in file.iter_batches(batch_size=65_536):
            yield batch.filter(pc.invert(pc.is_in(batch.column(PARTITION_COLUMN), value_set=drop)))


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
