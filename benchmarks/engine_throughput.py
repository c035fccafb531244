"""Engine throughput against a naive `requests` loop, and peak memory against data size.

    .venv/bin/python -m benchmarks.engine_throughput [--records 100000] [--page-size 1000] [--repeats 5]

Both readers walk the same opaque-cursor pages of the demo API (latency 0, in its own process, so
the server does not share the client's interpreter) and count records. The ratio says what the
engine's auth, retry, rate-limit and selector layers cost. Memory: `sync-assets read` of the same
stream at 1x and 10x the records, each in a fresh process, output to /dev/null; peak RSS from the
kernel (ru_maxrss). A flat ratio means pages stream through and nothing accumulates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import RequestStats, open_client
from sync_assets.reader import StreamReader
from sync_assets.spec import ApiSource, source_from_dict


def source_for(url: str, page_size: int) -> dict[str, object]:
    return {
        "name": "bench",
        "base_url": url,
        "auth": {"type": "bearer", "token": {"env": "BENCH_TOKEN"}},
        "streams": [{"name": "customers", "path": "/v1/customers", "records_path": "data",
                     "paginator": {"type": "cursor", "size_param": "limit", "size": page_size}}],
    }


def naive(url: str, page_size: int) -> int:
    """What a user would write by hand: one session, follow the cursor, count records."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    count, cursor = 0, None
    while True:
        params: dict[str, object] = {"limit": page_size}
        if cursor:
            params["cursor"] = cursor
        body = session.get(f"{url}/v1/customers", params=params, timeout=60).json()
        count += len(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return count


def engine(source: ApiSource, state_dir: Path) -> int:
    client = open_client(source, state_dir)
    try:
        reader = StreamReader(source, source.stream("customers"), client)
        return sum(len(page.records) for page in reader.pages(RequestStats()))
    finally:
        client.close()


def measure(read: Callable[[], int], expected: int) -> tuple[float, float]:
    """Records per wall-clock second, and client CPU microseconds per record (the server is elsewhere)."""
    started, cpu = time.perf_counter(), time.process_time()
    count = read()
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    assert count == expected, f"read {count} records, expected {expected}"
    return count / elapsed, cpu_used / count * 1e6


def peak_rss_mib(source_file: Path, env: dict[str, str]) -> tuple[float, float]:
    """Peak resident memory of a fresh `sync-assets read` process, and its wall time."""
    started = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_assets.cli", "read", str(source_file), "customers"],
            stdout=devnull, stderr=subprocess.DEVNULL, env=env,
        )
        _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ["BENCH_TOKEN"] = TOKEN
    work = Path(tempfile.mkdtemp(prefix="sync-assets-bench-"))

    with demo_api("--customers", str(args.records)) as url:
        source = source_from_dict(source_for(url, args.page_size))
        naive_runs, engine_runs = [], []
        measure(lambda: naive(url, args.page_size), args.records)  # warm both sides up
        for _ in range(args.repeats):
            naive_runs.append(measure(lambda: naive(url, args.page_size), args.records))
            engine_runs.append(measure(lambda: engine(source, work), args.records))
    naive_median, engine_median = (statistics.median(r for r, _ in runs) for runs in (naive_runs, engine_runs))
    naive_cpu, engine_cpu = (statistics.median(c for _, c in runs) for runs in (naive_runs, engine_runs))

    memory = []
    for factor in (1, 10):
        records = args.records * factor
        with demo_api("--customers", str(records)) as url:
            source_file = work / f"source_{factor}.yaml"
            source_file.write_text(yaml.safe_dump(source_for(url, args.page_size)))
            env = {**os.environ, "SYNC_ASSETS_HOME": str(work)}
            rss, seconds = peak_rss_mib(source_file, env)
            memory.append((records, rss, seconds))

    print(f"| reader | records/s (median of {args.repeats}) | client CPU µs/record (median) |")
    print("|---|---|---|")
    print(f"| naive requests loop | {naive_median:,.0f} | {naive_cpu:.2f} |")
    print(f"| sync-assets engine | {engine_median:,.0f} | {engine_cpu:.2f} |")
    print(f"| ratio engine/naive | {engine_median / naive_median:.2f} | {engine_cpu / naive_cpu:.2f} |")
    print()
    print("| records read by `sync-assets read` | peak RSS (MiB) | wall time (s) |")
    print("|---|---|---|")
    for records, rss, seconds in memory:
        print(f"| {records:,} | {rss:.1f} | {seconds:.1f} |")
    print(f"| ratio 10x/1x | {memory[1][1] / memory[0][1]:.2f} | |")


if __name__ == "__main__":
    main()
