"""The bundled demo source as a Dagster code location (``workspace.yaml`` points here).

    dagster asset materialize -m sync_assets.definitions --select demo/surveys --partition 2024-01-05

Reads SYNC_ASSETS_DEMO_URL and SYNC_ASSETS_DEMO_TOKEN when a run starts, not at import, so the
location loads (and lists its assets) without them.
"""

from dagster import Definitions

from sync_assets.dagster import build_definitions, run_leases
from sync_assets.sources import demo_source

# run_leases: Dagster's default executor, holding each run's lease so that killed runs never block later ones.
defs = Definitions.merge(build_definitions(demo_source()), run_leases())
