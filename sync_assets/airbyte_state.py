"""A stream's sync state in Airbyte's protocol format, derived from the store (never kept apart from it).

Incremental streams and substreams: the committed windows merged into contiguous slices, each with
its largest cursor value, as Airbyte's ``ConcurrentCursor`` reports them (``state_type: date-range``).
Full refreshes: whether the last refresh is complete, or the page token a read resumes from. ``sync-assets
state`` prints these as Airbyte STATE messages, and ``sync-assets airbyte ... read`` reads and writes
the same format (docs/airbyte.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sync_assets.spec import ApiSource, Stream, StreamKind
from sync_assets.storage import Store, TableSpec
from sync_assets.windows import Window, merge_windows, parse_cursor

FULL_REFRESH_COMPLETE = "__ab_full_refresh_sync_complete"


def date_range_state(done: Iterable[tuple[Window, datetime | None]]) -> dict[str, Any]:
    """The state of windows synced so far (each with its largest cursor value): merged where they touch.

    Gaps are kept as gaps (windows finish out of order), so a read that starts from this state syncs
    exactly what no slice covers: no gap, no duplicate.
    """
    pairs = list(done)
    slices = []
    for run in merge_windows(window for window, _ in pairs):
        cursors = [cursor for window, cursor in pairs if cursor and run.start <= window.start < run.end]
        slice_: dict[str, Any] = {"start": run.start.isoformat(), "end": run.end.isoformat()}
        if cursors:
            slice_["most_recent_cursor_value"] = max(cursors).isoformat()
        slices.append(slice_)
    return {"state_type": "date-range", "slices": slices}


def covered_windows(state: dict[str, Any] | None) -> list[tuple[Window, datetime | None]]:
    """The windows (and cursor values) a date-range state says are synced."""
    pairs = []
    for slice_ in (state or {}).get("slices", []):
        cursor = slice_.get("most_recent_cursor_value")
        pairs.append((Window(parse_cursor(slice_["start"]), parse_cursor(slice_["end"])),
                      parse_cursor(cursor) if cursor else None))
    return pairs


def refresh_state(complete: bool, next_page_token: Any = None, pages_done: int = 0) -> dict[str, Any]:
    """A full refresh's state: complete, or where a read resumes (``next_page_token``, after ``pages_done``)."""
    if complete:
        return {FULL_REFRESH_COMPLETE: True}
    return {FULL_REFRESH_COMPLETE: False, "next_page_token": next_page_token, "pages_done": pages_done}


def stream_state(store: Store, source: ApiSource, stream: Stream) -> dict[str, Any]:
    table = TableSpec.of(source, stream)
    if source.kind(stream) is not StreamKind.FULL_REFRESH:
        states = store.partition_states(table).values()
        return date_range_state((s.window, s.max_cursor) for s in states if s.window)
    refreshes = store.refreshes(table)
    running = refreshes.running()
    if running is None:
        return refresh_state(refreshes.published() is not None)
    token, pages = refreshes.resume_point(running)
    return {**refresh_state(False, token, pages), "refresh": running.refresh}


def airbyte_state_messages(store: Store, source: ApiSource) -> list[dict[str, Any]]:
    return [
        {"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream.name, "namespace": source.name},
            "stream_state": stream_state(store, source, stream),
        }}}
        for stream in source.streams
    ]
