"""Definitions for `python -m benchmarks.backfill`: the demo source without its request budget, and a trivial asset.

The budget is dropped so the backfill measures what it is meant to: latency-bound windows read
concurrently in one run. The trivial asset measures a Dagster CLI run's own overhead on this machine.
"""

from dagster import Definitions, asset

from sync_assets.dagster import build_definitions
from sync_assets.sources import demo_source


@asset
def trivial() -> None:
    return None


defs = Definitions.merge(build_definitions(demo_source().model_copy(update={"rate_limits": []})),
                         Definitions(assets=[trivial]))
