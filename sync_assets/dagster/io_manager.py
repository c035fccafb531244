"""The store as Dagster sees it: the IO manager of every stream asset.

Why one object plays both parts (see docs/storage.md): a stream asset commits each window, page
by page, *while* it reads, because a range run that fails half-way must keep the windows it
finished, and a resumable refresh must checkpoint after every page. An IO manager's
``handle_output`` runs once, after the body returns: too late for either. So the asset body writes
through the store (this IO manager, injected as a resource), and ``handle_output`` receives the
sync report and checks that every partition of the output is committed. Downstream assets load
what was stored through ``load_input``, in the type their parameter is annotated with: a pyarrow
``Table``, a pandas or polars ``DataFrame``, or records (``list[dict]``; with the input metadata
``{"sync_assets/load_as": "iterator"}``, a lazy iterator that holds one batch at a time).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import ConfigurableIOManager, DagsterInstance, EnvVar, InitResourceContext, InputContext, OutputContext
from pydantic import Field, PrivateAttr

from sync_assets.dagster.killed_runs import follow_run
from sync_assets.errors import ConfigurationError
from sync_assets.home import home_under
from sync_assets.schema import iter_records
from sync_assets.storage import Store, TableSpec, open_store

LOAD_AS = "sync_assets/load_as"
ALLOW_MISSING = "sync_assets/allow_missing_partitions"


class SyncStoreIOManager(ConfigurableIOManager):
    """Synced records as typed tables (Parquet files behind a DuckDB database), state beside them."""

    base_dir: str | None = Field(default=None, description="The local store's folder. "
                                                           "Default: <DAGSTER_HOME>/sync_assets/store.")
    url: str | None = Field(default=None, description="postgresql://... keeps everything in PostgreSQL (runs on "
                                                      "several machines); an EnvVar. Default: $SYNC_ASSETS_STORE_URL.")

    _store: Store | None = PrivateAttr(default=None)
    _unfollow: Callable[[], None] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._store = self.open_for(context.instance)
        if context.run is not None and context.instance is not None:
            try:  # a step: it must share its run's store, and die with its run
                self._unfollow = follow_run(context.instance, context.run.run_id, self._store)
            except Exception:
                self._store.close()
                raise

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """The store's connections go with the step: a process that runs many steps (a Celery worker)
        would otherwise keep every step's."""
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def storage_kind(self) -> str:
        """Where the data lives, as Dagster's asset kinds name it: ``postgres`` or ``duckdb``."""
        location = _resolved(self.url) or _resolved(self.base_dir) or os.environ.get("SYNC_ASSETS_STORE_URL") or ""
        return "postgres" if str(location).startswith(("postgresql://", "postgres://")) else "duckdb"

    def open_for(self, instance: DagsterInstance | None) -> Store:
        """The store this IO manager points at, for ``instance`` (also used outside resource setup)."""
        location = _resolved(self.url) or _resolved(self.base_dir)
        if instance is not None:
            return open_store(location, home=home_under(Path(instance.root_directory)))
        if not (location or os.environ.get("SYNC_ASSETS_STORE_URL") or _has_home()):
            raise ConfigurationError("the sync-assets store needs a Dagster instance: set DAGSTER_HOME, or base_dir")
        return open_store(location)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.open_for(None)
        return self._store

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        table = _table_of(context.definition_metadata)
        if table.kind == "snapshot":
            return  # chunks are committed page by page, and published as a snapshot, by the asset itself
        committed = self.store.partition_states(table)
        missing = [key for key in context.asset_partition_keys if key not in committed]
        if missing:
            raise RuntimeError(
                f"{table.name}: partitions {missing[:5]} were reported synced but are not in the store"
            )

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None:
            raise RuntimeError("sync-assets stores load only the outputs of stream assets")
        table = _table_of(upstream.definition_metadata)
        input_metadata = context.definition_metadata or {}
        if table.kind == "snapshot":
            # The last complete refresh, whatever chunks were asked for: a refresh in progress or
            # one that failed half-way is never visible downstream.
            batches = self.store.read_snapshot(table)
        else:
            keys = context.asset_partition_keys  # every stream asset is partitioned
            if input_metadata.get(ALLOW_MISSING):
                committed = self.store.partition_states(table)
                keys = [key for key in keys if key in committed]
            batches = self.store.read_partitions(table, list(keys))
        if input_metadata.get(LOAD_AS) == "iterator":
            return iter_records(batches)
        return _as_type(batches, self.store, table, context.dagster_type.typing_type)


# One object, so that the definitions of several sources merge (Dagster refuses two different
# resources under one key) and share one store.
DEFAULT_STORE = SyncStoreIOManager(base_dir=None)


def _as_type(batches: Iterator[pa.RecordBatch], store: Store, table: TableSpec, wanted: Any) -> Any:
    """What the downstream parameter is annotated with; records for anything else."""
    module = getattr(wanted, "__module__", "") or ""
    if wanted is pa.Table or module.startswith(("pandas", "polars")):
        arrow = pa.Table.from_batches(list(batches), store.read_schema(table))
        if module.startswith("pandas"):
            return arrow.to_pandas()
        if module.startswith("polars"):
            import polars

            return polars.from_arrow(arrow)
        return arrow
    return list(iter_records(batches))


def _resolved(value: str | None) -> str | None:
    """A setting's value; outside resource setup, an ``EnvVar`` is still its variable's name."""
    return value.get_value() if isinstance(value, EnvVar) else value


def _has_home() -> bool:
    return bool(os.environ.get("DAGSTER_HOME") or os.environ.get("SYNC_ASSETS_HOME"))


def _table_of(metadata: Mapping[str, Any] | None) -> TableSpec:
    """The stream an asset was built from; definition metadata may hold MetadataValues."""
    metadata = metadata or {}

    def value(name: str) -> str:
        item = metadata[f"sync_assets/{name}"]
        return str(getattr(item, "value", item))

    kind = metadata.get("sync_assets/kind")
    snapshot = getattr(kind, "value", kind) == "full_refresh"
    return TableSpec(value("source"), value("stream"), "snapshot" if snapshot else "partitions")
