"""Substreams: children of ~50 parents at 100 ms latency, against the ideal parents x latency / concurrency;
and a year of a child's own windows over five parents, in request slices against a request per window.

    .venv/bin/python -m benchmarks.substream [--latency-ms 100] [--concurrency 10] [--repeats 5]
    .venv/bin/python -m benchmarks.substream --only own-windows [--repeats 3]

The parents (surveys of one day, about 50 with --surveys 18300) are synced into the store first;
then the children (each survey's responses, one page each) are read from the demo API on the
engine's bounded pool. Each repeat re-reads the same partition into a fresh store.

``own-windows``: the five tickers are refreshed into the store, then a year of daily windows of each
ticker's prices (``/v1/prices?ticker=``, a cursor per parent) is read in one run, with ``slicing: adaptive``
(the default) and ``slicing: window`` (a request sequence per window and parent, as before).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import open_client
from sync_assets.reader import StreamReader
from sync_assets.refresh import FullRefresh
from sync_assets.spec import ApiSource, source_from_dict
from sync_assets.storage import open_store
from sync_assets.substream import sync_substream
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Window

DAY = ("2024-01-05", Window(datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC)))


def source(url: str, concurrency: int) -> ApiSource:
    page = {"type": "page_number", "size": 100, "total_path": "total"}
    return source_from_dict({
        "name": "bench", "base_url": url, "auth": {"type": "bearer", "token": TOKEN}, "concurrency": concurrency,
        "streams": [
            {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
             "paginator": page, "incremental": {"cursor_field": "date_modified", "start": "2024-01-01",
                                                "start_param": "start_modified_at", "end_param": "end_modified_at"}},
            {"name": "responses", "path": "/v3/surveys/{parent[id]}/responses", "records_path": "data",
             "parent": {"stream": "surveys"}, "paginator": page},
        ],
    })


YEAR = [(f"{day:%Y-%m-%d}", Window(day, day + timedelta(days=1)))
        for day in (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=n) for n in range(366))]


def ticker_source(url: str, concurrency: int, slicing: str) -> ApiSource:
    return source_from_dict({
        "name": "bench", "base_url": url, "auth": {"type": "bearer", "token": TOKEN}, "concurrency": concurrency,
        "streams": [
            {"name": "tickers", "path": "/v1/tickers", "records_path": "data", "primary_key": "symbol"},
            {"name": "ticker_prices", "path": "/v1/prices", "records_path": "data", "primary_key": ["ticker", "date"],
             "parent": {"stream": "tickers"}, "params": {"ticker": "{parent[symbol]}", "limit": 1000},
             "paginator": {"type": "next_url", "url_path": "next"},
             "incremental": {"cursor_field": "date", "start": "2024-01-01", "start_param": "start_date",
                             "end_param": "end_date", "end_inclusive": True, "param_format": "date",
                             "slicing": slicing}},
        ],
    })


def own_windows(latency_ms: float, concurrency: int, repeats: int) -> None:
    rows: list[tuple[str, int, float]] = []
    with demo_api("--latency-ms", str(latency_ms)) as url:
        for slicing in ("adaptive", "window"):
            walls, requests = [], 0
            for _ in range(repeats):
                src = ticker_source(url, concurrency, slicing)
                work = Path(tempfile.mkdtemp(prefix="sync-assets-own-windows-"))
                client, store = open_client(src, work), open_store(work / "store")
                refresh = FullRefresh(StreamReader(src, src.stream("tickers"), client), store, concurrency=1)
                assert all(chunk.error is None for chunk in refresh.run()) and refresh.published is not None
                started = time.perf_counter()
                results = list(sync_substream(StreamReader(src, src.stream("ticker_prices"), client), store, YEAR,
                                              concurrency))
                walls.append(time.perf_counter() - started)
                assert all(r.error is None and r.state is not None for r in results) and len(results) == len(YEAR)
                assert sum(r.state.records for r in results if r.state) == 366 * 5
                requests = sum(r.stats.requests for r in results)
                client.close()
            rows.append((slicing, requests, statistics.median(walls)))
    print(f"| a year of daily windows x 5 tickers, {latency_ms:.0f} ms, concurrency {concurrency} "
          f"(median of {repeats}) | requests | wall s |")
    print("|---|---|---|")
    for slicing, requests, wall in rows:
        print(f"| slicing: {slicing} | {requests} | {wall:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--surveys", type=int, default=18300)
    parser.add_argument("--only", choices=["own-windows"])
    args = parser.parse_args()
    if args.only == "own-windows":
        own_windows(args.latency_ms, args.concurrency, args.repeats)
        return
    with demo_api("--latency-ms", str(args.latency_ms), "--surveys", str(args.surveys)) as url:
        src = source(url, args.concurrency)
        walls, parents = [], 0
        for _ in range(args.repeats):
            work = Path(tempfile.mkdtemp(prefix="sync-assets-substream-"))
            client, store = open_client(src, work), open_store(work / "store")
            (window,) = sync_windows(StreamReader(src, src.stream("surveys"), client), store, [DAY], 1)
            assert window.state is not None
            parents = window.state.records
            started = time.perf_counter()
            (result,) = sync_substream(StreamReader(src, src.stream("responses"), client), store, [DAY],
                                       args.concurrency)
            walls.append(time.perf_counter() - started)
            assert result.state is not None and result.parents == parents
            client.close()
    ideal = parents * args.latency_ms / 1000 / args.concurrency
    wall = statistics.median(walls)
    print(f"| substream of {parents} parents, {args.latency_ms:.0f} ms latency, concurrency {args.concurrency} "
          f"(median of {args.repeats}) | seconds |")
    print("|---|---|")
    print(f"| ideal = parents x latency / concurrency | {ideal:.2f} |")
    print(f"| measured | {wall:.2f} |")
    print(f"| ratio measured/ideal | {wall / ideal:.2f} |")


if __name__ == "__main__":
    main()
