"""The Dagster integration: one call turns a source into assets, resources, schedules and checks.

```python
from sync_assets.dagster import build_definitions, run_leases
defs = Definitions.merge(build_definitions(load_source("my_api.yaml")), run_leases())
```

This package is the only part of sync-assets that imports Dagster; everything it does is map
engine concepts (stream, window, store, client) onto Dagster's (asset, partition, IO manager,
resource).
"""

from __future__ import annotations

from sync_assets.dagster.assets import chunk_partitions_name, pool_name
from sync_assets.dagster.component import SyncAssetsComponent
from sync_assets.dagster.executor import leased_executor, run_leases
from sync_assets.dagster.factory import STORE_KEY, api_resource_key, build_definitions
from sync_assets.dagster.io_manager import DEFAULT_STORE, SyncStoreIOManager
from sync_assets.dagster.resource import SyncApiResource
from sync_assets.dagster.translator import SyncAssetsTranslator

__all__ = [
    "DEFAULT_STORE",
    "STORE_KEY",
    "SyncApiResource",
    "SyncAssetsComponent",
    "SyncAssetsTranslator",
    "SyncStoreIOManager",
    "api_resource_key",
    "build_definitions",
    "chunk_partitions_name",
    "leased_executor",
    "pool_name",
    "run_leases",
]
