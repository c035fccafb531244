"""Run leases around any executor: what keeps killed runs from blocking later ones (``killed_runs``).

The executor is the one place that runs in a run's orchestrating process before any step asks for
a pool slot, whatever executes the steps (child processes, Celery workers, Docker containers,
Kubernetes pods): a step blocked by dead runs' slots never starts, so freeing them from a step
would be too late. ``leased_executor`` wraps the executor a project already uses (Dagster's
``multi_or_in_process_executor`` by default) to hold the run's lease and reap dead runs first;
everything else (config, retries, where steps go) is the wrapped executor's. ``build_definitions``
sets no executor: a project opts in with ``run_leases``, which also brings the dead-run sensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dagster import (
    Definitions,
    Executor,
    ExecutorDefinition,
    InitExecutorContext,
    multi_or_in_process_executor,
)
from dagster._core.execution.retries import RetryMode  # the type of Executor.retries; not exported

from sync_assets.dagster.io_manager import DEFAULT_STORE, SyncStoreIOManager
from sync_assets.dagster.killed_runs import reap_dead_runs, run_lease
from sync_assets.dagster.sensors import build_dead_run_sensor


class _LeasedExecutor(Executor):
    def __init__(self, inner: Executor, store: SyncStoreIOManager) -> None:
        self._inner, self._store = inner, store

    def __getattr__(self, name: str) -> Any:
        """Anything else is the wrapped executor's (dagster-celery's loop asks it for ``app_args``)."""
        return getattr(self._inner, name)

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        instance, run_id = plan_context.instance, plan_context.run_id
        if instance.is_ephemeral:  # no pools, no other runs: nothing to lease or reap
            yield from self._inner.execute(plan_context, execution_plan)
            return
        store = self._store.open_for(instance)
        try:
            with run_lease(instance, store, run_id):
                for dead in reap_dead_runs(instance, store, reaper=f"run {run_id}"):
                    plan_context.log.warning(f"sync-assets: run {dead} was dead (its process is gone) and held "
                                             "pool slots; marked it failed and freed them")
                yield from self._inner.execute(plan_context, execution_plan)
        finally:
            store.close()


def leased_executor(
    inner: ExecutorDefinition = multi_or_in_process_executor, store: SyncStoreIOManager = DEFAULT_STORE
) -> ExecutorDefinition:
    """``inner`` (configured exactly as before) whose runs hold a lease in ``store``."""

    def create(init_context: InitExecutorContext) -> Executor:
        return _LeasedExecutor(inner.executor_creation_fn(init_context), store)  # type: ignore[misc]

    return ExecutorDefinition(
        name=inner.name,
        config_schema=inner.config_schema,  # type: ignore[arg-type]  # as is: a configured one keeps its mapping
        requirements=inner.get_requirements,
        executor_creation_fn=create,
        description=f"{inner.description or ''}\n\nEach run holds a lease in the sync-assets store, and "
                    "frees the pool slots of runs whose process is gone before its steps ask for theirs.",
    )


def run_leases(
    executor: ExecutorDefinition = multi_or_in_process_executor, store: SyncStoreIOManager = DEFAULT_STORE
) -> Definitions:
    """Definitions to merge into a project: ``executor`` holding run leases, and the dead-run sensor.

    ``store`` is the IO manager the sources' definitions use (``build_definitions(store=...)``).
    """
    return Definitions(executor=leased_executor(executor, store), sensors=[build_dead_run_sensor(store)])
