"""Schedules that keep incremental streams current: the newest windows, plus a lookback for late data.

Streams of a source that share a partitioning (same window size and start) go in one job, and its
schedule asks for one run covering the last ``lookback`` complete windows as a partition range
(single-run backfill policy), and every window that ended within a member stream's own ``lookback``
duration, so late-arriving records in recent windows are picked up and re-materializing replaces those
windows idempotently. Schedules start stopped, as Dagster's do: turn them on in the UI once the source
is configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

from dagster import (
    AssetsDefinition,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    TimeWindowPartitionsDefinition,
    define_asset_job,
)

from sync_assets.spec import ApiSource, Stream

# Shortly after each window closes.
_CRON = {"hourly": "5 * * * *", "daily": "15 0 * * *", "weekly": "30 0 * * 0", "monthly": "30 0 1 * *"}
_SIZES = {"0 * * * *": "hourly", "0 0 * * *": "daily", "0 0 * * 0": "weekly", "0 0 1 * *": "monthly"}


def build_schedules(
    source: ApiSource, assets: Sequence[tuple[Stream, AssetsDefinition]], lookback: int
) -> list[ScheduleDefinition]:
    groups: dict[TimeWindowPartitionsDefinition, list[AssetsDefinition]] = {}
    settle: dict[TimeWindowPartitionsDefinition, timedelta] = {}  # the longest lookback duration of a group
    for stream, asset_def in assets:
        partitions_def = asset_def.partitions_def
        if isinstance(partitions_def, TimeWindowPartitionsDefinition):
            groups.setdefault(partitions_def, []).append(asset_def)
            windows = source.windows_of(stream)
            if windows is not None and windows.lookback is not None:
                settle[partitions_def] = max(windows.lookback, settle.get(partitions_def, timedelta(0)))
    schedules = []
    for index, (partitions_def, members) in enumerate(groups.items()):
        size = _SIZES.get(partitions_def.cron_schedule, "daily")
        suffix = "" if len(groups) == 1 else f"_{size}_{index}"
        job = define_asset_job(
            f"{source.name}{suffix}_incremental", selection=[a.key for a in members],
            description=f"Newest {lookback} window(s) of the {source.name} incremental streams.",
        )
        schedules.append(ScheduleDefinition(
            name=f"{source.name}{suffix}_schedule", job=job, cron_schedule=_CRON[size],
            execution_timezone="UTC", default_status=DefaultScheduleStatus.STOPPED,
            execution_fn=_newest_windows(partitions_def, lookback, settle.get(partitions_def)),
        ))
    return schedules


def _newest_windows(partitions_def: TimeWindowPartitionsDefinition, lookback: int,  # type: ignore[no-untyped-def]
                    settle: timedelta | None):
    def evaluate(context: ScheduleEvaluationContext) -> Iterator[RunRequest | SkipReason]:
        now = context.scheduled_execution_time
        complete = partitions_def.get_partition_keys(current_time=now)
        count = lookback
        if settle is not None and now is not None:  # and every window that ended within the lookback duration
            late = 0
            for key in reversed(complete):
                if partitions_def.time_window_for_partition_key(key).end <= now - settle:
                    break
                late += 1
            count = max(count, late)
        keys = complete[-count:]
        if not keys:
            yield SkipReason("no complete window yet")
            return
        yield RunRequest(
            run_key=f"{keys[0]}...{keys[-1]}",
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )

    return evaluate
