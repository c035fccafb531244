"""Helpers for tests: sources pointed at a demo API, and reading a stream whole."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sync_assets.demo_api import DemoApi
from sync_assets.http import HttpClient, RequestStats, open_client
from sync_assets.reader import StreamReader
from sync_assets.spec import ApiSource, source_from_dict
from sync_assets.storage import Store, TableSpec

TOKEN = "s3cret-demo-token"

ClientFor = Callable[[ApiSource], HttpClient]
"""The ``client_for`` fixture: a source's client, closed when the test ends."""
OpenReader = Callable[[ApiSource, str], StreamReader]
"""The ``open_reader`` fixture: a reader of a source's stream, its client closed when the test ends."""

# Retries fast enough for tests, still exponential.
FAST_RETRY = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "max_attempts": 8}


# Full-refresh streams of the demo API as the refresh tests read them: small pages, small chunks.
REFRESH_STREAMS: list[dict[str, Any]] = [
    {"name": "customers", "path": "/v1/customers", "records_path": "data", "primary_key": "id", "chunk_pages": 3,
     "paginator": {"type": "cursor", "size_param": "limit", "size": 20}},
    {"name": "orders", "path": "/v1/orders", "records_path": "items", "primary_key": "id", "chunk_pages": 2,
     "paginator": {"type": "offset", "limit": 25, "total_path": "total"}},
    {"name": "events", "path": "/v1/events", "primary_key": "id", "chunk_pages": 4, "params": {"page_size": 15},
     "paginator": {"type": "link_header"}},
]


TICKERS = {"name": "tickers", "path": "/v1/tickers", "records_path": "data", "primary_key": "symbol"}
TICKER_PRICES = {
    "name": "ticker_prices", "path": "/v1/prices", "records_path": "data", "primary_key": ["ticker", "date"],
    "parent": {"stream": "tickers"}, "params": {"ticker": "{parent[symbol]}", "limit": 2},
    "paginator": {"type": "next_url", "url_path": "next"},
    "incremental": {"cursor_field": "date", "start": "2024-01-01", "start_param": "start_date",
                    "end_param": "end_date", "end_inclusive": True, "param_format": "date"}}
CURRENCIES = {"name": "currencies", "path": "/v1/currencies", "records_path": "data", "primary_key": "code"}
# A report per ticker per currency: two lists' product, each list a full-refresh stream's published records.
TICKER_REPORTS = {
    "name": "ticker_reports", "path": "/v1/reports/prices/20240301/20240307", "records_path": "items",
    "primary_key": ["ticker", "currency", "date"], "params": {"ticker": "{each[ticker]}", "currency": "{each[cur]}"},
    "for_each": [{"field": "ticker", "values_of": {"stream": "tickers", "key": "symbol"}},
                 {"field": "cur", "values_of": {"stream": "currencies", "key": "code"}}],
    "chunk_pages": 20}


def make_source_data(url: str, streams: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "demo",
        "base_url": url,
        "auth": {"type": "bearer", "token": TOKEN},
        "retry": FAST_RETRY,
        "streams": REFRESH_STREAMS if streams is None else streams,
    }
    data.update(overrides)
    return data


def make_source(api: DemoApi, streams: list[dict[str, Any]], **overrides: Any) -> ApiSource:
    return source_from_dict(make_source_data(api.url, streams, **overrides))


def stored(store: Store, stream: str, keys: list[str] | None = None) -> list[dict[str, Any]]:
    """What the store holds for a demo stream: the given partitions, or (``None``) the published snapshot."""
    if keys is None:
        return list(store.snapshot_records(TableSpec("demo", stream, "snapshot")))
    return list(store.records(TableSpec("demo", stream), keys))


def read_all(
    source: ApiSource, stream: str, state_dir: Path, **pages_kwargs: Any
) -> tuple[list[dict[str, Any]], RequestStats]:
    """Every record of ``stream``, and the request counters of the read."""
    stats = RequestStats()
    client = open_client(source, state_dir)
    try:
        reader = StreamReader(source, source.stream(stream), client)
        records = [r for page in reader.pages(stats, **pages_kwargs) for r in page.records]
    finally:
        client.close()
    return records, stats



def typed(records: list[dict[str, Any]], dates: tuple[str, ...] = (), timestamps: tuple[str, ...] = ()
          ) -> list[dict[str, Any]]:
    """The API's records as the store types them: ISO dates and offset date-times become ``date``/``datetime``."""
    return [{**record, **{f: date.fromisoformat(record[f]) for f in dates if record.get(f) is not None},
             **{f: datetime.fromisoformat(record[f]) for f in timestamps if record.get(f) is not None}}
            for record in records]
