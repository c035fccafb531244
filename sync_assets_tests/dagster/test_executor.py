"""Run leases compose with any executor: build_definitions sets none, run_leases wraps the project's own."""

# No `from __future__ import annotations`: Dagster checks the context annotation at definition time.

from pathlib import Path

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Definitions,
    ExecutorDefinition,
    asset,
    define_asset_job,
    execute_job,
    in_process_executor,
    instance_for_test,
    multiprocess_executor,
    reconstructable,
)

from sync_assets.dagster import DEFAULT_STORE, build_definitions, run_leases
from sync_assets.sources import demo_source


@asset
def elsewhere() -> None:
    """An asset of another integration, in the project our definitions merge into."""


@asset(required_resource_keys={"sync_store"})
def lease_probe(context: AssetExecutionContext) -> None:
    """Fails unless the run's lease is held while its step runs, wherever the executor runs the step."""
    store = context.resources.sync_store.store
    assert store.locked(f"run:{context.run.run_id}"), "the run's lease is not held while its step runs"


def test_our_definitions_merge_into_a_project_that_has_its_own_executor_and_assets() -> None:
    project = Definitions(assets=[elsewhere], executor=in_process_executor)
    other = demo_source().model_copy(update={"name": "other"})
    merged = Definitions.merge(project, build_definitions(demo_source()), build_definitions(other))
    Definitions.validate_loadable(merged)
    assert merged.executor is in_process_executor
    assert {s.name for s in merged.sensors or []} == {"demo_refresh_sensor", "other_refresh_sensor"}

    leased = Definitions.merge(Definitions(assets=[elsewhere]), build_definitions(demo_source()),
                               build_definitions(other), run_leases(in_process_executor))
    Definitions.validate_loadable(leased)
    assert leased.executor is not None and leased.executor.name == in_process_executor.name
    assert "sync_assets_dead_runs" in {s.name for s in leased.sensors or []}


def _probe_job(executor: ExecutorDefinition):  # type: ignore[no-untyped-def]
    probe = define_asset_job("probe", selection=[lease_probe])
    defs = Definitions.merge(Definitions(assets=[lease_probe], jobs=[probe], resources={"sync_store": DEFAULT_STORE}),
                             run_leases(executor))
    return defs.resolve_job_def("probe")


def in_process_probe_job():  # type: ignore[no-untyped-def]
    return _probe_job(in_process_executor)


def multiprocess_probe_job():  # type: ignore[no-untyped-def]
    return _probe_job(multiprocess_executor)


@pytest.mark.parametrize("job", [in_process_probe_job, multiprocess_probe_job])
def test_a_run_holds_its_lease_under_the_executor_it_wraps(job, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = execute_job(reconstructable(job), instance=instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        store = DEFAULT_STORE.open_for(instance)
        (lease,) = [e for e in instance.all_logs(run.run_id) if "holds its lease in the store" in (e.message or "")]
        assert store.location in (lease.message or "")
        assert not [tag for tag in run.tags if tag.startswith("sync_assets/")]  # no internal tag on the run
        assert not store.locked(f"run:{run.run_id}")  # released with the run
        store.close()
        assert AssetKey("lease_probe") in instance.get_asset_keys()  # the probe's step ran, and passed
