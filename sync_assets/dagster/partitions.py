"""Incremental streams' partitions: Dagster time partitions whose keys are the engine's windows."""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from sync_assets.windows import Incremental, Window, as_utc, window_after, window_floor


def partitions_for(incremental: Incremental) -> TimeWindowPartitionsDefinition:
    """One partition per complete window from the stream's start (floored to a window boundary).

    The window in progress is left out (``end_offset=0``): its data is not final until it closes,
    and the schedule's lookback re-syncs recent windows for late arrivals.
    """
    start = window_floor(incremental.start, incremental.window)
    # a stream that ends: its last partition is the window holding its last instant
    end = None if incremental.end is None else window_after(window_floor(
        incremental.end - timedelta(microseconds=1), incremental.window), incremental.window)
    if incremental.window == "hourly":
        return HourlyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d-%H:%M"), timezone="UTC",
                                          end_date=end.strftime("%Y-%m-%d-%H:%M") if end else None)
    day, last = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d") if end else None
    if incremental.window == "weekly":
        return WeeklyPartitionsDefinition(start_date=day, timezone="UTC", end_date=last)
    if incremental.window == "monthly":
        return MonthlyPartitionsDefinition(start_date=day, timezone="UTC", end_date=last)
    return DailyPartitionsDefinition(start_date=day, timezone="UTC", end_date=last)


def window_for(partitions_def: TimeWindowPartitionsDefinition, key: str, incremental: Incremental) -> Window:
    """The window of partition ``key``; the first one starts at the stream's start, the last ends at its end."""
    time_window = partitions_def.time_window_for_partition_key(key)
    return Window(max(as_utc(time_window.start), incremental.start), incremental.until(as_utc(time_window.end)))
