"""Substreams: a child stream read once per record of its parent, with the parent's partitions.

A substream of an **incremental** parent has the parent's windows (``sync_substream``). A substream of a
**full-refresh** parent is itself a resumable full refresh (``refresh.FullRefresh``) whose pages are its
parents (``ParentPages``), as is a stream read over ``for_each`` lists (fixed values, or another
stream's). A substream with windows of its own (an ``incremental`` block: a report per account per day)
reads its windows for every parent the store has (a full refresh's published snapshot, or every record a
windowed parent holds), through request slices (``sync_substream`` again): Airbyte's cursor per
partition laid out as Dagster partitions.

The parents come from the store (what the parent asset synced), never from the parent's API again.
Children are fetched on the one scheduler (``concurrency``), shared by all partitions of the run
(under the API's shared rate limit); each parent's children are staged in its partition's stage
together with the parent's key, in one transaction, so a killed run, re-run, skips the parents already done. A
partition is published (data and state together) once all of its parents are done.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_assets.concurrency import completed
from sync_assets.errors import ConfigurationError, SyncError, SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.reader import Page, PageSource, StreamReader
from sync_assets.records import dig
from sync_assets.slices import plan_slices, split_by_window
from sync_assets.spec import ForEach, Stream
from sync_assets.storage import PartitionState, Published, Stage, Store, TableSpec, typed_by_window
from sync_assets.storage.layout import partition_scope
from sync_assets.windows import Window


@dataclass
class PartitionResult:
    """One partition of a substream: its state once published, or the first error met."""

    key: str
    window: Window | None
    stats: RequestStats = field(default_factory=RequestStats)
    parents: int = 0
    parents_skipped: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    state: PartitionState | None = None
    published: Published | None = None
    error: Exception | None = None


def parent_id(parent: Stream, record: dict[str, Any]) -> str:
    """A parent's identity in the checkpoint: its primary key, or a digest of the record.

    A parent without its key would share one identity with every other such parent, and all but the
    first would be skipped as done: that is an error, not something to guess around.
    """
    if parent.primary_keys:
        values = [dig(record, key) for key in parent.primary_keys]
        if any(value is None for value in values):
            raise SyncSystemError(
                f"a {parent.name} record has no value for its primary key {', '.join(parent.primary_keys)}; "
                f"substreams tell parents apart by it: check the primary_key of stream {parent.name!r}"
            )
        return json.dumps(values, default=str)
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def sync_substream(
    reader: StreamReader, store: Store, partitions: Sequence[tuple[str, Window | None]], concurrency: int,
) -> Iterator[PartitionResult]:
    """Sync the children of every parent in ``partitions``; yields each partition as it is published.

    Without windows of its own, a child's partition reads the parents of the windowed parent's partition of
    the same key, listed from the store as threads free up (the listing stays lazy).

    With windows of its own, every partition has the same parents: a full-refresh parent's published
    snapshot, or every record a windowed parent holds (Airbyte's cursor per partition, which reads the
    parent whole). They are listed once, and each is read once per request slice, not once per window:
    the run's adjacent windows through one request sequence for their union (no wider than the stream's
    ``max_slice``), the records split into their windows by cursor value, as an incremental stream's are
    (``slices``). A year of daily windows over five tickers costs ten request sequences at a concurrency
    of 10, not 1,825.

    Each unit (a parent over one partition, or over one slice of them) is fetched on the one scheduler,
    and a partition is published as soon as every unit that covers it is answered.
    """
    assert reader.stream.parent is not None
    parent = reader.source.stream(reader.stream.parent.stream)
    table = TableSpec.of(reader.source, reader.stream)
    results = {key: PartitionResult(key, window) for key, window in partitions}
    stages: dict[str, Stage] = {}
    open_units: dict[str, int] = {key: 0 for key, _ in partitions}  # units handed out and not answered yet
    listed: set[str] = set()  # partitions whose units are all handed out

    def todo(keys: tuple[str, ...], ident: str, record: dict[str, Any], windows: tuple[Window, ...] = ()
             ) -> Iterator[_Unit]:
        """The unit, for those of its partitions that still need this parent (a re-run of a killed run
        skips the parents it staged)."""
        needed = []
        for key in keys:
            if results[key].error is None and ident in stages[key].items:
                results[key].parents_skipped += 1
            elif results[key].error is None:
                needed.append(key)
        for key in needed:
            open_units[key] += 1
        if needed:
            yield _Unit(keys, tuple(needed), ident, record, windows)

    def units() -> Iterator[_Unit]:
        if reader.stream.incremental is None:
            parent_table = TableSpec.of(reader.source, parent)
            for key in results:
                try:
                    seen: set[str] = set()  # a parent listed twice in its partition (pages shifted under the read)
                    for record in store.records(parent_table, [key]):
                        ident = parent_id(parent, record)
                        if ident in seen:
                            results[key].parents_skipped += 1
                            continue
                        seen.add(ident)
                        yield from todo((key,), ident, record)
                except SyncError as exc:
                    results[key].error = exc
                listed.add(key)
        else:
            everyone = _every_parent(store, reader, parent, results)
            key_of = {window: key for key, window in partitions if window is not None}
            # as many slices as keep every thread busy over these parents, and no more
            per_parent = -(-concurrency // max(1, len(everyone)))
            for piece in plan_slices(list(key_of), reader.stream.incremental, per_parent):
                keys = tuple(key_of[window] for window in piece.windows)
                for ident, record in everyone:
                    yield from todo(keys, ident, record, piece.windows)
                listed.update(keys)
        listed.update(open_units)

    def children(unit: _Unit) -> tuple[_Unit, _Answer | Exception]:
        try:
            return unit, _children(reader, unit.record, unit.windows)
        except Exception as exc:
            return unit, exc

    try:
        for key, _ in partitions:
            stages[key] = store.open_stage(table, partition_scope(reader.source.name, reader.stream.name, key))
        for unit, answer in completed(children, units(), concurrency, "children"):
            for key in unit.needed:
                open_units[key] -= 1
            if isinstance(answer, Exception):
                for key in unit.needed:
                    results[key].error = results[key].error or answer
            else:
                found, pages, stats = answer
                batches = typed_by_window(table, found)  # the parent's children typed once, cut by window
                for key in unit.needed:  # the requests are counted once, with the first (every stage's
                    first, result = key == unit.needed[0], results[key]  # append is a page of its own)
                    if first:
                        result.stats.merge(stats)
                    result.parents += 1
                    # Kept even if a sibling failed: a re-run then skips this parent.
                    stages[key].append_typed(batches[unit.keys.index(key)], stats.requests if first else 0,
                                             stats.bytes if first else 0, pages=pages if first else 1,
                                             item=unit.ident)
            yield from _publish_ready(store, stages, results, open_units, listed)
        yield from _publish_ready(store, stages, results, open_units, listed)
    finally:
        for stage in stages.values():
            stage.close()


@dataclass(frozen=True)
class _Unit:
    """One parent's children over some partitions: one partition of a windowed parent, or one request slice
    of the child's own windows (``windows``, one per key, to split the records by)."""

    keys: tuple[str, ...]
    needed: tuple[str, ...]  # the keys that have not staged this parent yet
    ident: str
    record: dict[str, Any]
    windows: tuple[Window, ...] = ()


_Found = tuple[list[dict[str, Any]], list[datetime | None] | None]
"""Records, and their cursor values when the child has windows of its own."""
_Answer = tuple[list[_Found], int, RequestStats]
"""A parent's children (by window of the unit, or all in one), the pages they took, and what they cost."""


def _every_parent(store: Store, reader: StreamReader, parent: Stream, results: dict[str, PartitionResult]
                  ) -> list[tuple[str, dict[str, Any]]]:
    """(id, record) of every parent of a child with windows of its own, in id order: a full-refresh parent's
    published snapshot, or the newest version of every record a windowed parent holds. A listing that
    fails fails every partition."""
    try:
        by_id = {parent_id(parent, record): record for record in stored_parents(store, reader, parent)()}
    except SyncError as exc:
        for result in results.values():
            result.error = exc
        return []
    return sorted(by_id.items())


def _children(reader: StreamReader, record: dict[str, Any], windows: tuple[Window, ...]) -> _Answer:
    """One parent's children (over ``windows``, split by them, for a child with windows of its own), the
    pages they took, and what the requests cost."""
    stats, pages = RequestStats(), 0
    found: list[_Found] = [([], [] if windows else None) for _ in windows or (None,)]
    starts = [window.start for window in windows[1:]]
    for page in reader.pages(stats, window=Window(windows[0].start, windows[-1].end) if windows else None,
                             parent=record):
        for index, records, cursors in split_by_window(page, starts):
            kept, instants = found[index]
            kept.extend(records)
            if instants is not None:
                instants.extend(cursors or [None] * len(records))
        pages += 1
    return found, pages, stats


def _publish_ready(
    store: Store, stages: dict[str, Stage], results: dict[str, PartitionResult],
    open_keys: dict[str, int], listed: set[str],
) -> Iterator[PartitionResult]:
    """Publish (or report as failed) every partition whose parents are all listed and answered."""
    for key in [k for k in listed if open_keys.get(k) == 0]:
        del open_keys[key]
        result, stage = results[key], stages[key]
        result.seconds = time.monotonic() - result.started
        if result.error is None:
            c = stage.checkpoint
            state = PartitionState(key, result.window, c.records, c.pages, c.requests, c.bytes_received, None,
                                   datetime.now(UTC))
            try:
                result.published = store.publish_partition(stage, state)
                result.state = state
            except Exception as exc:
                result.error = exc
        yield result



class ParentPages:
    """A stream read once per parent, as pages: page *i* is the records read for the parent at *i* among
    ``listing()``, ordered by the parent's ``identity``. The parents are a full-refresh parent's records (its
    published snapshot in Dagster, a read of it in Airbyte's protocol), or the combinations of a stream's
    ``for_each`` lists.

    The token of a page is its parent's identity, so a refresh that resumes (in a later run, after the
    parent published a new snapshot) continues after the last parent it finished, as keyset pagination
    does: no parent is read twice in one refresh. The parents are known up front, so every chunk of the
    refresh is registered with the first page and chunks are read concurrently.
    """

    random_access = True

    def __init__(self, reader: StreamReader, identity: Callable[[dict[str, Any]], str],
                 listing: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.reader, self._identity, self._listing = reader, identity, listing
        self._parents: list[tuple[str, dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    @property
    def stream(self) -> Stream:
        return self.reader.stream

    def parents(self) -> list[tuple[str, dict[str, Any]]]:
        """(identity, record) of every parent, in identity order; listed once."""
        with self._lock:
            if self._parents is None:
                by_id = {self._identity(record): record for record in self._listing()}
                self._parents = sorted(by_id.items())
            return self._parents

    def token_for_page(self, index: int) -> str | None:
        return None if index == 0 else self.parents()[index][0]

    def pages(self, stats: RequestStats, *, start_token: Any = None, followed: set[int] | None = None
              ) -> Iterator[Page]:
        parents = self.parents()
        identities = [ident for ident, _ in parents]
        first = 0 if start_token is None else bisect_left(identities, str(start_token))
        if first >= len(parents):  # no parents (left): one empty page ends the refresh
            yield Page([], start_token, None, total_pages=1 if start_token is None else None)
            return
        for index in range(first, len(parents)):
            ident, record = parents[index]
            children = [child for page in self.reader.pages(stats, parent=record) for child in page.records]
            following = identities[index + 1] if index + 1 < len(parents) else None
            total = len(parents) if start_token is None and index == 0 else None
            yield Page(children, None if index == 0 else ident, following, total_pages=total)


Listing = Callable[[], Iterable[dict[str, Any]]]
"""How a full refresh over parents finds them: the parent's published snapshot, or a read of the parent."""


def refresh_pages(reader: StreamReader, parents_of: Callable[[Stream], Listing]) -> PageSource:
    """What a full refresh of ``reader``'s stream reads: its API's pages, or one page per parent (of a
    full-refresh parent, listed by ``parents_of``) or per combination of its ``for_each`` values (fixed, or
    the fields of records that ``parents_of`` lists)."""
    stream = reader.stream
    if stream.parent is not None:
        parent = reader.source.stream(stream.parent.stream)
        return ParentPages(reader, functools.partial(parent_id, parent), parents_of(parent))
    if stream.for_each:
        fields = [each.field for each in stream.for_each]

        def values(each: ForEach) -> list[Any]:
            if each.values is not None:
                return list(each.values)
            assert each.values_of is not None
            key = each.values_of.key  # a record without the field names no read (as Airbyte skips it)
            listed = (record.get(key) for record in parents_of(reader.source.stream(each.values_of.stream))())
            return list(dict.fromkeys(value for value in listed if value is not None))

        def combinations() -> Iterator[dict[str, Any]]:
            for combination in itertools.product(*(values(each) for each in stream.for_each)):
                yield dict(zip(fields, combination, strict=True))

        return ParentPages(reader, lambda record: json.dumps([record[f] for f in fields]), combinations)
    return reader


def stored_parents(store: Store, reader: StreamReader, parent: Stream) -> Listing:
    """What a child reads of a parent in the store: a full refresh's published snapshot, or every record a
    windowed parent holds."""
    return published_parents(store, reader, parent) if reader.source.refreshes(parent) \
        else held_parents(store, reader, parent)


def held_parents(store: Store, reader: StreamReader, parent: Stream) -> Listing:
    """The listing of every record a windowed parent holds, over every window it synced, the newest version
    of each last; refused with advice while it holds none."""
    table = TableSpec.of(reader.source, parent)

    def listing() -> Iterator[dict[str, Any]]:
        keys = sorted(store.partition_states(table))  # partition keys sort as their windows do
        if not keys:
            raise ConfigurationError(
                f"stream {reader.stream.name!r} reads every record that {parent.name!r} holds, and "
                f"{parent.name!r} has synced no window yet: sync {parent.name!r} first")
        return store.records(table, keys)

    return listing


def published_parents(store: Store, reader: StreamReader, parent: Stream) -> Listing:
    """The listing of a parent's published snapshot, refused with advice while it has none."""
    table = TableSpec.of(reader.source, parent)

    def listing() -> Iterator[dict[str, Any]]:
        if store.refreshes(table).published() is None:
            raise ConfigurationError(
                f"stream {reader.stream.name!r} reads the parents that {parent.name!r} published, and "
                f"{parent.name!r} has published none yet: refresh {parent.name!r} first")
        return store.snapshot_records(table)

    return listing
