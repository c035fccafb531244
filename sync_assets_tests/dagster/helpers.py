"""Building and running the demo definitions against a given demo API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult, materialize

from sync_assets.dagster import SyncApiResource, SyncAssetsTranslator, SyncStoreIOManager, build_definitions
from sync_assets.demo_api import DemoApi
from sync_assets.home import home_under
from sync_assets.sources import demo_source
from sync_assets.storage import Store, open_store
from sync_assets.storage.layout import store_dir
from sync_assets_tests.helpers import TOKEN

SURVEYS = AssetKey(["demo", "surveys"])


def demo_defs(api: DemoApi, store_location: str | None = None, translator: SyncAssetsTranslator | None = None,
              surveys: dict[str, Any] | None = None, **resource: Any) -> Definitions:
    """The demo definitions against ``api``; the store under the instance, or at ``store_location``;
    ``surveys`` changes the surveys stream's incremental settings."""
    settings: dict[str, Any] = {"base_url": api.url, "credential": TOKEN, "rate_limits": [], **resource}
    store = None
    if store_location is not None:
        postgres = store_location.startswith("postgresql://")
        store = SyncStoreIOManager(url=store_location) if postgres else SyncStoreIOManager(base_dir=store_location)
    source = demo_source()
    if surveys:
        stream = source.stream("surveys")
        assert stream.incremental is not None
        changed = stream.model_copy(update={"incremental": stream.incremental.model_copy(update=surveys)})
        source = source.model_copy(update={"streams": [changed if s.name == "surveys" else s for s in source.streams]})
    return build_definitions(source, translator, api=SyncApiResource(**settings), store=store)


def run(
    defs: Definitions, instance: DagsterInstance, key: AssetKey = SURVEYS, partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
) -> ExecuteInProcessResult:
    tags = {}
    if partition_range:
        tags = {"dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1]}
    return materialize(
        [defs.get_assets_def(key)], instance=instance, resources=defs.resources, partition_key=partition,
        tags=tags, raise_on_error=False,
    )


def store_of(instance: DagsterInstance) -> Store:
    return open_store(store_dir(home_under(Path(instance.root_directory))))
