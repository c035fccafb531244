"""Stream state derived from the store: contiguous end, merged slices, Airbyte STATE messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sync_assets.cli import main
from sync_assets.sources import DEMO_SOURCE_PATH, demo_source
from sync_assets.storage import PartitionState, Store, TableSpec
from sync_assets.windows import Window, contiguous_end


def day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=UTC)


def commit_day(store: Store, n: int, cursor_hour: int) -> None:
    key = f"2024-01-{n:02d}"
    stage = store.private_stage(TableSpec("demo", "surveys"), key)
    stage.append([{"id": n}])
    store.publish_partition(stage, PartitionState(key, Window(day(n), day(n + 1)), 1, 1, 1, 10,
                                                  day(n) + timedelta(hours=cursor_hour), datetime.now(UTC)))


def test_contiguous_end_waits_for_gaps_to_fill() -> None:
    windows = [Window(day(3), day(4)), Window(day(1), day(2))]
    assert contiguous_end(day(1), windows) == day(2)
    assert contiguous_end(day(1), [*windows, Window(day(2), day(3))]) == day(4)
    assert contiguous_end(day(1), [Window(day(2), day(3))]) == day(1)


def test_state_command_prints_merged_slices_and_refresh_progress(
    store: Store, store_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n, hour in ((1, 5), (2, 7), (4, 3)):
        commit_day(store, n, hour)
    store.refreshes(TableSpec("demo", "customers")).current()
    assert main(["state", str(DEMO_SOURCE_PATH), "--store", store_location]) == 0
    messages = {m["state"]["stream"]["stream_descriptor"]["name"]: m["state"]["stream"]["stream_state"]
                for m in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(messages) == {s.name for s in demo_source().streams}
    assert messages["surveys"] == {"state_type": "date-range", "slices": [
        {"start": day(1).isoformat(), "end": day(3).isoformat(),
         "most_recent_cursor_value": (day(2) + timedelta(hours=7)).isoformat()},
        {"start": day(4).isoformat(), "end": day(5).isoformat(),
         "most_recent_cursor_value": (day(4) + timedelta(hours=3)).isoformat()},
    ]}
    # a running refresh resumes from its first page not synced: here, the first (no page yet)
    assert messages["customers"] == {"__ab_full_refresh_sync_complete": False, "next_page_token": None,
                                     "pages_done": 0, "refresh": 1}
    assert messages["orders"] == {"__ab_full_refresh_sync_complete": False, "next_page_token": None,
                                  "pages_done": 0}
