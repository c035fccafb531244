"""Substreams: a child stream read once per record of its parent, with the parent's partitions.

The parents come from the store (what the parent asset synced), never from the parent's API again.
Children are fetched on a bounded thread pool shared by all partitions of the run (under the API's
shared rate limit); each parent's children are appended to its partition's journal together with
the parent's key, so a killed run, re-run, skips the parents already done. A partition is published
(file renamed into place, then its state committed) once all of its parents are done.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync_assets.errors import SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.records import dig
from sync_assets.spec import Stream
from sync_assets.store import Journal, LocalStore, PartitionState
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
    reader: StreamReader, store: LocalStore, parent: Stream, partitions: Sequence[tuple[str, Window | None]],
    concurrency: int,
) -> Iterator[PartitionResult]:
    """Sync the children of every parent in ``partitions``; yields each partition as it is published."""
    source, child = reader.source.name, reader.stream.name
    results = {key: PartitionResult(key, window) for key, window in partitions}
    journals: dict[str, Journal] = {}
    try:
        for key, _ in partitions:
            journals[key] = Journal(store, f"{source}/{child}/partition/{key}", _staging(store, source, child, key))
        work = _parents(store, source, parent, [key for key, _ in partitions], journals, results)
        in_flight: dict[Future[tuple[list[dict[str, Any]], RequestStats]], tuple[str, str]] = {}
        open_keys: dict[str, int] = {key: 0 for key, _ in partitions}
        listed: set[str] = set()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="children") as pool:
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < concurrency * 2:
                    item = next(work, None)
                    if item is None:
                        exhausted = True
                        listed.update(open_keys)
                        break
                    key, ident, record, earlier_keys = item
                    listed.update(earlier_keys)
                    if results[key].error is None:
                        open_keys[key] += 1
                        in_flight[pool.submit(_children, reader, record)] = (key, ident)
                yield from _publish_ready(store, source, child, journals, results, open_keys, listed)
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    key, ident = in_flight.pop(future)
                    open_keys[key] -= 1
                    result = results[key]
                    try:
                        children, stats = future.result()
                    except Exception as exc:
                        result.error = result.error or exc
                        continue
                    result.stats.merge(stats)
                    result.parents += 1
                    # Kept even if a sibling failed: a re-run then skips this parent.
                    journals[key].append(children, stats.requests, item=ident)
        yield from _publish_ready(store, source, child, journals, results, open_keys, listed)
    finally:
        for journal in journals.values():
            journal.close()


def _staging(store: LocalStore, source: str, stream: str, key: str) -> Path:
    path = store.partition_path(source, stream, key)
    return path.parent / ".staging" / path.name


def _parents(
    store: LocalStore, source: str, parent: Stream, keys: list[str], journals: dict[str, Journal],
    results: dict[str, PartitionResult],
) -> Iterator[tuple[str, str, dict[str, Any], list[str]]]:
    """(key, parent id, parent record, keys fully listed so far) for every parent not done yet."""
    listed: list[str] = []
    for key in keys:
        seen: set[str] = set()  # a parent listed twice in its partition (pages shifted under the read)
        try:
            for record in store.iter_records(source, parent.name, [key]):
                ident = parent_id(parent, record)
                if ident in journals[key].items or ident in seen:
                    results[key].parents_skipped += 1
                    continue
                seen.add(ident)
                yield key, ident, record, listed
        except (FileNotFoundError, SyncSystemError) as exc:
            results[key].error = exc
        listed = [*listed, key]


def _children(reader: StreamReader, record: dict[str, Any]) -> tuple[list[dict[str, Any]], RequestStats]:
    stats = RequestStats()
    children = [child for page in reader.pages(stats, parent=record) for child in page.records]
    return children, stats


def _publish_ready(
    store: LocalStore, source: str, child: str, journals: dict[str, Journal], results: dict[str, PartitionResult],
    open_keys: dict[str, int], listed: set[str],
) -> Iterator[PartitionResult]:
    """Publish (or report as failed) every partition whose parents are all listed and answered."""
    for key in [k for k in listed if open_keys.get(k) == 0]:
        del open_keys[key]
        result, journal = results[key], journals[key]
        result.seconds = time.monotonic() - result.started
        if result.error is None:
            checkpoint = journal.checkpoint
            journal.sync()
            state = PartitionState(
                key, result.window, checkpoint.records, checkpoint.pages, checkpoint.requests, checkpoint.bytes,
                None, datetime.now(UTC),
            )
            store.publish_partition(source, child, journal.path, state, journal=journal.scope)
            result.state = state
        yield result

