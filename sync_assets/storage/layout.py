"""Names and places: where the store lives (under ``home``), and how streams, stages and tables are named.

This is the one module that spells out paths and names, so that moving the store, or adding a
backend, changes one place. Every name that reaches a file path or an SQL identifier passes
``safe_name`` first (stream and source names come from user config), and identifiers are quoted.
"""

from __future__ import annotations

import re
from pathlib import Path

from sync_assets.errors import ConfigurationError
from sync_assets.home import sync_assets_home

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}$")


def safe_name(name: str, what: str) -> str:
    """``name`` if it is safe as one path component."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ConfigurationError(
            f"{what} {name!r} cannot be used as a file name; use letters, digits and _ . : + - only"
        )
    return name


def quote(identifier: str) -> str:
    """An SQL identifier quoted for DuckDB and PostgreSQL (column names come from the API's fields)."""
    return '"' + identifier.replace('"', '""') + '"'


def store_dir(home: Path | None = None) -> Path:
    """The local store under ``home``: ``state.sqlite``, ``warehouse.duckdb``, ``tables/``."""
    return (home or sync_assets_home()) / "store"


def legacy_store_dir(home: Path | None = None) -> Path:
    """Where release 0.1 kept JSON-lines partitions and their state."""
    return (home or sync_assets_home()) / "data"


def partition_scope(source: str, stream: str, key: str) -> str:
    """The resumable stage of one substream partition."""
    return f"{source}/{stream}/partition/{key}"


def refresh_scope(source: str, stream: str, refresh: int) -> str:
    """What the scopes of every chunk of one refresh start with."""
    return f"{source}/{stream}/refresh-{refresh}/"


def chunk_scope(source: str, stream: str, refresh: int, chunk: int) -> str:
    """The resumable stage of one chunk of one refresh."""
    return f"{refresh_scope(source, stream, refresh)}chunk-{chunk:06d}"


def chunk_key(refresh: int, chunk: int) -> str:
    """A chunk's partition key, naming its refresh: refresh N+1's chunks are new partitions, so the UI
    shows how far the running refresh got instead of refresh N's materializations. Keys sort in reading order."""
    return f"refresh-{refresh:05d}-chunk-{chunk:06d}"


def refresh_of(key: str) -> int | None:
    """The refresh a chunk's partition key belongs to (``None``: not a chunk key)."""
    parts = key.split("-")
    return int(parts[1]) if len(parts) == 4 and parts[0] == "refresh" and parts[1].isdigit() else None


def chunk_of(key: str) -> int | None:
    """The chunk a chunk's partition key names (``None``: not a chunk key)."""
    parts = key.split("-")
    return int(parts[3]) if refresh_of(key) is not None and parts[2] == "chunk" and parts[3].isdigit() else None
