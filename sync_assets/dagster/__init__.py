"""The Dagster integration: one call turns a source into assets, resources, schedules and checks.

```python
from sync_assets.dagster import build_definitions
defs = build_definitions(load_source("my_api.yaml"))
```

This package is the only part of sync-assets that imports Dagster; everything it does is map
engine concepts (stream, window, store, client) onto Dagster's (asset, partition, IO manager,
resource).
"""

from __future__ import annotations

from dagster import Definitions

from sync_assets.dagster.assets import build_incremental_asset, pool_name
from sync_assets.dagster.io_manager import SyncStoreIOManager
from sync_assets.dagster.resource import SyncApiResource
from sync_assets.dagster.schedules import build_schedules
from sync_assets.dagster.translator import SyncAssetsTranslator
from sync_assets.spec import ApiSource

STORE_KEY = "sync_store"


def api_resource_key(source: ApiSource) -> str:
    return f"{source.name}_api"


def build_definitions(
    source: ApiSource,
    translator: SyncAssetsTranslator | None = None,
    schedule_lookback: int = 2,
    api: SyncApiResource | None = None,
    store: SyncStoreIOManager | None = None,
) -> Definitions:
    """Everything Dagster needs for ``source``; ``api`` and ``store`` default to env-driven ones."""
    translator = translator or SyncAssetsTranslator()
    api_key = api_resource_key(source)
    assets = [
        build_incremental_asset(source, stream, translator, api_key, STORE_KEY)
        for stream in source.streams
        if stream.incremental is not None
    ]
    return Definitions(
        assets=assets,
        schedules=build_schedules(source, assets, schedule_lookback),
        resources={
            api_key: api or SyncApiResource.for_source(source),
            STORE_KEY: store or SyncStoreIOManager(base_dir=None),
        },
    )


__all__ = [
    "STORE_KEY",
    "SyncApiResource",
    "SyncAssetsTranslator",
    "SyncStoreIOManager",
    "api_resource_key",
    "build_definitions",
    "pool_name",
]
