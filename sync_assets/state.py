"""A stream's sync state in Airbyte's protocol format, derived from the store (never kept apart from it).

Incremental streams and substreams: the committed windows merged into contiguous slices, each with
its largest cursor value, as Airbyte's ``ConcurrentCursor`` reports them (``state_type: date-range``).
Full refreshes: whether the last refresh is complete, or how far a running one got. ``sync-assets
state`` prints these as Airbyte STATE messages, for tools that speak that protocol.
"""

from __future__ import annotations

from typing import Any

from sync_assets.spec import ApiSource, Stream
from sync_assets.storage import PartitionState, Store
from sync_assets.windows import merge_windows


def merged_slices(states: list[PartitionState]) -> list[dict[str, Any]]:
    """Committed windows merged where they touch, each slice with the largest cursor value in it."""
    slices = []
    for run in merge_windows(s.window for s in states if s.window):
        cursors = [s.max_cursor for s in states if s.window and s.max_cursor and run.start <= s.window.start < run.end]
        slice_: dict[str, Any] = {"start": run.start.isoformat(), "end": run.end.isoformat()}
        if cursors:
            slice_["most_recent_cursor_value"] = max(cursors).isoformat()
        slices.append(slice_)
    return slices


def stream_state(store: Store, source: ApiSource, stream: Stream) -> dict[str, Any]:
    if stream.incremental is not None or stream.parent is not None:
        states = list(store.state.partition_states(source.name, stream.name).values())
        return {"state_type": "date-range", "slices": merged_slices(states)}
    running = store.state.latest_refresh(source.name, stream.name, "running")
    published = store.state.latest_refresh(source.name, stream.name, "published")
    if running is None:
        return {"__ab_full_refresh_sync_complete": published is not None}
    checkpoints = store.state.chunk_checkpoints(source.name, stream.name, running)
    done = [c for c, checkpoint in checkpoints.items() if checkpoint is not None and checkpoint.done]
    return {"__ab_full_refresh_sync_complete": False, "refresh": running.refresh,
            "chunks_done": len(done), "chunks_known": len(running.chunks)}


def airbyte_state_messages(store: Store, source: ApiSource) -> list[dict[str, Any]]:
    return [
        {"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream.name, "namespace": source.name},
            "stream_state": stream_state(store, source, stream),
        }}}
        for stream in source.streams
    ]
