"""Definitions for the benchmarks: the demo source without its request budget, and trivial assets.

The budget is dropped so the benchmarks measure what they are meant to: windows read concurrently
in one run. ``trivial`` measures a Dagster CLI run's own overhead on this machine; ``trivial_daily``
(the surveys' partitions and backfill policy, no work) what Dagster itself spends per partition.
"""

from dagster import AssetKey, BackfillPolicy, Definitions, asset

from sync_assets.dagster import build_definitions, run_leases
from sync_assets.sources import demo_source


@asset
def trivial() -> None:
    return None


def _sources() -> Definitions:
    return build_definitions(demo_source().model_copy(update={"rate_limits": []}))


@asset(partitions_def=_sources().get_assets_def(AssetKey(["demo", "surveys"])).partitions_def,
       backfill_policy=BackfillPolicy.single_run())
def trivial_daily() -> None:
    return None


defs = Definitions.merge(_sources(), run_leases(), Definitions(assets=[trivial, trivial_daily]))
