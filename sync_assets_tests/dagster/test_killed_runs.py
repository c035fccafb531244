"""Runs killed with SIGKILL never block later runs: leases, the reaper, and no orphaned step processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.instance.ref import InstanceRef
from dagster._core.test_utils import create_run_for_test

from sync_assets.dagster import SyncStoreIOManager, chunk_partitions_name
from sync_assets.dagster.killed_runs import OrchestratorGone, follow_run, reap_dead_runs, record_lease, run_lease
from sync_assets.dagster.sensors import build_dead_run_sensor
from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets.rate_limit import SHARED_BUDGET_ENV
from sync_assets.sources import demo_source
from sync_assets.storage import Store, open_store
from sync_assets.storage.layout import chunk_key
from sync_assets_tests.dagster.test_cli_runs import BIN, REPO, _env, _home, _materialize
from sync_assets_tests.helpers import stored

POOL = "sync_assets_demo"


@pytest.fixture
def pooled_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, 10)
        yield instance


def _leased_run(instance: DagsterInstance, status: DagsterRunStatus, lease: Store | None) -> str:
    """A run as a leased executor records it (``lease``: the store its lease lives in; None: not leased)."""
    run_id = create_run_for_test(instance, job_name="__ASSET_JOB", status=status).run_id
    if lease is not None:
        record_lease(instance, run_id, lease)
    return run_id


def _run_holding_a_slot(instance: DagsterInstance, status: DagsterRunStatus, lease: Store | None) -> str:
    run_id = _leased_run(instance, status, lease)
    instance.event_log_storage.claim_concurrency_slot(POOL, run_id, "demo__surveys")
    return run_id


def _holders(instance: DagsterInstance) -> set[str]:
    return {slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots}


def test_only_runs_whose_lease_is_free_in_this_store_are_reaped(
    pooled_instance: DagsterInstance, store: Store, tmp_path: Path
) -> None:
    instance, another = pooled_instance, open_store(str(tmp_path / "another"))
    dead = _run_holding_a_slot(instance, DagsterRunStatus.STARTED, store)
    alive = _run_holding_a_slot(instance, DagsterRunStatus.STARTED, None)
    elsewhere = _run_holding_a_slot(instance, DagsterRunStatus.STARTED, another)
    unleased = _run_holding_a_slot(instance, DagsterRunStatus.STARTED, None)
    ended = _run_holding_a_slot(instance, DagsterRunStatus.SUCCESS, store)  # ended, its slot leaked
    with run_lease(instance, store, alive):  # as the alive run's process holds it
        assert reap_dead_runs(instance, store, reaper="test") == [dead]
        assert reap_dead_runs(instance, store, reaper="test") == []  # once only
    assert _holders(instance) == {alive, elsewhere, unleased}
    assert {run_id: instance.get_run_by_id(run_id).status for run_id in (dead, alive, ended)} == {  # type: ignore[union-attr]
        dead: DagsterRunStatus.FAILURE, alive: DagsterRunStatus.STARTED, ended: DagsterRunStatus.SUCCESS}
    another.close()


def test_a_dead_run_holding_no_slot_is_reaped_once_it_has_gone_quiet(
    pooled_instance: DagsterInstance, store: Store
) -> None:
    """Killed before its first step took a slot (or on an instance with no pool limit), a run would stay
    STARTED for ever, and the sensors would never start its work again. One that ends well frees its
    lease just before Dagster records its success: its fresh last event keeps it from being taken for dead."""
    instance = pooled_instance
    dead = _leased_run(instance, DagsterRunStatus.STARTED, store)
    ending = _leased_run(instance, DagsterRunStatus.STARTED, store)
    time.sleep(1.2)  # both are quiet for a second (a deployment waits 30 s) ...
    # ... until a run ending well writes its last events
    instance.report_engine_event("Finished steps in process", instance.get_run_by_id(ending))
    assert reap_dead_runs(instance, store, reaper="test", quiet_after=1.0) == [dead]
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    assert instance.get_run_by_id(ending).status == DagsterRunStatus.STARTED  # type: ignore[union-attr]


def test_the_dead_run_sensor_reaps_without_a_new_run(
    pooled_instance: DagsterInstance, store: Store, store_location: str
) -> None:
    instance = pooled_instance
    dead = _run_holding_a_slot(instance, DagsterRunStatus.STARTED, store)
    io_manager = SyncStoreIOManager(url=store_location) if store_location.startswith("postgresql://") \
        else SyncStoreIOManager(base_dir=store_location)
    sensor = build_dead_run_sensor(io_manager)
    with build_sensor_context(instance=instance) as context:
        result = sensor.evaluate_tick(context)
    assert dead in (result.skip_message or "")
    assert not _holders(instance)
    failure = instance.all_logs(dead, of_type=DagsterEventType.RUN_FAILURE)[0]
    assert "the process running this run is gone" in (failure.message or "")


def _requests(api: DemoApi) -> int:
    return int(api.stats()["requests"])


@pytest.mark.slow
def test_runs_killed_while_holding_every_pool_slot_never_block_later_runs(
    demo_api: Callable[..., DemoApi], tmp_path: Path, store_location: str
) -> None:
    """Three runs fill the pool of the shipped dagster.yaml (limit 3) and are SIGKILLed as the OOM killer
    would (the orchestrating process only); a fourth run, the one resuming the killed refresh, still runs."""
    # Long enough that all three are at work together, however late one of the CLIs starts on a loaded
    # machine. Requests follow the data (request slices), so it takes data: about 20,000 surveys a half year,
    # 10 slices of some 20 pages each, and a refresh of 9 pages one at a time, at 3 s a request (about 60 and
    # 27 s). The API speeds up for the run that resumes the refresh.
    api = demo_api(customers=4500, surveys=40_000, latency_ms=3000)
    home = _home(tmp_path)
    env = {**_env(api, home), "SYNC_ASSETS_STORE_URL": store_location}
    instance = DagsterInstance.from_config(str(home))
    customers = demo_source().stream("customers")
    instance.add_dynamic_partitions(chunk_partitions_name(demo_source(), customers), [chunk_key(1, 0)])
    killed = [
        _materialize(env, "--select", "demo/surveys", "--partition-range", "2024-01-01...2024-06-29"),
        _materialize(env, "--select", "demo/surveys", "--partition-range", "2024-07-01...2024-12-28"),
        _materialize(env, "--select", "demo/customers", "--partition", chunk_key(1, 0)),
    ]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        paths = api.stats()["by_path"]
        # one surveys run alone can send 10 requests: wait for the slots too, so that all three are at work
        if paths.get("/v3/surveys", 0) >= 10 and paths.get("/v1/customers", 0) >= 2 and len(_holders(instance)) == 3:
            break
        time.sleep(0.1)
    holders = _holders(instance)
    assert len(holders) == 3, "the three runs should hold the pool's three slots"
    for process in killed:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    time.sleep(1.0)  # requests already on the wire may still arrive
    settled = _requests(api)
    time.sleep(2.0)
    assert _requests(api) == settled, "a step process of a killed run went on sending requests"
    assert _holders(instance) == holders  # the dead runs still hold every slot

    api.set_latency(100)

    resume = subprocess.run(
        [str(BIN / "sync-assets-dagster"), "start-refresh", "-m", "sync_assets.definitions", "--select",
         "demo/customers"], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert "Step blocked by limit for pool" not in resume.stdout + resume.stderr
    store: Store = open_store(store_location)
    assert stored(store, "customers") == data.all_customers(0, 4500)
    for run_id in holders:
        failure = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        assert failure and "the process running this run is gone" in (failure[0].message or "")
    assert not _holders(instance)
    store.close()
    instance.dispose()


def test_a_step_refuses_a_store_or_budget_that_is_not_its_orchestrators(
    pooled_instance: DagsterInstance, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker missing a setting would quietly keep data, pages and budgets on its own disk."""
    instance = pooled_instance
    own = open_store(str(tmp_path / "a-worker's-own-disk"))
    budget = "postgresql://sync:hunter2@db.internal/budgets"
    monkeypatch.setenv(SHARED_BUDGET_ENV, budget)  # the orchestrator's
    run_id = _leased_run(instance, DagsterRunStatus.STARTED, store)
    monkeypatch.delenv(SHARED_BUDGET_ENV)  # a worker without it
    with store.lock(f"run:{run_id}"):  # as its orchestrator holds it
        with pytest.raises(ConfigurationError, match="set SYNC_ASSETS_STORE_URL") as wrong_store:
            follow_run(instance, run_id, own)
        with pytest.raises(ConfigurationError, match=f"has {SHARED_BUDGET_ENV}=\\(unset\\).*set {SHARED_BUDGET_ENV}") \
                as no_budget:
            follow_run(instance, run_id, store)
        assert "hunter2" not in str(wrong_store.value) + str(no_budget.value)
        monkeypatch.setenv(SHARED_BUDGET_ENV, budget)
        follow_run(instance, run_id, store)()  # the same store and budget: it follows, then stops following
    own.close()


def test_a_step_of_a_run_whose_lease_is_free_stops_before_any_request_and_an_unleased_run_is_left_alone(
    pooled_instance: DagsterInstance, store: Store,
) -> None:
    instance = pooled_instance
    with pytest.raises(OrchestratorGone, match="stops before sending a request"):
        # a Celery task delivered again after its run died
        follow_run(instance, _leased_run(instance, DagsterRunStatus.STARTED, store), store)
    # a run of an executor without leases (or a re-execution, which copies no event of its parent)
    follow_run(instance, _leased_run(instance, DagsterRunStatus.STARTED, None), store)()
    assert not instance.get_run_by_id(_leased_run(instance, DagsterRunStatus.STARTED, store)).tags  # type: ignore[union-attr]


def _follow_then_wait(ref: InstanceRef, run_id: str, location: str, ready: Any) -> None:
    follow_run(DagsterInstance.from_ref(ref), run_id, open_store(location))
    ready.set()
    time.sleep(60)


def test_a_step_process_stops_as_soon_as_its_runs_lease_is_free(
    pooled_instance: DagsterInstance, store: Store, store_location: str
) -> None:
    """Wherever the step runs (a child process, a Celery worker, a pod): not only under the multiprocess
    executor, whose children could watch their parent instead."""
    instance = pooled_instance
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    run_id = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED).run_id
    with run_lease(instance, store, run_id):
        step = spawn.Process(target=_follow_then_wait, args=(instance.get_ref(), run_id, store_location, ready))
        step.start()
        assert ready.wait(30)
        time.sleep(1.0)
        assert step.is_alive()  # the lease is held: it goes on
    released = time.monotonic()
    step.join(10)
    assert step.exitcode == -signal.SIGKILL
    assert time.monotonic() - released < 2.0
