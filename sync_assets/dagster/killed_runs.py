"""A run killed with SIGKILL (the OOM killer, a lost node) must never block the runs after it.

Dagster frees a step's pool slot when the step ends, and a killed run's steps never end: its run
stays STARTED and keeps its slots, so with a pool limit of 3, three killed runs stall every later
run of that API ("Step blocked by limit for pool"), the one that should resume them included. The
shipped launcher cannot tell a dead run from a slow one, so each run says it is alive itself:

- **A lease.** The process orchestrating a run holds a lock in the store for the run's whole life
  (``Store.lock``: a ``flock`` on local disk, a PostgreSQL session advisory lock across machines;
  the kernel or the server releases it when the holder dies, however it dies), and tags the run
  with where that lock lives.
- **A reaper.** Before a run's first step asks for a slot, and every minute from the daemon's
  sensor, every run that holds slots or is still going is checked: a run whose lease lives in this
  store but is held by nobody is dead, so it is marked failed (saying why) and its slots are freed. Runs whose lease
  lives elsewhere, or that hold no lease, are left alone: nothing here can tell whether they live.
- **No orphans.** A step process whose orchestrating process has died stops at once, so no process
  of a killed run keeps sending requests (Dagster's multiprocess executor starts step processes
  that would otherwise outlive it).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sync_assets.storage import StageBusyError, Store

log = logging.getLogger(__name__)

LEASE_TAG = "sync_assets/lease"
_GOING = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_FINISHING_SECONDS = 30.0  # a run's last event is younger than this while it ends well


def _scope(run_id: str) -> str:
    return f"run:{run_id}"


@contextmanager
def run_lease(instance: DagsterInstance, store: Store, run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s lease while the block runs; the tag is written only once the lock is held."""
    with store.lock(_scope(run_id)):
        instance.add_run_tags(run_id, {LEASE_TAG: store.location})
        yield


def reap_dead_runs(instance: DagsterInstance, store: Store, reaper: str) -> list[str]:
    """Fail every run leased in this store, and still going, whose lease is free, and free its pool slots;
    returns their ids. Runs that hold slots are looked at whatever their status (an ended run's slots
    can leak); runs that hold none too (killed before their first step took one, or with no pool
    limit), since a dead run that looks active stops the sensors from starting its work again.

    ``reaper`` names who is doing it (a run id, or the sensor), for the failed run's message.
    """
    storage = instance.event_log_storage
    slots = storage.supports_global_concurrency_limits
    holders = storage.get_concurrency_run_ids() if slots else set()
    going = {run.run_id for run in instance.get_runs(RunsFilter(statuses=_GOING, tags={LEASE_TAG: store.location}))}
    reaped = []
    for run_id in sorted(holders | going):
        if run_id not in holders and _quiet_for(instance, run_id) < _FINISHING_SECONDS:
            # A run ending well frees its lease a moment before Dagster records its success; one that
            # holds no slot may be in that moment. Its last event says so: a dead run's only ages.
            continue
        record = instance.get_run_record_by_id(run_id)
        if record is None or record.dagster_run.tags.get(LEASE_TAG) != store.location:
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


_watching = threading.Lock()


def stop_with_orchestrator() -> None:
    """In a step process, stop this process as soon as the process that started it dies.

    A no-op outside a ``multiprocessing`` child (the in-process executor, a code server's run).
    """
    parent = multiprocessing.parent_process()
    if parent is None or not _watching.acquire(blocking=False):
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes: it died
        print(f"sync-assets: the run's orchestrating process (pid {parent.pid}) is gone; step process "
              f"{os.getpid()} stops too, so no request of a killed run is sent", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as if killed with the run: committed work is kept, nothing half-done

    threading.Thread(target=watch, name="sync-assets-orchestrator-watch", daemon=True).start()
