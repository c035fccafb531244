"""Columns: declared types first, inferred ones widened page by page, and nothing refused or lost."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from sync_assets.schema import (
    DATE,
    JSON,
    STRING,
    TIMESTAMP,
    Drift,
    arrow_schema,
    conform,
    declared_types,
    merge_schemas,
    page_batch,
    to_records,
    widen,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def test_types_only_widen() -> None:
    assert widen("integer", "number") == widen("number", "integer") == "number"
    assert widen("integer", "string") == widen("boolean", "integer") == STRING
    assert widen("string", "json") == widen("json", "integer") == JSON
    assert widen(None, "integer") == widen("integer", None) == "integer"


def test_a_declared_schema_gives_the_column_types() -> None:
    schema = {"properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                             "tags": {"type": ["null", "array"]}, "n": {"type": ["integer", "string"]},
                             "free": {}}}
    assert declared_types(schema) == {"id": "integer", "at": TIMESTAMP, "tags": JSON, "n": JSON}


def test_a_page_becomes_a_typed_batch_and_reads_back_as_the_records() -> None:
    records = [{"id": 1, "price": 2, "ok": True, "at": "2024-01-01T10:00:00+02:00", "meta": {"a": [1]}},
               {"id": 2, "price": 2.5, "ok": None, "at": None, "meta": None, "new": "x"}]
    batch = page_batch(records, {"at": TIMESTAMP}, NOW)
    types = {f.name: str(f.type) for f in batch.schema}
    assert types == {"id": "int64", "price": "double", "ok": "bool", "at": "timestamp[us, tz=UTC]",
                     "meta": "extension<arrow.json>", "new": "string", "_sync_extracted_at": "timestamp[us, tz=UTC]"}
    back = to_records(batch)
    assert back[0]["at"] == datetime(2024, 1, 1, 8, tzinfo=UTC) and back[0]["meta"] == {"a": [1]}
    assert back[1] == {"id": 2, "price": 2.5, "ok": None, "at": None, "meta": None, "new": "x"}


def test_values_that_do_not_fit_their_column_become_text_instead_of_failing() -> None:
    batch = page_batch([{"big": 2**70, "at": "not a date", "mixed": 1}, {"mixed": "one"}], {"at": TIMESTAMP}, NOW)
    assert to_records(batch) == [{"big": str(2**70), "at": "not a date", "mixed": "1"},
                                 {"big": None, "at": None, "mixed": "one"}]


def test_merging_page_schemas_widens_and_names_each_change() -> None:
    first = page_batch([{"id": 1, "price": 2}], {}, NOW).schema
    second = page_batch([{"id": 2, "price": 2.5, "tags": ["x"]}], {}, NOW).schema
    columns, drift = merge_schemas({"id": "integer"}, [first, second])
    assert columns["price"] == "number" and columns["tags"] == JSON
    assert drift == [Drift("price", "integer", "number")]


def test_conform_fills_missing_columns_and_widens_narrow_ones() -> None:
    batch = page_batch([{"id": 1, "price": 2}], {}, NOW)
    target = pa.schema([("id", pa.string()), ("price", pa.float64()), ("note", pa.string()), ("j", pa.json_())])
    assert conform(batch, target).to_pylist() == [{"id": "1", "price": 2.0, "note": None, "j": None}]


def test_iso_dates_and_offset_timestamps_become_typed_columns_and_naive_times_stay_text() -> None:
    records = [{"day": "2024-03-01", "at": "2024-03-01T12:00:00Z", "local": "2024-03-01T12:00:00", "v": "2024-03"},
               {"day": "2024-02-29", "at": "2024-03-01T14:30:00.5+02:00", "local": None, "v": "2024-04"}]
    batch = page_batch(records, {}, NOW)
    types = {f.name: str(f.type) for f in batch.schema}
    assert types["day"] == "date32[day]" and types["at"] == "timestamp[us, tz=UTC]"
    assert types["local"] == types["v"] == "string"
    back = to_records(batch)
    assert back[0]["day"] == date(2024, 3, 1) and back[1]["at"] == datetime(2024, 3, 1, 12, 30, 0, 500000, tzinfo=UTC)


def test_a_value_that_does_not_parse_keeps_the_page_text_and_widens_the_column_as_drift() -> None:
    dates = page_batch([{"day": "2024-03-01"}, {"day": "2024-03-02"}], {}, NOW)
    other = page_batch([{"day": "2024-02-30"}, {"day": "2024-03-02"}], {}, NOW)  # no 30 February: text
    assert str(other.schema.field("day").type) == "string"
    columns, drift = merge_schemas({}, [dates.schema, other.schema])
    assert columns["day"] == STRING and drift == [Drift("day", DATE, STRING)]
    # the dates already typed read back as the text they were parsed from, not as JSON strings
    assert conform(dates, arrow_schema(columns)).column("day").to_pylist() == ["2024-03-01", "2024-03-02"]


def test_declared_date_columns_are_dates_and_text_that_is_not_one_stays_text() -> None:
    declared = declared_types({"properties": {"day": {"type": "string", "format": "date"}}})
    assert declared == {"day": DATE}
    assert str(page_batch([{"day": "2024-03-01"}], declared, NOW).schema.field("day").type) == "date32[day]"
    assert to_records(page_batch([{"day": "someday"}], declared, NOW)) == [{"day": "someday"}]
