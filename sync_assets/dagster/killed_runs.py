"""A run killed with SIGKILL (the OOM killer, a lost node) must never block the runs after it.

Dagster frees a step's pool slot when the step ends, and a killed run's steps never end: its run
stays STARTED and keeps its slots, so with a pool limit of 3, three killed runs stall every later
run of that API ("Step blocked by limit for pool"), the one that should resume them included. The
shipped launcher cannot tell a dead run from a slow one, so each run says it is alive itself:

- **A lease.** The process orchestrating a run (``executor.leased_executor``, around any executor)
  holds a lock in the store for the run's whole life (``Store.lock``: a ``flock`` on local disk, a
  PostgreSQL session advisory lock across machines; the kernel or the server releases it when the
  holder dies, however it dies), and says in the run's log where that lock lives.
- **A reaper.** Before a run's first step asks for a slot, and every minute from the daemon's
  sensor, every run that holds slots or is still going is checked: a run whose lease lives in this
  store but is held by nobody is dead, so it is marked failed (saying why) and its slots are freed. Runs whose lease
  lives elsewhere, or that hold no lease, are left alone: nothing here can tell whether they live.
- **No orphans, no private state.** A step, wherever it runs (a child process, a Celery worker, a
  pod), follows its run's lease: it refuses to start in a process whose store or budget is not the
  orchestrator's (a worker missing a setting would otherwise quietly write to its own disk), and
  stops as soon as the lease is free, so no process of a killed run keeps sending requests.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.events import EngineEventData  # an engine event's metadata; not exported

from sync_assets.errors import ConfigurationError
from sync_assets.rate_limit import SHARED_BUDGET_ENV
from sync_assets.redaction import url_without_credentials
from sync_assets.storage import StageBusyError, Store

log = logging.getLogger(__name__)

LEASE_KEY = "sync_assets/lease"  # in the run's lease event: where the lease lives (its store's location)
BUDGET_KEY = "sync_assets/shared_budget"  # and the shared budget store the orchestrator has ('' for none)
_GOING = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_FINISHING_SECONDS = 30.0  # a run's last event is younger than this while it ends well
_FOLLOW_SECONDS = 0.5  # how often a step looks at its run's lease


def _scope(run_id: str) -> str:
    return f"run:{run_id}"


def _shared_budget() -> str:
    """The deployment's shared budget store as this process sees it, without secrets ('' for none)."""
    url = os.environ.get(SHARED_BUDGET_ENV, "")
    return url_without_credentials(url) if url else ""


def record_lease(instance: DagsterInstance, run_id: str, store: Store) -> None:
    """Say in the run's own log where its lease lives: an event, not a tag, so that the run carries no
    internal tag and a re-execution (which may copy its parent's tags, never its events) no lease."""
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    instance.report_engine_event(
        f"sync-assets: this run holds its lease in the store at {store.location}; if its process dies, the "
        "next run or the sync_assets_dead_runs sensor marks it failed and frees its pool slots",
        run, EngineEventData(metadata={LEASE_KEY: store.location, BUDGET_KEY: _shared_budget()}))


def _lease_of(instance: DagsterInstance, run_id: str) -> dict[str, str] | None:
    """What the run's lease event says (None: the run holds no lease of ours)."""
    records = instance.event_log_storage.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) if event else None
        if metadata and LEASE_KEY in metadata:
            return {key: str(value.value) for key, value in metadata.items()}
    return None


@contextmanager
def run_lease(instance: DagsterInstance, store: Store, run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s lease while the block runs; it is recorded only once the lock is held."""
    with store.lock(_scope(run_id)):
        record_lease(instance, run_id, store)
        yield


def reap_dead_runs(
    instance: DagsterInstance, store: Store, reaper: str, quiet_after: float = _FINISHING_SECONDS
) -> list[str]:
    """Fail every run leased in this store, and still going, whose lease is free, and free its pool slots;
    returns their ids. Runs that hold slots are looked at whatever their status (an ended run's slots
    can leak); runs that hold none too (killed before their first step took one, or with no pool
    limit), since a dead run that looks active stops the sensors from starting its work again.

    ``reaper`` names who is doing it (a run id, or the sensor), for the failed run's message; a run
    that holds no slot is taken for dead only once it has written nothing for ``quiet_after`` seconds.
    """
    storage = instance.event_log_storage
    slots = storage.supports_global_concurrency_limits
    holders = storage.get_concurrency_run_ids() if slots else set()
    going = {run.run_id for run in instance.get_runs(RunsFilter(statuses=_GOING))}
    reaped = []
    for run_id in sorted(holders | going):
        if run_id not in holders and _quiet_for(instance, run_id) < quiet_after:
            # A run ending well frees its lease a moment before Dagster records its success; one that
            # holds no slot may be in that moment. Its last event says so: a dead run's only ages.
            continue
        record = instance.get_run_record_by_id(run_id)
        lease = _lease_of(instance, run_id) if record is not None else None
        if record is None or lease is None or lease[LEASE_KEY] != store.location:
            continue  # not a run of ours, or its lease lives in another store: we cannot tell
        if record.dagster_run.is_finished:
            if slots:
                storage.free_concurrency_slots_for_run(run_id)  # ended, yet its slots leaked
            continue
        if store.locked(_scope(run_id)):
            continue  # alive
        try:
            with store.lock(_scope(run_id)):  # only one reaper per dead run: it holds the lease now
                run = instance.get_run_by_id(run_id)
                if run is not None and not run.is_finished:
                    instance.report_run_failed(
                        run,
                        f"sync-assets: the process running this run is gone (killed, or its machine lost), "
                        f"so {reaper} marked it failed and freed its pool slots. Windows and pages it "
                        f"committed are kept; run it again to sync the rest.",
                    )
                    reaped.append(run_id)
                if slots:
                    storage.free_concurrency_slots_for_run(run_id)
        except StageBusyError:
            continue  # another reaper is on it
    return reaped


def _quiet_for(instance: DagsterInstance, run_id: str) -> float:
    """Seconds since the run's last event (forever, for a run with none)."""
    last = instance.event_log_storage.get_records_for_run(run_id, limit=1, ascending=False).records
    return time.time() - last[0].event_log_entry.timestamp if last else float("inf")


class OrchestratorGone(RuntimeError):
    """The run this step belongs to has no live orchestrating process: its work would be orphaned."""


def follow_run(instance: DagsterInstance, run_id: str, store: Store) -> Callable[[], None]:
    """In a step's process, wherever it runs: join the run's lease, and return what stops following it.

    Refuses (``ConfigurationError``) a process whose store or shared budget is not the one the
    orchestrator was configured with: a worker missing ``SYNC_ASSETS_STORE_URL`` or
    ``SYNC_ASSETS_RATE_LIMIT_URL`` would otherwise keep data, checkpoints or budgets on its own disk,
    and a killed step could never be resumed elsewhere. Refuses (``OrchestratorGone``) a step of a run
    whose lease is already free (a Celery task redelivered after its run died). Then, every half
    second, looks at the lease and stops this process the moment it is free. A no-op for a run not
    leased (another executor, an ephemeral instance).
    """
    lease = _lease_of(instance, run_id)
    if lease is None:
        return lambda: None
    if lease[LEASE_KEY] != store.location:
        raise ConfigurationError(
            f"run {run_id} keeps its data and sync state in the store at {lease[LEASE_KEY]}, but this "
            f"process opened {store.location}: set SYNC_ASSETS_STORE_URL (or the IO manager's url) to the "
            f"same store on every machine that runs steps")
    budget = _shared_budget()
    if lease.get(BUDGET_KEY, "") != budget:
        raise ConfigurationError(
            f"run {run_id} shares its API budgets through {lease.get(BUDGET_KEY) or 'a local file'}, but "
            f"this process has {SHARED_BUDGET_ENV}={budget or '(unset)'}: set {SHARED_BUDGET_ENV} to the same "
            f"value on every machine that runs steps, or the budget is no longer shared")
    scope = _scope(run_id)
    if not store.locked(scope):
        raise OrchestratorGone(f"the process orchestrating run {run_id} is gone (its lease is free): this "
                               "step stops before sending a request; the run is marked failed by the reaper")
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_FOLLOW_SECONDS):
            try:
                alive = store.locked(scope)
            except Exception:  # a store that cannot answer now says nothing about the run
                log.debug("could not look at run %s's lease", run_id, exc_info=True)
                continue
            if not alive and not stop.is_set():
                print(f"sync-assets: the process orchestrating run {run_id} is gone; step process "
                      f"{os.getpid()} stops too, so no request of a killed run is sent", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)  # as if killed with the run: committed work is kept

    threading.Thread(target=watch, name="sync-assets-lease-follower", daemon=True).start()
    return stop.set
