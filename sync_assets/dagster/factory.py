"""``build_definitions``: one call turns a source into everything Dagster needs."""

from __future__ import annotations

from datetime import timedelta

from dagster import AllPartitionMapping, AssetDep, AssetsDefinition, Definitions

from sync_assets.dagster.assets import (
    build_incremental_asset,
    build_refresh_asset,
    build_substream_asset,
)
from sync_assets.dagster.io_manager import DEFAULT_STORE, SyncStoreIOManager
from sync_assets.dagster.resource import SyncApiResource
from sync_assets.dagster.schedules import build_schedules
from sync_assets.dagster.sensors import build_refresh_sensor
from sync_assets.dagster.translator import SyncAssetsTranslator
from sync_assets.spec import ApiSource, StreamKind

STORE_KEY = "sync_store"


def api_resource_key(source: ApiSource) -> str:
    return f"{source.name}_api"


def build_definitions(
    source: ApiSource,
    translator: SyncAssetsTranslator | None = None,
    schedule_lookback: int = 2,
    refresh_every: timedelta = timedelta(days=1),
    api: SyncApiResource | None = None,
    store: SyncStoreIOManager | None = None,
) -> Definitions:
    """Everything Dagster needs for ``source``; ``api`` and ``store`` default to env-driven ones.

    No executor: the project's own runs the steps. ``run_leases`` (merged in once per project, for
    every source) wraps it so that killed runs never block later ones.
    """
    translator = translator or SyncAssetsTranslator()
    store = store or DEFAULT_STORE
    api_key = api_resource_key(source)
    by_stream: dict[str, AssetsDefinition] = {}
    waiting = list(source.streams)
    while waiting:  # parents first: a substream takes its parent's partitions (or depends on it)
        stream = next(s for s in waiting if all(name in by_stream for name in s.reads_from))
        waiting.remove(stream)
        parent = by_stream[stream.parent.stream] if stream.parent is not None else None
        match source.kind(stream):
            case StreamKind.WINDOWS:
                built = build_incremental_asset(source, stream, translator, api_key, STORE_KEY)
            case StreamKind.FULL_REFRESH:
                built = build_refresh_asset(source, stream, translator, api_key, STORE_KEY,
                                            deps=[AssetDep(by_stream[name].key, partition_mapping=AllPartitionMapping())
                                                  for name in stream.reads_from])  # all of each, read whole
            case StreamKind.PARENT_WINDOWS | StreamKind.WINDOWS_OVER_PARENTS:
                assert parent is not None
                built = build_substream_asset(source, stream, parent, translator, api_key, STORE_KEY)
        by_stream[stream.name] = built
    where = store.storage_kind  # the kinds say where the data lives, as well as where it comes from
    by_stream = {name: asset.map_asset_specs(lambda spec: spec.merge_attributes(kinds={where}))
                 for name, asset in by_stream.items()}
    assets = [by_stream[stream.name] for stream in source.streams]
    refreshed = [(s.name, by_stream[s.name]) for s in source.streams if source.kind(s) is StreamKind.FULL_REFRESH]
    sensors = [build_refresh_sensor(source, refreshed, STORE_KEY, refresh_every)] if refreshed else []
    return Definitions(
        assets=assets,
        schedules=build_schedules(source, [(s, by_stream[s.name]) for s in source.streams], schedule_lookback),
        sensors=sensors,
        resources={
            api_key: api or SyncApiResource.for_source(source),
            STORE_KEY: store,
        },
    )
