"""Syncing windows into the store: each window read page by page and committed on its own.

A range of windows runs on a bounded thread pool (``concurrency``); results come back in completion
order, one per window, so the caller can report each as soon as it is durable. A failed window is
aborted and keeps its previous data and state; the others still complete, and a re-run needs only
the failures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sync_assets.concurrency import completed
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.storage import PartitionState, Published, Store, TableSpec
from sync_assets.windows import Window


@dataclass(frozen=True)
class WindowResult:
    """How one window went: ``state`` (and what the publish found) when committed, ``error`` when not."""

    key: str
    window: Window
    stats: RequestStats
    dropped: int
    seconds: float
    state: PartitionState | None = None
    published: Published | None = None
    error: Exception | None = None
    without_cursor: int = 0  # records that lacked the cursor field (dropped or kept, as the stream says)


def sync_window(reader: StreamReader, store: Store, key: str, window: Window) -> WindowResult:
    """Fetch ``window`` and replace partition ``key`` with what came back."""
    started = time.monotonic()
    stats = RequestStats()
    stage = store.private_stage(TableSpec.of(reader.source, reader.stream), key)
    dropped = without_cursor = 0
    max_cursor: datetime | None = None
    try:
        for page in reader.pages(stats, window=window):
            stage.append(page.records, cursors=page.cursors)
            dropped += page.dropped
            without_cursor += page.without_cursor
            latest = page.max_cursor
            if latest is not None and (max_cursor is None or latest > max_cursor):
                max_cursor = latest
        c = stage.checkpoint
        state = PartitionState(key, window, c.records, c.pages, stats.requests, stats.bytes, max_cursor,
                               datetime.now(UTC))
        published = store.publish_partition(stage, state)
    except Exception as exc:
        store.discard(stage)
        return WindowResult(key, window, stats, dropped, time.monotonic() - started, error=exc,
                            without_cursor=without_cursor)
    except BaseException:  # interrupted (Ctrl-C, run terminated): leave the partition as it was
        store.discard(stage)
        raise
    return WindowResult(key, window, stats, dropped, time.monotonic() - started, state, published,
                        without_cursor=without_cursor)


def sync_windows(
    reader: StreamReader, store: Store, windows: Sequence[tuple[str, Window]], concurrency: int
) -> Iterator[WindowResult]:
    """Sync every ``(key, window)``, at most ``concurrency`` at once; yields results as they finish."""
    return completed(lambda item: sync_window(reader, store, *item), windows, concurrency, "window")
