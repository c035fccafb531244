"""A substream over ~50 parents at 100 ms latency, against the ideal parents x latency / concurrency.

    .venv/bin/python -m benchmarks.substream [--latency-ms 100] [--concurrency 10] [--repeats 5]

The parents (surveys of one day, about 50 with --surveys 18300) are synced into the store first;
then the children (each survey's responses, one page each) are read from the demo API on the
engine's bounded pool. Each repeat re-reads the same partition into a fresh store.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import open_client
from sync_assets.reader import StreamReader
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--surveys", type=int, default=18300)
    args = parser.parse_args()
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
