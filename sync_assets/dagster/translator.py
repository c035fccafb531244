"""How streams are named and described in Dagster; subclass and override to change any of it.

The same shape as ``DagsterDltTranslator`` and ``DagsterSlingTranslator``: ``get_asset_spec`` gives
a stream's whole ``AssetSpec``; by default it is put together from one method per attribute, each
given the source and the stream, so a user overrides either the whole spec or just one attribute.
The metadata that says which stream an asset is (``sync_assets/source``, ``/stream``, ``/kind``) is
added after the translator: the IO manager finds the stream's table by it, so no override removes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dagster import AssetKey, AssetSpec, TableColumn, TableSchema

from sync_assets.spec import ApiSource, Stream


class SyncAssetsTranslator:
    def __init__(self, enable_asset_checks: bool = True) -> None:
        self.enable_asset_checks = enable_asset_checks

    def get_asset_spec(self, source: ApiSource, stream: Stream) -> AssetSpec:
        return AssetSpec(
            key=self.get_asset_key(source, stream),
            description=self.get_description(source, stream),
            group_name=self.get_group_name(source, stream),
            metadata=self.get_metadata(source, stream),
            tags=self.get_tags(source, stream),
            owners=self.get_owners(source, stream),
            kinds=self.get_kinds(source, stream),
            code_version=self.get_code_version(source, stream),
        )

    def get_code_version(self, source: ApiSource, stream: Stream) -> str:
        """A digest of what decides the stream's records: its declaration (and those of the streams it is read
        over, for a substream). Editing it marks the asset's materialized partitions stale in the UI."""
        declarations = [stream] + [source.stream(name) for name in stream.reads_from]
        text = "".join(s.model_dump_json(by_alias=True) for s in declarations)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def get_asset_key(self, source: ApiSource, stream: Stream) -> AssetKey:
        return AssetKey([source.name, stream.name])

    def get_group_name(self, source: ApiSource, stream: Stream) -> str:
        return source.name

    def get_description(self, source: ApiSource, stream: Stream) -> str:
        """The stream's own description, else what it reads. Plain text, no Markdown marks: the asset page
        renders Markdown, but the catalog's rows show the text as it is."""
        if stream.description:
            return stream.description
        return f"{stream.method} {stream.path} from the {source.name} API ({source.describe(stream)})."

    def get_tags(self, source: ApiSource, stream: Stream) -> dict[str, str]:
        return {"sync_assets/source": source.name}

    def get_owners(self, source: ApiSource, stream: Stream) -> list[str]:
        return []

    def get_kinds(self, source: ApiSource, stream: Stream) -> set[str]:
        """Where the data comes from; ``build_definitions`` adds where it lives (``duckdb`` or ``postgres``)."""
        return {"api"}

    def get_asset_checks_enabled(self, source: ApiSource, stream: Stream) -> bool:
        """Whether the stream's asset has its checks (``schema_drift``, ``unique_primary_key``).

        On by default: a window-partitioned asset's check history then shows every partition Passed or
        Failed. That costs Dagster two events per partition, about 10 ms of CPU each on a SQLite instance
        and more on PostgreSQL, which batches materializations but not check evaluations: 7 to 10 s for a
        year of daily partitions in one run, more than the sync itself. Turn them off for streams whose
        runs span thousands of partitions; each run then logs one warning naming the partitions a check
        would have failed (docs/running-at-scale.md)."""
        return self.enable_asset_checks

    def get_metadata(self, source: ApiSource, stream: Stream) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "sync_assets/path": stream.path,
            "sync_assets/paginator": stream.paginator.type,
        }
        if stream.primary_keys:
            metadata["sync_assets/primary_key"] = ", ".join(stream.primary_keys)
        if stream.incremental:
            metadata["sync_assets/cursor_field"] = stream.incremental.cursor_field
            metadata["sync_assets/window"] = stream.incremental.window
        schema = column_schema(stream.json_schema)
        if schema is not None:
            metadata["dagster/column_schema"] = schema
        return metadata


def column_schema(json_schema: dict[str, Any] | None) -> TableSchema | None:
    """The stream's JSON schema as Dagster column metadata (top-level properties only)."""
    properties = (json_schema or {}).get("properties")
    if not isinstance(properties, dict):
        return None
    columns = []
    for name, spec in properties.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        if isinstance(kind, list):
            kind = "/".join(str(k) for k in kind)
        fmt = spec.get("format") if isinstance(spec, dict) else None
        columns.append(TableColumn(name=name, type=f"{kind} ({fmt})" if fmt else str(kind),
                                   description=spec.get("description") if isinstance(spec, dict) else None))
    return TableSchema(columns=columns)




def table_schema(columns: dict[str, str]) -> TableSchema:
    """The stream's stored columns (name -> type, as ``sync_assets.schema`` names them) as Dagster metadata."""
    return TableSchema(columns=[TableColumn(name=name, type=kind) for name, kind in columns.items()])
