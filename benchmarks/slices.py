"""Request slices against the ideal: a sparse year under a strict budget, and a dense latency-bound month.

    .venv/bin/python -m benchmarks.slices [--repeats 3] [--skip-dagster] [--only sparse|dense|skewed]

**Sparse**: a year of daily windows of 5 records each (1,830 surveys), 100 a page, 100 ms latency, and an API
that allows 20 requests per 2 s (the source declares the same budget). One range read needs 19 requests.
Measured: requests and 429s, and wall time through `sync-assets read` against a single-threaded range read of
the same data (one request sequence for the whole year, in this process), and through `dagster asset
materialize` of the 366 partitions (with the asset's checks, and without them) against a trivial asset's run
(Dagster's fixed cost of a run) and a trivial daily asset over the same partitions (Dagster's floor).

**Dense**: 30 daily windows of about 200 records each (73,200 surveys over the year), 100 a page, 100 ms
latency, no budget: the fetch span of the engine's range read (`spool_windows`, in this process) and its
requests, through slices and one window at a time (`slicing: window`, how every range was read before).

**Skewed**: half a year of daily windows with no records, then ten days of about 200 each: one planned slice
holds them all. The fetch span with that slice cut up for the idle threads (the default) and without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks.backfill import fresh_home
from benchmarks.budgeted_defs import BUDGETED_SOURCE
from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import RequestStats, open_client
from sync_assets.reader import StreamReader
from sync_assets.sources import demo_source
from sync_assets.spec import load_source
from sync_assets.spooled import spool_windows
from sync_assets.windows import Window, windows_between

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
YEAR = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))


def _stats(url: str) -> dict[str, int]:
    stats = requests.get(f"{url}/stats", timeout=5).json()
    requests.post(f"{url}/stats/reset", timeout=5)
    return {"requests": stats["requests"], "429s": stats.get("responses_429", 0)}


def _env(url: str, home: Path) -> dict[str, str]:
    return {**os.environ, "SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN, "DAGSTER_HOME": str(home),
            "SYNC_ASSETS_HOME": str(home / "sync_assets")}


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def single_range_read(url: str, state_dir: Path) -> float:
    """One request sequence for the whole year, one thread: what a plain range read costs."""
    source = load_source(BUDGETED_SOURCE).model_copy(update={"base_url": url})
    os.environ["SYNC_ASSETS_DEMO_TOKEN"] = TOKEN
    client = open_client(source, state_dir)
    started = time.perf_counter()
    records = sum(len(page.records) for page in
                  StreamReader(source, source.stream("surveys"), client).pages(RequestStats(), window=YEAR))
    wall = time.perf_counter() - started
    client.close()
    assert records == 1830, records
    return wall


def sparse(repeats: int, dagster: bool) -> None:
    rows: dict[str, list[float]] = {k: [] for k in ("single", "read", "read_requests", "read_429s", "trivial",
                                                    "trivial_daily", "dagster", "dagster_requests", "dagster_429s",
                                                    "unchecked")}
    with demo_api("--latency-ms", "100", "--surveys", "1830", "--rate-limit", "20/2") as url:
        for _ in range(repeats):
            home = fresh_home()
            env = _env(url, home)
            time.sleep(2.1)  # the API's window of the last run is over
            _stats(url)
            rows["single"].append(single_range_read(url, home / "single"))
            _stats(url)
            time.sleep(2.1)
            rows["read"].append(_timed([str(BIN / "sync-assets"), "read", str(BUDGETED_SOURCE),
                                        "surveys", "--start", "2024-01-01", "--end", "2025-01-01", "-o",
                                        str(home / "out.jsonl")], env))
            stats = _stats(url)
            rows["read_requests"].append(stats["requests"])
            rows["read_429s"].append(stats["429s"])
            if dagster:
                materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "benchmarks.budgeted_defs"]
                year = ["--partition-range", "2024-01-01...2024-12-31"]
                rows["trivial"].append(_timed([*materialize, "--select", "trivial"], env))
                rows["trivial_daily"].append(_timed([*materialize, "--select", "trivial_daily", *year], env))
                time.sleep(2.1)
                _stats(url)
                rows["dagster"].append(_timed([*materialize, "--select", "demo/surveys", *year], env))
                stats = _stats(url)
                rows["dagster_requests"].append(stats["requests"])
                rows["dagster_429s"].append(stats["429s"])
                time.sleep(2.1)
                unchecked = {**_env(url, fresh_home()), "SYNC_ASSETS_BENCH_ASSET_CHECKS": "off"}
                rows["unchecked"].append(_timed([*materialize, "--select", "demo/surveys", *year], unchecked))
    m = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"| sparse year: 366 daily windows x 5 records, 100 ms, 20 req / 2 s (median of {repeats}) | value |")
    print("|---|---|")
    print(f"| single-threaded range read, wall s | {m['single']:.2f} |")
    print(f"| `sync-assets read`, wall s | {m['read']:.2f} |")
    print(f"| ratio read / single range read | {m['read'] / m['single']:.2f} |")
    print(f"| `sync-assets read`: requests, 429s | {m['read_requests']:.0f}, {m['read_429s']:.0f} |")
    if dagster:
        print(f"| trivial asset run (Dagster's fixed cost), wall s | {m['trivial']:.2f} |")
        print(f"| `dagster asset materialize` of 366 partitions, wall s | {m['dagster']:.2f} |")
        print(f"| materialize - trivial run, s | {m['dagster'] - m['trivial']:.2f} |")
        print(f"| trivial daily asset over the same 366 partitions (Dagster's floor), wall s | "
              f"{m['trivial_daily']:.2f} |")
        print(f"| materialize - floor, s | {m['dagster'] - m['trivial_daily']:.2f} |")
        print(f"| materialize: requests, 429s | {m['dagster_requests']:.0f}, {m['dagster_429s']:.0f} |")
        print(f"| the same with the asset's checks off, wall s | {m['unchecked']:.2f} |")
        print(f"| checks off: materialize - floor, s | {m['unchecked'] - m['trivial_daily']:.2f} |")


def dense(repeats: int) -> None:
    """The same month read through slices and one window at a time (``slicing: window``, as before slices)."""
    rows: dict[str, tuple[float, float]] = {}
    with demo_api("--latency-ms", "100", "--surveys", "73200") as url:
        os.environ["SYNC_ASSETS_DEMO_TOKEN"] = TOKEN
        windows = list(windows_between(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 31, tzinfo=UTC), "daily"))
        for slicing in ("adaptive", "window"):
            source = demo_source().model_copy(update={"base_url": url, "rate_limits": []})
            stream = source.stream("surveys")
            assert stream.incremental is not None
            stream = stream.model_copy(update={"incremental": stream.incremental.model_copy(
                update={"slicing": slicing})})
            spans, made = [], []
            for _ in range(repeats):
                client = open_client(source, Path(tempfile.mkdtemp()))
                reader = StreamReader(source, stream, client)
                _stats(url)
                started, records = time.perf_counter(), 0
                for result in spool_windows(reader, windows, source.concurrency):
                    assert result.error is None, result.error
                    records += sum(w.records for w in result.windows)
                    result.sink.close()
                spans.append(time.perf_counter() - started)
                made.append(_stats(url)["requests"])
                client.close()
            rows[slicing] = statistics.median(made), statistics.median(spans)
    print(f"\n| dense month: 30 daily windows, {records} records, 100 a page, 100 ms, 10 in flight "
          f"(median of {repeats}) | requests | fetch span, s | ideal: requests x 100 ms / 10, s |")
    print("|---|---|---|---|")
    for slicing, (made_, span) in rows.items():
        print(f"| slicing: {slicing} | {made_:.0f} | {span:.2f} | {made_ * 0.1 / 10:.2f} |")


def skewed(repeats: int) -> None:
    """Half a year with no records, then ten days of about 200 a day: one planned slice holds all of them."""
    from sync_assets import slices

    rows: dict[str, tuple[float, float]] = {}
    with demo_api("--latency-ms", "100", "--surveys", "73200") as url:
        os.environ["SYNC_ASSETS_DEMO_TOKEN"] = TOKEN
        source = demo_source().model_copy(update={"base_url": url, "rate_limits": []})
        windows = list(windows_between(datetime(2023, 7, 1, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC), "daily"))
        deep = slices.DEEP_PAGES
        for label, deep_pages in (("cut up when deep (the default)", deep), ("never cut up", 10**9)):
            slices.DEEP_PAGES = deep_pages
            spans, made = [], []
            for _ in range(repeats):
                client = open_client(source, Path(tempfile.mkdtemp()))
                reader = StreamReader(source, source.stream("surveys"), client)
                _stats(url)
                started = time.perf_counter()
                for result in spool_windows(reader, windows, source.concurrency):
                    assert result.error is None, result.error
                    result.sink.close()
                spans.append(time.perf_counter() - started)
                made.append(_stats(url)["requests"])
                client.close()
            rows[label] = statistics.median(made), statistics.median(spans)
        slices.DEEP_PAGES = deep
    print(f"\n| skewed: 194 daily windows, records in the last 10 only (about 2,000), 100 a page, 100 ms, 10 in "
          f"flight (median of {repeats}) | requests | fetch span, s |")
    print("|---|---|---|")
    for label, (made_, span) in rows.items():
        print(f"| {label} | {made_:.0f} | {span:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dagster", action="store_true")
    parser.add_argument("--only", choices=["sparse", "dense", "skewed"])
    args = parser.parse_args()
    if args.only in (None, "sparse"):
        sparse(args.repeats, not args.skip_dagster)
    if args.only in (None, "dense"):
        dense(args.repeats)
    if args.only in (None, "skewed"):
        skewed(args.repeats)


if __name__ == "__main__":
    main()
