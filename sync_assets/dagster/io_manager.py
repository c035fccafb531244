"""The store as Dagster sees it: the IO manager of every stream asset.

Why one object plays both parts (see docs/storage.md): a stream asset commits each window, page
by page, *while* it reads, because a range run that fails half-way must keep the windows it
finished, and a resumable refresh must checkpoint after every page. An IO manager's
``handle_output`` runs once, after the body returns: too late for either. So the asset body writes
through the store (this IO manager, injected as a resource), and ``handle_output`` receives the
sync report and checks that every partition of the output is committed. Downstream assets load
records through ``load_input`` as usual, as a list of dicts or, with the input metadata
``{"sync_assets/load_as": "iterator"}``, as a lazy iterator that streams from disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InitResourceContext, InputContext, OutputContext
from pydantic import Field, PrivateAttr

from sync_assets.errors import ConfigurationError
from sync_assets.store import LocalStore

LOAD_AS = "sync_assets/load_as"
ALLOW_MISSING = "allow_missing_partitions"


class SyncStoreIOManager(ConfigurableIOManager):
    """Partition files (JSON lines) and sync state (SQLite) under the Dagster instance."""

    base_dir: str | None = Field(None, description="Default: <DAGSTER_HOME>/sync_assets/data.")

    _store: LocalStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._store = LocalStore(self._root(context))

    def _root(self, context: InitResourceContext | None) -> Path:
        if self.base_dir:
            return Path(self.base_dir)
        instance = context.instance if context else None
        home = instance.root_directory if instance else os.environ.get("DAGSTER_HOME")
        if not home:
            raise ConfigurationError("the sync-assets store needs a Dagster instance: set DAGSTER_HOME, or base_dir")
        return Path(home) / "sync_assets" / "data"

    @property
    def store(self) -> LocalStore:
        if self._store is None:
            self._store = LocalStore(self._root(None))
        return self._store

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if _is_full_refresh(context.definition_metadata):
            return  # chunks are committed page by page, and published as a snapshot, by the asset itself
        source, stream = _stream_of(context.definition_metadata)
        committed = self.store.partition_states(source, stream)
        missing = [key for key in context.asset_partition_keys if key not in committed]
        if missing:
            raise RuntimeError(
                f"{source}/{stream}: partitions {missing[:5]} were reported synced but are not in the store"
            )

    def load_input(self, context: InputContext) -> list[dict[str, Any]] | Iterator[dict[str, Any]]:
        upstream = context.upstream_output
        if upstream is None:
            raise RuntimeError("sync-assets stores load only the outputs of stream assets")
        source, stream = _stream_of(upstream.definition_metadata)
        input_metadata = context.definition_metadata or {}
        if _is_full_refresh(upstream.definition_metadata):
            # The last complete refresh, whatever chunks were asked for: a refresh in progress or
            # one that failed half-way is never visible downstream.
            snapshot = self.store.iter_snapshot(source, stream)
            return snapshot if input_metadata.get(LOAD_AS) == "iterator" else list(snapshot)
        keys = context.asset_partition_keys  # every stream asset is partitioned
        if input_metadata.get(ALLOW_MISSING):
            committed = self.store.partition_states(source, stream)
            keys = [key for key in keys if key in committed]
        records = self.store.iter_records(source, stream, keys)
        return records if input_metadata.get(LOAD_AS) == "iterator" else list(records)


def _is_full_refresh(metadata: Mapping[str, Any] | None) -> bool:
    kind = (metadata or {}).get("sync_assets/kind")
    return getattr(kind, "value", kind) == "full_refresh"


def _stream_of(metadata: Mapping[str, Any] | None) -> tuple[str, str]:
    """The (source, stream) an asset was built from; definition metadata may hold MetadataValues."""
    metadata = metadata or {}
    source, stream = (metadata[f"sync_assets/{name}"] for name in ("source", "stream"))
    return str(getattr(source, "value", source)), str(getattr(stream, "value", stream))
