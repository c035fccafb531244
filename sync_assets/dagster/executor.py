"""Dagster's default executor, plus what keeps killed runs from blocking later ones (``killed_runs``).

The executor is the one place that runs in a run's orchestrating process before any step asks for
a pool slot: a step blocked by dead runs' slots never starts, so freeing them from a step would be
too late. It is Dagster's ``multi_or_in_process_executor`` (same config: ``execution: {config:
{multiprocess: {max_concurrent: 4}}}`` or ``in_process``), wrapped to hold the run's lease and reap
dead runs first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dagster import DagsterInstance, Executor, ExecutorDefinition, InitExecutorContext, multi_or_in_process_executor
from dagster._core.execution.retries import RetryMode  # the type of Executor.retries; not exported

from sync_assets.dagster.killed_runs import reap_dead_runs, run_lease
from sync_assets.storage import Store


class _LeasedExecutor(Executor):
    def __init__(self, inner: Executor, open_store: Callable[[DagsterInstance], Store]) -> None:
        self._inner, self._open_store = inner, open_store

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
        store = self._open_store(instance)
        try:
            with run_lease(instance, store, run_id):
                for dead in reap_dead_runs(instance, store, reaper=f"run {run_id}"):
                    plan_context.log.warning(f"sync-assets: run {dead} was dead (its process is gone) and held "
                                             "pool slots; marked it failed and freed them")
                yield from self._inner.execute(plan_context, execution_plan)
        finally:
            store.close()


def leased_executor(open_store: Callable[[DagsterInstance], Store]) -> ExecutorDefinition:
    """``multi_or_in_process_executor`` whose runs hold a lease in the store that ``open_store`` opens."""
    default = multi_or_in_process_executor

    def create(init_context: InitExecutorContext) -> Executor:
        inner = default.executor_creation_fn(init_context)  # type: ignore[misc]
        return _LeasedExecutor(inner, open_store)

    return ExecutorDefinition(
        name="sync_assets_executor",
        config_schema=default.config_schema.as_field(),
        requirements=default.get_requirements,
        executor_creation_fn=create,
        description=f"{default.description or ''}\n\nEach run holds a lease in the sync-assets store, and "
                    "frees the pool slots of runs whose process is gone before its steps ask for theirs.",
    )
