"""``budgeted_source.yaml`` (the surveys under a budget of 20 requests per 2 s) as Dagster definitions,
with the trivial assets of ``backfill_defs`` to measure Dagster's own cost beside it.
``SYNC_ASSETS_BENCH_ASSET_CHECKS=off`` builds the source's assets without their checks."""

from pathlib import Path

from dagster import Definitions

from benchmarks.backfill_defs import TRANSLATOR, trivial, trivial_daily
from sync_assets.dagster import build_definitions, run_leases
from sync_assets.spec import load_source

BUDGETED_SOURCE = Path(__file__).with_name("budgeted_source.yaml")

defs = Definitions.merge(build_definitions(load_source(BUDGETED_SOURCE), TRANSLATOR), run_leases(),
                         Definitions(assets=[trivial, trivial_daily]))
