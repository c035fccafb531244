"""Where synced records and sync state live: the ``Store`` contract (``store``) and its backends.

The names below are imported when first used: ``sync-assets sql`` reaches the store's bookkeeping
(``catalog``, ``bookkeeping``) through this package and must not wait for Arrow and the source models
that the contract needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync_assets.storage.bookkeeping import Checkpoint, PartitionState, RefreshState
    from sync_assets.storage.refreshes import RefreshLedger
    from sync_assets.storage.store import (
        KeyTally,
        Part,
        Published,
        Stage,
        StageBusyError,
        Store,
        TableSpec,
        Tallies,
        open_store,
        typed_by_window,
    )

__all__ = [
    "Checkpoint",
    "KeyTally",
    "Part",
    "PartitionState",
    "Published",
    "RefreshLedger",
    "RefreshState",
    "Stage",
    "StageBusyError",
    "Store",
    "TableSpec",
    "Tallies",
    "open_store",
    "typed_by_window",
]
_BOOKKEEPING = {"Checkpoint", "PartitionState", "RefreshState"}  # bookkeeping's; the rest is the contract's (store)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'sync_assets.storage' has no attribute {name!r}")
    module = "bookkeeping" if name in _BOOKKEEPING else "refreshes" if name == "RefreshLedger" else "store"
    value = getattr(import_module(f"sync_assets.storage.{module}"), name)
    globals()[name] = value  # looked up once
    return value
