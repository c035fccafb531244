"""Where synced records and sync state live: the one interface every kind of sync writes through.

The three kinds of sync need four things of storage, and nothing more:

- **stage** pages durably together with their checkpoint (``Store.open_stage``, ``Stage.append``):
  a page and the checkpoint that covers it are one transaction, so a run killed at any moment,
  run again, resumes after the last committed page;
- **publish a partition** atomically together with its state row (``publish_partition``): readers
  see the old partition or the new one, and the state row always comes from the same writer;
- **publish a snapshot** of a full refresh (``publish_refresh``): readers switch at once, and a
  failed refresh never empties what they see;
- **read** records back as Arrow batches (``read_partitions``, ``read_snapshot``), so downstream
  gets a table without a copy per row.

The contract every reader relies on: **state is never ahead of data**. Staging, checkpoints,
refreshes and state rows are the same SQL on every backend (``bookkeeping``); a backend adds where
published data lives and how a publish swaps it in: ``duckdb`` (Parquet files a DuckDB database
exposes as views; the embedded default) and ``postgres`` (typed tables; runs on several machines).
"""

from __future__ import annotations

import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.concurrency import page_work
from sync_assets.errors import TransientError
from sync_assets.schema import (
    PARTITION_COLUMN,
    Drift,
    arrow_schema,
    conform,
    declared_types,
    iter_records,
    merge_schemas,
    page_batch,
)
from sync_assets.spec import ApiSource, Stream
from sync_assets.storage.bookkeeping import Bookkeeping, Checkpoint, PartitionState
from sync_assets.storage.layout import chunk_key, chunk_scope, store_dir
from sync_assets.storage.refreshes import RefreshLedger

log = logging.getLogger(__name__)


class StageBusyError(TransientError):
    """Another run is reading the same chunk or partition right now; it passes when that run ends."""


@dataclass(frozen=True)
class Published:
    """What a publish changed: the stream's columns after it, and what in the published rows needs a look."""

    columns: dict[str, str]
    drift: list[Drift]
    duplicate_keys: int
    """Rows whose primary key another row of the same partition (or snapshot) also has; nulls never count."""


@dataclass(frozen=True)
class TableSpec:
    """What storage needs to know of a stream: its names, its declared columns, how its rows are keyed."""

    source: str
    stream: str
    kind: str = "partitions"  # or "snapshot": a full refresh's table is its last published refresh
    primary_key: tuple[str, ...] = ()
    declared: Mapping[str, str] = field(default_factory=dict)
    cursor: bool = False  # rows carry the parsed cursor value (_sync_cursor)

    @classmethod
    def of(cls, source: ApiSource, stream: Stream) -> TableSpec:
        kind = "snapshot" if source.refreshes(stream) else "partitions"
        return cls(source.name, stream.name, kind, tuple(stream.primary_keys), declared_types(stream.json_schema),
                   stream.incremental is not None)

    @property
    def name(self) -> str:
        return f"{self.source}/{self.stream}"


def typed_page(table: TableSpec, records: Sequence[dict[str, Any]],
               cursors: Sequence[datetime | None] | None = None) -> pa.RecordBatch:
    """A page's records as a typed batch of ``table`` (its declared columns, the engine's own columns)."""
    with page_work:
        return page_batch(records, table.declared, datetime.now(UTC), cursors)


def typed_by_window(
    table: TableSpec, parts: Sequence[tuple[Sequence[dict[str, Any]], Sequence[datetime | None] | None]],
) -> list[pa.RecordBatch | None]:
    """Several windows' records (each with its cursor values, or all without) typed as one batch, cut into
    each window's slice (``None``: a window without records). A page of a sparse range spans many windows;
    typing each window's few records apart would cost per window, not per record."""
    records = [record for some, _ in parts for record in some]
    if not records:
        return [None] * len(parts)
    cursors = None if parts[0][1] is None else [instant for _, some in parts for instant in some or ()]
    batch, offset, cut = typed_page(table, records, cursors), 0, []
    for some, _ in parts:
        cut.append(batch.slice(offset, len(some)) if some else None)
        offset += len(some)
    return cut


class Stage(ABC):
    """A unit of work being read: its pages, its checkpoint, the items it finished.

    Two kinds, one protocol. A ``ResumableStage`` (a refresh's chunk, a substream partition) commits
    each page to the state database with its checkpoint, so that a killed run goes on after its last
    page. A ``PrivateStage`` (one writer of one window, which re-reads its window whole if it dies)
    keeps its pages to itself until its publish: no transaction per page.
    """

    def __init__(self, store: Store, table: TableSpec, scope: str, checkpoint: Checkpoint, items: set[str]) -> None:
        self.store, self.table, self.scope = store, table, scope
        self.checkpoint, self.items = checkpoint, items

    def append(
        self, records: list[dict[str, Any]], requests: int = 0, bytes_received: int = 0, pages: int = 1,
        token: Any = None, item: str | None = None, done: bool = False,
        cursors: Sequence[datetime | None] | None = None,
    ) -> Checkpoint:
        """Stage ``records`` with the checkpoint that covers them (``token``, ``item``)."""
        batch = typed_page(self.table, records, cursors) if records else None
        return self.append_typed(batch, requests, bytes_received, pages, token, item, done)

    def append_typed(
        self, batch: pa.RecordBatch | None, requests: int = 0, bytes_received: int = 0, pages: int = 1,
        token: Any = None, item: str | None = None, done: bool = False,
    ) -> Checkpoint:
        """``append`` of records already typed: each window's slice of a page typed once (``typed_by_window``)."""
        previous = self.checkpoint
        count = batch.num_rows if batch is not None else 0
        checkpoint = Checkpoint(previous.records + count, previous.pages + pages,
                                previous.requests + requests, previous.bytes_received + bytes_received, token, done)
        self._keep(batch, checkpoint, item)
        self.checkpoint = checkpoint
        if item is not None:
            self.items.add(item)
        return checkpoint

    @abstractmethod
    def _keep(self, batch: pa.RecordBatch | None, checkpoint: Checkpoint, item: str | None) -> None:
        """Keep one page (``None``: a page without records) with the checkpoint that covers it."""

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The staged pages, one at a time."""

    @abstractmethod
    def discard(self) -> None:
        """Drop what the stage holds, and close it; its partition keeps its previous data and state."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResumableStage(Stage):
    """Each page committed to the state database with its checkpoint, under the stage's lock."""

    def __init__(self, store: Store, table: TableSpec, scope: str, checkpoint: Checkpoint, items: set[str],
                 lock: AbstractContextManager[None]) -> None:
        super().__init__(store, table, scope, checkpoint, items)
        self._lock: AbstractContextManager[None] | None = lock

    def _keep(self, batch: pa.RecordBatch | None, checkpoint: Checkpoint, item: str | None) -> None:
        data = None
        if batch is not None:
            with page_work:
                data = _ipc(batch)
        self.store._books.append_page(self.scope, data, checkpoint, item)

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.store.staged_batches(self.scope)

    def discard(self) -> None:
        with self.store._books.transaction() as db:
            self.store._books.drop_stage(db, self.scope)
        self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


class PrivateStage(Stage):
    """Pages held in memory, up to ``SPILL_BYTES``, and spilled beyond that to an unlinked local file: no
    encoding of a small window's pages at all, and nothing left behind by a killed process."""

    SPILL_BYTES = 4 * 2**20
    """Pages held in memory before they go to the spool file: memory stays bounded per window, whatever
    its size, and the common window (a few pages) never touches the disk before its publish."""

    def __init__(self, store: Store, table: TableSpec, scope: str) -> None:
        super().__init__(store, table, scope, Checkpoint(), set())
        self._held: list[pa.RecordBatch] = []  # pages not spilled yet, in order
        self._held_bytes = 0
        self._spool: BinaryIO | None = None

    def _keep(self, batch: pa.RecordBatch | None, checkpoint: Checkpoint, item: str | None) -> None:
        if batch is None:
            return
        self._held.append(batch)
        self._held_bytes += batch.nbytes
        if self._held_bytes <= self.SPILL_BYTES:
            return
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self.store.spool_dir)  # noqa: SIM115 -- closed by close()
        with page_work:
            for held in self._held:
                data = _ipc(held)
                self._spool.write(len(data).to_bytes(8, "little") + data)
        self._held, self._held_bytes = [], 0

    @property
    def spilled(self) -> bool:
        """Whether pages went to the spool file: the window grew past ``SPILL_BYTES``."""
        return self._spool is not None

    @property
    def held_bytes(self) -> int:
        """What the pages held in memory (not spilled yet) take: at most ``SPILL_BYTES`` after any append."""
        return self._held_bytes

    def batches(self) -> Iterator[pa.RecordBatch]:
        if (spool := self._spool) is not None:
            spool.seek(0)
            try:
                while header := spool.read(8):
                    yield from _batches(spool.read(int.from_bytes(header, "little")))
            finally:
                spool.seek(0, os.SEEK_END)  # appends go on at the end, even after a read cut short
        yield from self._held

    def discard(self) -> None:
        self.close()

    def close(self) -> None:
        self._held, self._held_bytes = [], 0
        if self._spool is not None:
            self._spool.close()  # the file was never linked: closing it is deleting it
            self._spool = None


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _batches(data: bytes) -> Iterator[pa.RecordBatch]:
    with pa.ipc.open_stream(data) as reader:
        yield from reader


Part = tuple[str | None, Callable[[], Iterator[pa.RecordBatch]]]
"""What a publish writes: a partition (or chunk) key and its staged pages; or ``None`` and rows that carry
their own partition key (published before, copied along)."""

Tallies = Callable[[str], "KeyTally | None"]
"""Which key tally counts a published partition's rows (``None``: none does)."""


class KeyTally:
    """Counts rows whose (typed) primary key another row of the same publish has; nulls never count.

    Fed each page as it is written, it holds only the key columns, copied out of the page (a slice
    would keep the whole page in memory), and counts by sorting: a hash table of the keys costs
    ten times their size.
    """

    def __init__(self, table: TableSpec, schema: pa.Schema) -> None:
        keys = [k for k in table.primary_key if k in schema.names]
        self.keys = keys if table.primary_key and len(keys) == len(table.primary_key) else []
        self._schema = pa.schema([pa.field(k, pa.string() if isinstance(schema.field(k).type, pa.JsonType)
                                           else schema.field(k).type) for k in self.keys])
        self._columns: list[list[pa.Array]] = [[] for _ in self.keys]

    def add(self, batch: pa.RecordBatch) -> None:
        if self.keys:
            for column, values in zip(self._columns, conform(batch, self._schema).columns, strict=True):
                column.append(pa.concat_arrays([values]))

    def duplicates(self) -> int:
        if not self.keys or not self._columns[0]:
            return 0
        rows = pa.Table.from_arrays([pa.concat_arrays(c) for c in self._columns], schema=self._schema).drop_null()
        if rows.num_rows < 2:
            return 0
        ordered = rows.take(pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in self.keys]))
        same: pa.Array | None = None
        for key in self.keys:
            column = ordered.column(key).combine_chunks()
            equal = pc.equal(column.slice(1), column.slice(0, len(column) - 1))
            same = equal if same is None else pc.and_(same, equal)
        return int(pc.sum(same).as_py() or 0)


class Store(ABC):
    """Staging, checkpoints and state (shared SQL), plus a backend's published data.

    The state database is this package's own: outside it, a full refresh's lifecycle is asked of
    ``refreshes`` and a window's of ``partition_states``.
    """

    _books: Bookkeeping

    def refreshes(self, table: TableSpec) -> RefreshLedger:
        """``table``'s full refreshes: the running one, its chunks and where it resumes, the published one."""
        return RefreshLedger(self, table)

    def checkpoint(self, scope: str) -> Checkpoint | None:
        """Where the stage of ``scope`` stands (None: never opened, or dropped when its data was published)."""
        return self._books.checkpoint(scope)

    # --- staging ---

    def open_stage(self, table: TableSpec, scope: str, start_token: Any = None) -> Stage:
        """A resumable stage: it goes on from its checkpoint, held by one process at a time."""
        lock = self.lock(scope)
        lock.__enter__()
        try:
            checkpoint = self._books.checkpoint(scope)
            if checkpoint is None:
                checkpoint = Checkpoint(token=start_token)
                self._books.reset_stage(scope, checkpoint)
            return ResumableStage(self, table, scope, checkpoint, self._books.stage_items(scope), lock)
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    def private_stage(self, table: TableSpec, key: str) -> Stage:
        """A stage of one writer of one window: not resumable, never shared, gone when closed or killed."""
        return PrivateStage(self, table, f"{table.name}/window/{key}")

    spool_dir: Path | None = None
    """Where private stages spool their pages (a local disk; default: the system's temporary folder)."""

    def staged_batches(self, scope: str) -> Iterator[pa.RecordBatch]:
        """A resumable stage's pages, one at a time."""
        for data in self._books.staged_pages(scope):
            yield from _batches(data)

    @property
    @abstractmethod
    def location(self) -> str:
        """Where this store is, without secrets: processes that give the same location share one store."""

    @abstractmethod
    def lock(self, scope: str) -> AbstractContextManager[None]:
        """Held while a process reads a resumable stage (or runs a run, see ``dagster.killed_runs``);
        raises ``StageBusyError`` if another holds it. A holder that dies, however, releases it."""

    @abstractmethod
    def locked(self, scope: str) -> bool:
        """Whether a process holds ``scope``'s lock right now (without ever making it fail to get it)."""

    # --- publishing ---

    @abstractmethod
    def publish_partitions(self, stages: Sequence[Stage], states: Sequence[PartitionState]) -> list[Published]:
        """Replace each partition's data with its stage's, and commit their state rows: in one transaction,
        whatever their number (the windows a request slice read). Each stays replaceable on its own later.
        Drift is reported once, on the first; duplicate keys per partition."""

    def publish_partition(self, stage: Stage, state: PartitionState) -> Published:
        return self.publish_partitions([stage], [state])[0]

    @abstractmethod
    def publish_refresh(self, table: TableSpec, refresh: int, chunks: int) -> Published:
        """Make the staged chunks of ``refresh`` the stream's snapshot at once; remove older ones."""

    def _chunk_parts(self, table: TableSpec, refresh: int, chunks: int) -> list[Part]:
        scopes = [chunk_scope(table.source, table.stream, refresh, c) for c in range(chunks)]
        return [(chunk_key(refresh, c), partial(self.staged_batches, scope)) for c, scope in enumerate(scopes)]

    @abstractmethod
    def _remove_refresh_data(self, table: TableSpec, refresh: int) -> None:
        """Delete a superseded refresh's published data."""

    def _abandon_refresh(self, table: TableSpec) -> int | None:
        """Give up the running refresh (its cursor expired, say); the next run starts from the first page."""
        refresh = self._books.supersede_running(table.source, table.stream)
        self._remove_superseded(table)
        return refresh

    def _remove_superseded(self, table: TableSpec) -> None:
        for refresh in self._books.superseded(table.source, table.stream):
            self._remove_refresh_data(table, refresh)
            self._books.mark_removed(table.source, table.stream, refresh)

    def _partition_columns(self, parts: list[Part], table: TableSpec) -> tuple[dict[str, str], pa.Schema]:
        """The columns of what the stages hold (declared first), and the schema to publish it with."""
        schemas = [batch.schema for _, batches in parts for batch in batches()]
        columns, _ = merge_schemas(dict(table.declared), schemas)
        return columns, arrow_schema(columns)

    def _merge_stream_columns(self, db: Any, table: TableSpec, columns: dict[str, str]) -> tuple[dict[str, str],
                                                                                                list[Drift]]:
        """Widen the stream's columns by ``columns`` inside the publish transaction; the changes are drift."""
        known = self._books.columns_in(db, table.source, table.stream)
        merged, drift = merge_schemas(known, [arrow_schema(columns)])
        if merged != known:
            self._books.save_columns(db, table.source, table.stream, merged)
        for change in drift:
            log.warning("%s: column %s", table.name, change)
        return merged, drift

    def _rows(self, parts: list[Part], schema: pa.Schema, tallies: Tallies) -> Iterator[pa.RecordBatch]:
        """What a publish writes, a page at a time: each page in ``schema``, with its partition key column.

        The one pass over the staged pages that both backends write from; the key tallies ride along.
        """
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        for key, batches in parts:
            tally = None if key is None else tallies(key)
            for batch in batches():
                if key is None:  # copied rows: their partition column is theirs
                    yield conform(batch, full)
                    continue
                rows = conform(batch, schema)
                if tally is not None:
                    tally.add(rows)
                yield pa.RecordBatch.from_arrays([*rows.columns, pa.array([key] * rows.num_rows, pa.string())],
                                                 schema=full)

    @staticmethod
    def _published(merged: dict[str, str], drift: list[Drift], tallies: dict[str, KeyTally],
                   states: Sequence[PartitionState]) -> list[Published]:
        """What a grouped publish changed, partition by partition: the drift once, on the first."""
        return [Published(merged, drift if i == 0 else [], tallies[s.partition_key].duplicates())
                for i, s in enumerate(states)]

    # --- reading ---

    @abstractmethod
    def read_partitions(self, table: TableSpec, keys: list[str]) -> Iterator[pa.RecordBatch]:
        """The given partitions' rows, in the stream's current columns; a partition never synced is an error."""

    @abstractmethod
    def read_snapshot(self, table: TableSpec) -> Iterator[pa.RecordBatch]:
        """The last published refresh; nothing if none was published."""

    def records(self, table: TableSpec, keys: list[str]) -> Iterator[dict[str, Any]]:
        return iter_records(self.read_partitions(table, keys))

    def snapshot_records(self, table: TableSpec) -> Iterator[dict[str, Any]]:
        """The published snapshot's records with dates as the API's text: substreams build requests from them."""
        return iter_records(self.read_snapshot(table), dates_as_text=True)

    def read_schema(self, table: TableSpec) -> pa.Schema:
        """What reads return: the stream's columns, then its partition (or chunk) key."""
        columns = self._books.columns(table.source, table.stream)
        return arrow_schema(columns).append(pa.field(PARTITION_COLUMN, pa.string()))

    # --- state ---

    def partition_states(self, table: TableSpec) -> dict[str, PartitionState]:
        return self._books.partition_states(table.source, table.stream)

    def close(self) -> None:
        self._books.close()


def open_store(location: str | Path | None = None, home: Path | None = None) -> Store:
    """The store at ``location``: a ``postgresql://`` URL or a folder.

    Without one, ``SYNC_ASSETS_STORE_URL`` says, and without that it is the local store in ``home``
    (default: under the instance, see ``layout``). This is the one place that decides.
    """
    from sync_assets.storage.duckdb import DuckDBStore  # the backends import this module

    text = str(location or os.environ.get("SYNC_ASSETS_STORE_URL") or "")
    if text.startswith(("postgresql://", "postgres://")):
        from sync_assets.storage.postgres import PostgresStore

        return PostgresStore(text)
    return DuckDBStore(Path(text) if text else store_dir(home))
