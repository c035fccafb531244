"""Helpers for tests: sources pointed at a demo API, and reading a stream whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync_assets.demo_api import DemoApi
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader, open_client
from sync_assets.spec import ApiSource, source_from_dict

TOKEN = "s3cret-demo-token"

# Retries fast enough for tests, still exponential.
FAST_RETRY = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "max_attempts": 8}


def make_source(api: DemoApi, streams: list[dict[str, Any]], **overrides: Any) -> ApiSource:
    data: dict[str, Any] = {
        "name": "demo",
        "base_url": api.url,
        "auth": {"type": "bearer", "token": TOKEN},
        "retry": FAST_RETRY,
        "streams": streams,
    }
    data.update(overrides)
    return source_from_dict(data)


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

