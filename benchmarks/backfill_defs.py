"""Definitions for the benchmarks: the demo source without its request budget, and trivial assets.

The budget is dropped so the benchmarks measure what they are meant to: windows read concurrently
in one run. ``trivial`` measures a Dagster CLI run's own overhead on this machine; ``trivial_daily``
(the surveys' partitions and backfill policy, no work) what Dagster itself spends per partition;
``trivial_daily_checked`` adds what Dagster spends on the events a stream asset logs per partition
beside its materialization: one evaluation of each of its two checks (issue 19: check history per
partition), so the floor and ours log the same events and differ only in our own work.
``SYNC_ASSETS_BENCH_ASSET_CHECKS=off`` builds the sources' assets without their checks (``TRANSLATOR``).
"""

import os
import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Definitions,
    MaterializeResult,
    PreviewWarning,
    asset,
)

from sync_assets.dagster import SyncAssetsTranslator, build_definitions, run_leases
from sync_assets.sources import demo_source


@asset
def trivial() -> None:
    return None


TRANSLATOR = SyncAssetsTranslator(enable_asset_checks=os.environ.get("SYNC_ASSETS_BENCH_ASSET_CHECKS") != "off")


def _sources() -> Definitions:
    return build_definitions(demo_source().model_copy(update={"rate_limits": []}), TRANSLATOR)


_DAILY = _sources().get_assets_def(AssetKey(["demo", "surveys"])).partitions_def
_CHECKS = ("schema_drift", "unique_primary_key")


@asset(partitions_def=_DAILY, backfill_policy=BackfillPolicy.single_run())
def trivial_daily() -> None:
    return None


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)

    @asset(partitions_def=_DAILY, backfill_policy=BackfillPolicy.single_run(),
           check_specs=[AssetCheckSpec(name, asset="trivial_daily_checked", partitions_def=_DAILY)
                        for name in _CHECKS])
    def trivial_daily_checked(context: AssetExecutionContext) -> Iterator[MaterializeResult | AssetCheckResult]:
        for key in context.partition_keys:
            for name in _CHECKS:
                context.log_event(AssetCheckEvaluation(asset_key=context.asset_key, check_name=name, passed=True,
                                                       partition=key))
        yield MaterializeResult()
        for name in _CHECKS:
            yield AssetCheckResult(check_name=name, passed=True)


defs = Definitions.merge(_sources(), run_leases(),
                         Definitions(assets=[trivial, trivial_daily, trivial_daily_checked]))
