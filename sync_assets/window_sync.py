"""Syncing windows into the store: read through request slices, each window committed on its own.

The run's windows are read through slices that may span many of them (``slices``); each record goes
to a private stage of the window that holds its cursor value, and when a slice is read to its end
its windows are published together (data and state rows in one transaction), each replacing its
partition whole and staying replaceable on its own.
Results come back in completion order, one per window, so the caller can report each as soon as it
is durable. A slice that fails (to read or to publish) fails its windows, which keep their previous
data and state; the other slices still complete, and a re-run needs only the failures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.slices import Slice, SliceRead, WindowRecords, read_slices
from sync_assets.storage import PartitionState, Published, Store, TableSpec, typed_by_window
from sync_assets.windows import Window


@dataclass(frozen=True)
class WindowResult:
    """How one window went: ``state`` (and what the publish found) when committed, ``error`` when not.

    A slice's requests, pages and out-of-window records are counted on its first window, so that the
    windows of a run add up to what the run cost; ``slice`` says which windows shared them.
    """

    key: str
    window: Window
    slice: Slice
    stats: RequestStats
    dropped: int
    seconds: float
    state: PartitionState | None = None
    published: Published | None = None
    error: Exception | None = None
    without_cursor: int = 0  # records that lacked the cursor field (dropped or kept, as the stream says)


class _Stages:
    """A slice's sink in the store: a private stage per window, all published together once the slice is read."""

    def __init__(self, store: Store, table: TableSpec, keys: list[str]) -> None:
        self.store, self.table, self.keys = store, table, keys
        self.stages = [store.private_stage(table, key) for key in keys]
        self.results: list[WindowResult] = []

    def put(self, parts: list[WindowRecords]) -> None:
        """A page typed once, each window's stage keeping its slice (``typed_by_window``)."""
        for (index, _, _), batch in zip(parts, typed_by_window(self.table, [(r, c) for _, r, c in parts]), strict=True):
            self.stages[index].append_typed(batch, pages=0)

    def commit(self, read: SliceRead[Any]) -> None:
        """The slice's windows published together: one transaction, each window still its own partition."""
        states = [
            PartitionState(self.keys[index], window.window, window.records, read.pages if index == 0 else 0,
                           read.stats.requests if index == 0 else 0, read.stats.bytes if index == 0 else 0,
                           window.max_cursor, datetime.now(UTC))
            for index, window in enumerate(read.windows)
        ]
        try:
            published = self.store.publish_partitions(self.stages, states)
        except Exception as exc:
            self.discard()
            self.results = [_result(read, index, key, error=exc) for index, key in enumerate(self.keys)]
            return
        self.results = [_result(read, index, state.partition_key, state, done)
                        for index, (state, done) in enumerate(zip(states, published, strict=True))]

    def discard(self) -> None:
        for stage in self.stages:
            stage.discard()


def _result(read: SliceRead[Any], index: int, key: str, state: PartitionState | None = None,
            published: Published | None = None, error: Exception | None = None) -> WindowResult:
    first = index == 0
    return WindowResult(
        key, read.windows[index].window, read.slice,
        read.stats if first else RequestStats(), read.dropped if first else 0, read.seconds, state, published,
        error, read.without_cursor if first else 0,
    )


def sync_windows(
    reader: StreamReader, store: Store, windows: Sequence[tuple[str, Window]], concurrency: int
) -> Iterator[WindowResult]:
    """Sync every ``(key, window)`` through request slices, ``concurrency`` at once; yields each window's
    result as its slice finishes."""
    keys = {window: key for key, window in windows}
    table = TableSpec.of(reader.source, reader.stream)

    def stages(slice_: Slice) -> _Stages:
        return _Stages(store, table, [keys[window] for window in slice_.windows])

    for read in read_slices(reader, list(keys), concurrency, stages):
        if read.error is not None:
            yield from (_result(read, i, keys[w.window], error=read.error) for i, w in enumerate(read.windows))
        else:
            yield from read.sink.results
