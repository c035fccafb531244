"""The bundled demo source as a Dagster code location (``workspace.yaml`` points here).

    dagster asset materialize -m sync_assets.definitions --select demo/surveys --partition 2024-01-05

Reads SYNC_ASSETS_DEMO_URL and SYNC_ASSETS_DEMO_TOKEN when a run starts, not at import, so the
location loads (and lists its assets) without them.
"""

from sync_assets.dagster import build_definitions
from sync_assets.sources import demo_source

defs = build_definitions(demo_source())
