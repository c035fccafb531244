"""Schedules that keep incremental streams current: the newest windows, plus a lookback for late data.

Streams of a source that share a partitioning (same window size and start) go in one job, and its
schedule asks for one run covering the last ``lookback`` complete windows as a partition range
(single-run backfill policy), so late-arriving records in recent windows are picked up and
re-materializing replaces those windows idempotently. Schedules start stopped, as Dagster's do:
turn them on in the UI once the source is configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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

from sync_assets.spec import ApiSource

# Shortly after each window closes.
_CRON = {"hourly": "5 * * * *", "daily": "15 0 * * *", "weekly": "30 0 * * 0", "monthly": "30 0 1 * *"}
_SIZES = {"0 * * * *": "hourly", "0 0 * * *": "daily", "0 0 * * 0": "weekly", "0 0 1 * *": "monthly"}


def build_schedules(
    source: ApiSource, assets: Sequence[AssetsDefinition], lookback: int
) -> list[ScheduleDefinition]:
    groups: dict[TimeWindowPartitionsDefinition, list[AssetsDefinition]] = {}
    for asset_def in assets:
        partitions_def = asset_def.partitions_def
        if isinstance(partitions_def, TimeWindowPartitionsDefinition):
            groups.setdefault(partitions_def, []).append(asset_def)
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
            execution_fn=_newest_windows(partitions_def, lookback),
        ))
    return schedules


def _newest_windows(partitions_def: TimeWindowPartitionsDefinition, lookback: int):  # type: ignore[no-untyped-def]
    def evaluate(context: ScheduleEvaluationContext) -> Iterator[RunRequest | SkipReason]:
        keys = partitions_def.get_partition_keys(current_time=context.scheduled_execution_time)[-lookback:]
        if not keys:
            yield SkipReason("no complete window yet")
            return
        yield RunRequest(
            run_key=f"{keys[0]}...{keys[-1]}",
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )

    return evaluate
