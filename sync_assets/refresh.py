"""Resumable full refresh: a stream without a cursor field, read in checkpointed chunks of pages.

After every page, its records and the next page token are committed together (a ``Stage``
append), so a run killed at any point, run again, continues from the last committed token. The
paginator's token *is* the checkpoint: stream authors write no state code.

A refresh is cut into chunks of ``chunk_pages`` pages (the Dagster partitions of the stream). With
a paginator that reads in order (cursor, next URL, Link header) each chunk, when it reaches its end,
registers the next one with its start token. With random access (page number or offset, and a total
in the first response) the first page registers every chunk at once and the chunks are read
concurrently. When the last chunk is done, the refresh is published as the stream's snapshot at
once; until then readers see the previous one. The next refresh starts from the first page again.

A substream of a full-refresh parent is refreshed the same way: its pages are its parents (each one's
children read whole), taken from the parent's published snapshot (``substream.ParentPages``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sync_assets.concurrency import Units
from sync_assets.errors import SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.reader import PageSource, StreamReader
from sync_assets.storage import Checkpoint, Published, Stage, Store, TableSpec
from sync_assets.storage.layout import chunk_key, chunk_scope
from sync_assets.substream import refresh_pages, stored_parents


@dataclass(frozen=True)
class ChunkResult:
    refresh: int
    chunk: int
    stats: RequestStats
    seconds: float
    checkpoint: Checkpoint | None = None
    error: Exception | None = None

    @property
    def key(self) -> str:
        return chunk_key(self.refresh, self.chunk)


class FullRefresh:
    """Advances a stream's running refresh (or starts one) as far as it can go in this run."""

    def __init__(self, reader: StreamReader, store: Store, concurrency: int) -> None:
        self.reader, self.store, self.concurrency = reader, store, concurrency
        self.pages: PageSource = refresh_pages(reader, lambda parent: stored_parents(store, reader, parent))
        self.table = TableSpec.of(reader.source, reader.stream)
        self.ledger = store.refreshes(self.table)
        self.source, self.stream = reader.source.name, reader.stream.name
        self.published: Published | None = None
        self.rows: int | None = None  # the published snapshot's, once this run publishes it
        self._followed: set[int] | None = None  # set by run()
        self._lock = threading.Lock()  # chunks are handed in by the chunks being read

    def run(self) -> Iterator[ChunkResult]:
        """Read every unfinished chunk, registering new ones as they appear; yields each as it ends."""
        state = self.ledger.current()
        self.refresh = state.refresh
        # Every token this refresh followed so far, in any chunk and any run: a cursor pointing back into
        # pages already staged is then a cycle, not new pages. Read once a run; the run's chunks add
        # theirs (a cursor's chunks run one after another, each from where the last ended). Offsets
        # computed from the page size cannot point back: those chunks keep nothing.
        self._followed = None if self.pages.random_access else self.ledger.followed_tokens(self.refresh)
        self._submitted: set[int] = set()
        self._units: Units[tuple[int, object], ChunkResult] = Units(
            lambda chunk: self._read_chunk(*chunk), self.concurrency, "chunk")
        for result in self._units.run(self._unsubmitted(self._chunks())):
            if result.checkpoint is not None or result.error is not None:
                yield result
        self._publish_if_complete()

    def _unsubmitted(self, chunks: Mapping[int, object]) -> list[tuple[int, object]]:
        """The chunks among ``chunks`` that this run has not started, in order, now counted as started."""
        with self._lock:
            new = sorted((chunk, token) for chunk, token in chunks.items() if chunk not in self._submitted)
            self._submitted.update(chunk for chunk, _ in new)
        return new

    def _chunks(self) -> dict[int, object]:
        state = self.ledger.running()
        return state.chunks if state is not None and state.refresh == self.refresh else {}

    def _scope(self, chunk: int) -> str:
        return chunk_scope(self.source, self.stream, self.refresh, chunk)

    def _read_chunk(self, chunk: int, start_token: object) -> ChunkResult:
        started, stats = time.monotonic(), RequestStats()
        try:
            stage = self.store.open_stage(self.table, self._scope(chunk), start_token)
        except Exception as exc:
            return ChunkResult(self.refresh, chunk, stats, time.monotonic() - started, error=exc)
        try:
            if stage.checkpoint.done:
                return ChunkResult(self.refresh, chunk, stats, 0.0)  # finished by an earlier run
            return self._read_pages(chunk, stage, stats, started)
        except Exception as exc:
            return ChunkResult(self.refresh, chunk, stats, time.monotonic() - started, error=exc)
        finally:
            stage.close()

    def _read_pages(self, chunk: int, stage: Stage, stats: RequestStats, started: float) -> ChunkResult:
        chunk_pages = self.reader.stream.chunk_pages
        counted = RequestStats()  # what earlier pages of this run already put into the checkpoint
        for page in self.pages.pages(stats, start_token=stage.checkpoint.token, followed=self._followed):
            if page.total_pages is not None and chunk == 0:
                self._register_all(page.total_pages)
            end_of_chunk = page.is_last or stage.checkpoint.pages + 1 >= chunk_pages
            if end_of_chunk and not page.is_last:
                self._hand_over(chunk + 1, page.next_token)
            stage.append(page.records, stats.requests - counted.requests, stats.bytes - counted.bytes,
                         token=page.next_token, done=end_of_chunk)
            counted = RequestStats(requests=stats.requests, bytes=stats.bytes)
            if end_of_chunk:
                break
        return ChunkResult(self.refresh, chunk, stats, time.monotonic() - started, checkpoint=stage.checkpoint)

    def _hand_over(self, chunk: int, start_token: object) -> None:
        """Where the next chunk starts, settled before this chunk's last checkpoint.

        Done first because a kill in between must not strand the refresh. With random access the
        next chunk's start was computed from the page size; reaching anything else means the API's
        pages are not that size, and reading on would skip or repeat records.
        """
        if self.pages.random_access:
            planned = self._chunks().get(chunk)
            if planned != start_token:
                raise SyncSystemError(
                    f"chunk {chunk - 1} of {self.source}/{self.stream} ended at page token {start_token!r}, but chunk "
                    f"{chunk} was planned to start at {planned!r}; the API's pages are not the configured size"
                )
            return
        self.ledger.set_chunk_start(self.refresh, chunk, start_token)
        self._units.add(self._unsubmitted({chunk: start_token}))

    def _register_all(self, total_pages: int) -> None:
        """Random access: every chunk's start token is known from the first response."""
        chunk_pages = self.reader.stream.chunk_pages
        chunks = -(-total_pages // chunk_pages)
        starts = {c: self.pages.token_for_page(c * chunk_pages) for c in range(1, chunks)}
        self.ledger.add_chunks(self.refresh, starts)
        self._units.add(self._unsubmitted(starts))

    def _publish_if_complete(self) -> None:
        state = self.ledger.running()
        if state is None or state.refresh != self.refresh or not self.ledger.complete(state):
            return
        checkpoints = self.ledger.checkpoints(state).values()
        self.published = self.store.publish_refresh(self.table, self.refresh, len(checkpoints))
        self.rows = sum(c.records for c in checkpoints if c is not None)
