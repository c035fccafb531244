"""Keeping full refreshes going from the Dagster daemon: start them on a cadence, resume interrupted ones.

The sensor (one per source, stopped by default like every schedule) looks at each full-refresh
stream's store state: a refresh that is running with no run working on it (its run was killed or
failed) is resumed from its first unfinished chunk; when none is running and the last snapshot is
older than ``refresh_every``, a new refresh is started by registering its first chunk and asking for it.
"""

# No `from __future__ import annotations`: Dagster finds the store parameter by its annotation.

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetsDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    ResourceParam,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sync_assets.dagster.assets import chunk_partitions_name
from sync_assets.dagster.io_manager import SyncStoreIOManager
from sync_assets.dagster.killed_runs import reap_dead_runs
from sync_assets.spec import ApiSource
from sync_assets.storage import TableSpec
from sync_assets.storage.layout import chunk_key, chunk_scope

REFRESH_TAG = "sync_assets/refresh"
_ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
           DagsterRunStatus.STARTED]


def build_refresh_sensor(
    source: ApiSource, refresh_assets: Sequence[tuple[str, AssetsDefinition]], store_key: str,
    refresh_every: timedelta,
) -> SensorDefinition:
    # Dagster hands a sensor its resources by parameter name (the daemon passes only annotated ones).
    assert store_key == "sync_store", "the sensor's store parameter is named after the store's resource key"
    by_stream = dict(refresh_assets)

    @sensor(
        name=f"{source.name}_refresh_sensor",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        asset_selection=[asset.key for asset in by_stream.values()],
        description=f"Starts a full refresh of each {source.name} full-refresh stream every {refresh_every}, "
                    "and resumes interrupted ones.",
    )
    def _refresh_sensor(
        context: SensorEvaluationContext, sync_store: ResourceParam[SyncStoreIOManager]
    ) -> SensorResult:
        store = sync_store.store
        reap_dead_runs(context.instance, store, reaper=f"sensor {source.name}_refresh_sensor")  # they look active
        requests: list[RunRequest] = []
        new_partitions: list[Any] = []
        for stream, asset in by_stream.items():
            tag = f"{source.name}/{stream}"
            if context.instance.get_runs(RunsFilter(statuses=_ACTIVE, tags={REFRESH_TAG: tag}), limit=1):
                continue  # a run is on it
            name = chunk_partitions_name(source, source.stream(stream))
            refreshes = store.refreshes(TableSpec.of(source, source.stream(stream)))
            running = refreshes.running()
            if running is not None:
                chunk = refreshes.resume_chunk(running)
                if store.locked(chunk_scope(source.name, stream, running.refresh, chunk)):
                    continue  # a run started outside this sensor (UI, CLI) is reading it
                # The store may know chunks Dagster does not yet (a run killed before copying them over).
                keys = [chunk_key(running.refresh, c) for c in sorted(running.chunks)]
                missing = [key for key in keys if not context.instance.has_dynamic_partition(name, key)]
                if missing:
                    new_partitions.append(_add_request(asset, missing))
                requests.append(RunRequest(asset_selection=[asset.key], partition_key=chunk_key(running.refresh, chunk),
                                           tags={REFRESH_TAG: tag}))
                continue
            finished = refreshes.published_at()
            if finished is None or datetime.now(UTC) - finished >= refresh_every:
                first = chunk_key(refreshes.next_number(), 0)
                if not context.instance.has_dynamic_partition(name, first):
                    new_partitions.append(_add_request(asset, [first]))
                requests.append(RunRequest(asset_selection=[asset.key], partition_key=first,
                                           tags={REFRESH_TAG: tag}))
        return SensorResult(run_requests=requests, dynamic_partitions_requests=new_partitions)

    return _refresh_sensor


_DEAD_RUNS_EVERY_SECONDS = 300


def build_dead_run_sensor(store: SyncStoreIOManager) -> SensorDefinition:
    """Frees the pool slots of dead runs (``killed_runs``) even when no new run starts to do it.

    A run queue full of dead runs starts nothing, so the executor never gets a chance: this sensor
    (running by default, in the daemon) does the same check every five minutes.
    """

    @sensor(
        name="sync_assets_dead_runs",
        # Dagster's daemon logs two lines for every tick of every sensor; a backstop need not fill its log.
        # A run reaps dead runs itself before its first step asks for a slot: this sensor is for a queue
        # that dead runs block, and five minutes frees it.
        minimum_interval_seconds=_DEAD_RUNS_EVERY_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description="Marks failed the runs whose process is gone (killed, or their machine lost) and frees "
                    "their pool slots, so that they never block later runs.",
    )
    def _dead_runs(context: SensorEvaluationContext) -> SkipReason:
        opened = store.open_for(context.instance)
        try:
            reaped = reap_dead_runs(context.instance, opened, reaper="sensor sync_assets_dead_runs")
        finally:
            opened.close()
        return SkipReason(f"marked {len(reaped)} dead runs failed: {', '.join(reaped)}" if reaped
                          else "no dead run holds pool slots")

    return _dead_runs


def _add_request(asset: AssetsDefinition, keys: list[str]) -> Any:
    partitions_def = asset.partitions_def
    assert isinstance(partitions_def, DynamicPartitionsDefinition)
    return partitions_def.build_add_request(keys)

