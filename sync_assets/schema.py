"""Columns of a stream: declared, or inferred page by page and widened, and what changed on the way.

A stream's records become a typed table. Its columns come from the stream's declared JSON schema
where it has one; every other field is inferred from the values that arrive. Types form a small
lattice, and a column only ever moves up it, so no value is ever refused or lost:

    boolean ─┐
    integer ─┼─> number ─> string            object, array -> json   (json absorbs anything)
    date ────┤
    timestamp┘

Dates and timestamps arrive as text. A column is one when the stream's schema declares it
(``format: date`` / ``date-time``), or, undeclared, when every value of a page is an ISO 8601 date
(``2024-03-01``) or an ISO 8601 date-time *with* its offset (``2024-03-01T12:00:00Z``): a naive time
could be in any zone, so it stays text. The first value that does not parse widens the column back to
text, which is drift like any other.

A field seen for the first time becomes a new nullable column. A column whose type has to widen is
*drift*: the change is kept (field, old type, new type) so that an asset check can name it.
Integers widening to numbers happen with real APIs all the time (``5`` then ``5.5``) and are drift
too, reported the same way: the check warns, it never fails a sync.

Every page becomes one Arrow record batch here, the unit that storage stages and publishes. This is
the only place that walks records value by value, so it is written for speed: one pass over the
page to infer types, one list per column handed to Arrow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from sync_assets.windows import parse_cursor

BOOLEAN, INTEGER, NUMBER, STRING, DATE, TIMESTAMP, JSON = (
    "boolean", "integer", "number", "string", "date", "timestamp", "json")
_TEMPORAL = (DATE, TIMESTAMP)

ARROW_TYPES: dict[str, pa.DataType] = {
    BOOLEAN: pa.bool_(), INTEGER: pa.int64(), NUMBER: pa.float64(), STRING: pa.string(),
    DATE: pa.date32(), TIMESTAMP: pa.timestamp("us", tz="UTC"), JSON: pa.json_(),
}
_BY_ARROW = {str(arrow): name for name, arrow in ARROW_TYPES.items()}
_OF_VALUE: dict[type, str] = {bool: BOOLEAN, int: INTEGER, float: NUMBER, str: STRING, dict: JSON, list: JSON}

# Columns the engine adds to every row; a user's query can tell synced data from bookkeeping by the prefix.
PARTITION_COLUMN = "_sync_partition"
EXTRACTED_AT_COLUMN = "_sync_extracted_at"
CURSOR_COLUMN = "_sync_cursor"
META_PREFIX = "_sync_"

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def widen(a: str | None, b: str | None) -> str | None:
    """The narrowest type that holds values of both ``a`` and ``b`` (``None``: only nulls seen)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {INTEGER, NUMBER}:
        return NUMBER
    if JSON in (a, b):
        return JSON
    return STRING


def declared_types(json_schema: Mapping[str, Any] | None) -> dict[str, str]:
    """Column types from a stream's JSON schema (top-level properties)."""
    properties = (json_schema or {}).get("properties")
    if not isinstance(properties, Mapping):
        return {}
    types: dict[str, str] = {}
    for name, spec in properties.items():
        kinds = spec.get("type", []) if isinstance(spec, Mapping) else []
        kinds = [k for k in ([kinds] if isinstance(kinds, str) else kinds) if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
        if kind == "string" and spec.get("format") in ("date-time", "date"):
            types[name] = TIMESTAMP if spec["format"] == "date-time" else DATE
        elif kind in ("object", "array") or len(kinds) > 1:
            types[name] = JSON
        elif kind in (BOOLEAN, INTEGER, NUMBER, STRING):
            types[name] = kind
    return types


@dataclass(frozen=True)
class Drift:
    """A column that had to change type: what it was, and what it holds now."""

    column: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.column}: {self.old} -> {self.new}"


def type_of(arrow: pa.DataType) -> str | None:
    """The lattice type of an Arrow type written by this module (``None`` for an all-null column)."""
    return None if pa.types.is_null(arrow) else _BY_ARROW.get(str(arrow), STRING)


def page_batch(
    records: Sequence[Mapping[str, Any]], declared: Mapping[str, str], extracted_at: datetime,
    cursors: Sequence[datetime | None] | None = None,
) -> pa.RecordBatch:
    """One page as a typed Arrow batch, with the engine's columns (extraction time, parsed cursor)."""
    seen: dict[str, str | None] = {}
    of_value = _OF_VALUE
    for record in records:
        for name, value in record.items():
            kind = None if value is None else of_value.get(type(value), STRING)
            if name not in seen:
                seen[name] = kind
            elif kind is not None and seen[name] != kind:
                seen[name] = widen(seen[name], kind)
    arrays: list[pa.Array] = []
    names: list[str] = []
    for name, kind in seen.items():
        wanted = declared.get(name)
        arrays.append(_column([record.get(name) for record in records], wanted, kind))
        names.append(name)
    n = len(records)
    names.append(EXTRACTED_AT_COLUMN)
    arrays.append(pa.array([extracted_at] * n, ARROW_TYPES[TIMESTAMP]))
    if cursors is not None:
        names.append(CURSOR_COLUMN)
        arrays.append(pa.array(cursors, ARROW_TYPES[TIMESTAMP]))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _column(values: list[Any], declared: str | None, inferred: str | None) -> pa.Array:
    """Values as an Arrow array of the declared type if they fit it, else of the widened type."""
    kind = declared if declared is not None else inferred
    if kind is None:
        return pa.nulls(len(values))
    if declared is None and inferred == STRING:
        temporal = _temporal(values)
        if temporal is not None:
            return temporal
    temporal_text = declared in _TEMPORAL and inferred == STRING  # parsed below; text if it does not parse
    if declared is not None and inferred is not None and widen(declared, inferred) != declared and not temporal_text:
        kind = widen(declared, inferred) or STRING
    try:
        return _typed(values, kind)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        # A value outside the type (an integer past 64 bits, a timestamp that does not parse): text.
        return _typed(values, STRING if kind != JSON else JSON, force=True)


def _temporal(values: list[Any]) -> pa.Array | None:
    """Text values as a date or timestamp column if every one is an ISO 8601 date, or every one an ISO 8601
    date-time with its offset; else ``None``. A look at the first value keeps plain text cheap."""
    first = next((v for v in values if v is not None), None)
    if type(first) is not str or len(first) < 10 or first[4] != "-" or first[7] != "-" or not first[:4].isdigit():
        return None
    if len(first) == 10:
        target = ARROW_TYPES[DATE]
    elif first[10] in "T " and (first[-1] in "Zz" or first[-3] == ":" or first[-5] in "+-"):
        target = ARROW_TYPES[TIMESTAMP]  # Arrow refuses a value without its offset, and any other text
    else:
        return None
    try:
        return pa.array(values, pa.string()).cast(target)
    except pa.ArrowException:  # a value that is not such text (or not text at all)
        return None


def _typed(values: list[Any], kind: str, force: bool = False) -> pa.Array:
    if kind == JSON:
        return pa.array([None if v is None else _encode_json(v) for v in values], pa.json_())
    if kind == TIMESTAMP:
        if all(type(v) is str for v in values if v is not None):
            try:  # Arrow's parser: values with an offset, as APIs send them
                return pa.array(values, pa.string()).cast(ARROW_TYPES[TIMESTAMP])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass
        return pa.array([None if v is None else parse_cursor(v) for v in values], ARROW_TYPES[TIMESTAMP])
    if kind == DATE:  # text in ISO 8601 only: anything else raises, and the column becomes text
        return pa.array(values, pa.string()).cast(ARROW_TYPES[DATE])
    if kind == STRING and (force or any(v is not None and type(v) is not str for v in values)):
        values = [v if v is None or type(v) is str else _encode_json(v) for v in values]
    return pa.array(values, ARROW_TYPES[kind])


def merge_schemas(known: Mapping[str, str], schemas: Iterable[pa.Schema]) -> tuple[dict[str, str], list[Drift]]:
    """The columns that hold ``known`` and every schema, and each widening of a known or earlier column."""
    merged: dict[str, str | None] = dict(known)
    drift: list[Drift] = []
    for schema in schemas:
        for field in schema:
            kind = type_of(field.type)
            before = merged.get(field.name)
            after = widen(before, kind)
            if before is not None and after != before:
                drift.append(Drift(field.name, before, after or STRING))
            merged[field.name] = after
    return {name: kind or STRING for name, kind in merged.items()}, drift


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in columns.items()])


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns: missing ones null, narrower ones widened."""
    arrays = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        arrays.append(column if column.type == field.type else _cast(column, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    if isinstance(target, pa.JsonType) or target == pa.string():
        # Through Python, so that text becomes a JSON string and numbers keep their JSON spelling.
        kind = JSON if isinstance(target, pa.JsonType) else STRING
        if isinstance(column.type, pa.JsonType):
            return column.storage if kind == STRING else column
        if type_of(column.type) in _TEMPORAL:  # back to the ISO 8601 text it was parsed from
            return _typed([None if v is None else v.isoformat().replace("+00:00", "Z") for v in column.to_pylist()],
                          kind, force=True)
        return _typed(column.to_pylist(), kind, force=True)
    return column.cast(target)


def iter_records(batches: Iterable[pa.RecordBatch], dates_as_text: bool = False) -> Iterator[dict[str, Any]]:
    """The rows of ``batches`` as records (see ``to_records``), one batch in memory at a time."""
    for batch in batches:
        yield from to_records(batch, dates_as_text)


def to_records(batch: pa.RecordBatch | pa.Table, dates_as_text: bool = False) -> list[dict[str, Any]]:
    """Rows as dicts, JSON columns parsed back into objects; the engine's columns are left out.

    Dates and timestamps come back as ``date``/``datetime``, or with ``dates_as_text`` as ISO 8601 text,
    for records that requests are built from (a substream's parents), as the API sent them.
    """
    keep = [name for name in batch.schema.names if not name.startswith(META_PREFIX)]
    rows: list[dict[str, Any]] = batch.select(keep).to_pylist()
    json_columns = [f.name for f in batch.schema if isinstance(f.type, pa.JsonType) and f.name in keep]
    text_columns = [f.name for f in batch.schema if dates_as_text and f.name in keep and type_of(f.type) in _TEMPORAL]
    loads = json.loads
    for row in rows:
        for name in json_columns:
            value = row[name]
            if value is not None:
                row[name] = loads(value)
        for name in text_columns:
            value = row[name]
            if value is not None:
                row[name] = value.isoformat().replace("+00:00", "Z")
    return rows
