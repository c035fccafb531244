"""Syncing windows into the store: each window read page by page and committed on its own.

A range of windows runs on a thread pool (the API is latency-bound, so threads overlap waiting;
the shared rate limiter keeps them inside the budget). Results come back in completion order, one
per window, so the caller can report each as soon as it is durable. A failed window is aborted and
keeps its previous data and state; the others still complete, and a re-run needs only the failures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.records import dig
from sync_assets.store import LocalStore, PartitionState
from sync_assets.windows import Window


@dataclass(frozen=True)
class WindowResult:
    """How one window went: ``state`` when committed, ``error`` when not."""

    key: str
    window: Window
    stats: RequestStats
    dropped: int
    duplicate_keys: int
    seconds: float
    state: PartitionState | None = None
    error: Exception | None = None


class _KeyCounter:
    """Counts records whose primary key was already seen in the same partition.

    Holds one hash per record, not the records: a few dozen bytes each, for one window at a time.
    """

    def __init__(self, fields: list[str]) -> None:
        self.fields, self.seen, self.duplicates = fields, set[int](), 0

    def add(self, records: list[dict[str, Any]]) -> None:
        if not self.fields:
            return
        for record in records:
            digest = hash(tuple(str(dig(record, field)) for field in self.fields))
            if digest in self.seen:
                self.duplicates += 1
            self.seen.add(digest)


def sync_window(reader: StreamReader, store: LocalStore, key: str, window: Window) -> WindowResult:
    """Fetch ``window`` and replace partition ``key`` with what came back."""
    started = time.monotonic()
    stats = RequestStats()
    writer = store.writer(reader.source.name, reader.stream.name, key)
    pages = dropped = 0
    max_cursor: datetime | None = None
    keys = _KeyCounter(reader.stream.primary_keys)
    try:
        for page in reader.pages(stats, window=window):
            writer.write(page.records)
            keys.add(page.records)
            pages += 1
            dropped += page.dropped
            if page.max_cursor is not None and (max_cursor is None or page.max_cursor > max_cursor):
                max_cursor = page.max_cursor
        state = writer.commit(window, pages, stats.requests, stats.bytes, max_cursor)
    except Exception as exc:
        writer.abort()
        return WindowResult(key, window, stats, dropped, keys.duplicates, time.monotonic() - started, error=exc)
    except BaseException:  # interrupted (Ctrl-C, run terminated): leave the partition as it was
        writer.abort()
        raise
    return WindowResult(key, window, stats, dropped, keys.duplicates, time.monotonic() - started, state=state)


def sync_windows(
    reader: StreamReader, store: LocalStore, windows: Sequence[tuple[str, Window]], concurrency: int
) -> Iterator[WindowResult]:
    """Sync every ``(key, window)``, at most ``concurrency`` at once; yields results as they finish."""
    if len(windows) <= 1 or concurrency <= 1:
        for key, window in windows:
            yield sync_window(reader, store, key, window)
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(windows)), thread_name_prefix="window") as pool:
        pending: set[Future[WindowResult]] = {
            pool.submit(sync_window, reader, store, key, window) for key, window in windows
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
