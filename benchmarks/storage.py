"""Storage cost: CPU per record into DuckDB and into PostgreSQL, through the engine and through Dagster.

    .venv/bin/python -m benchmarks.storage [--repeats 3] [--skip-postgres]

1. **CPU per record.** The demo surveys of 30 daily partitions (about 30,000 records, 100 a page, latency
   0, the API in its own process) synced end to end: fetched, typed, staged, published. Once through the
   engine in this process (``sync_windows``, CPU of this process), once through
   ``dagster asset materialize --partition-range`` (CPU of the CLI and its step process). Each is also run
   over the same 30 partitions holding about 1 % of the records; the difference, divided by the records
   added, is the cost per record with the fixed cost of a run (process start-up, Dagster's event log)
   taken out: the median of that difference over the repeats, each repeat's two runs back to back.
   This VM's CPU speed drifts by a third from minute to minute (steal time), so each repeat
   also times a fixed pure-Python loop (10 million additions in a function): compare runs only together
   with it.
2. **Threads at zero latency.** The same windows (365 one-page days, and January's 30 full days) synced
   in one process ten at a time and one at a time, alternating: what threads cost where they cannot
   help, as a ratio within pairs, with the context switches.
3. **Per partition, against Dagster's own floor.** 365 daily partitions (few records each) as one
   in-process run, beside a trivial asset with the same partitions and backfill policy in one run: the
   floor that Dagster's per-partition bookkeeping sets; and beside one that also logs the check
   evaluations ours logs per partition, the floor of the same events.
4. **Peak memory against data size**: a full refresh of 100,000 and of 1,000,000 customers into the
   DuckDB store, each in a fresh process; peak RSS from the kernel. Flat means pages stream through.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.demo_server import TOKEN, demo_api

REPO = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"
POSTGRES = os.environ.get("SYNC_ASSETS_BENCH_POSTGRES", "postgresql://127.0.0.1:5432/test")
FULL, SMALL = 354_000, 3_540  # surveys in the API: about 30,000 and 300 of them modified in January 1-30


@contextmanager
def fresh_store(backend: str, postgres: str = POSTGRES) -> Iterator[str]:
    """A new, empty store of ``backend``: a folder, or a database created on the ``postgres`` server for it
    (dropped after)."""
    if backend == "duckdb":
        folder = tempfile.mkdtemp(prefix="sync-assets-bench-")
        yield str(Path(folder) / "store")
        shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"sync_assets_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield postgres.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def engine_run(url: str, store: str, concurrency: int = 10, days: int = 30) -> tuple[int, float]:
    """Records synced and CPU seconds of this process, for ``days`` days from January 1 through the engine,
    ``concurrency`` windows at once."""
    from sync_assets.http import open_client
    from sync_assets.reader import StreamReader
    from sync_assets.sources import demo_source
    from sync_assets.storage import open_store
    from sync_assets.window_sync import sync_windows
    from sync_assets.windows import partition_key, windows_between

    source = demo_source().model_copy(update={"base_url": url, "rate_limits": []})
    os.environ["SYNC_ASSETS_DEMO_TOKEN"] = TOKEN
    first = datetime(2024, 1, 1, tzinfo=UTC)
    windows = [(partition_key(w.start, "daily"), w)
               for w in windows_between(first, first + timedelta(days=days), "daily")]
    state_dir = Path(tempfile.mkdtemp(prefix="sync-assets-bench-"))
    started = time.process_time()
    target = open_store(store)
    client = open_client(source, state_dir)
    results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), target, windows, concurrency))
    cpu = time.process_time() - started
    client.close()
    target.close()
    assert all(r.error is None for r in results), [r.error for r in results if r.error][:3]
    return sum(r.state.records for r in results if r.state), cpu


def cli_run(url: str, store: str) -> float:
    """CPU seconds of `dagster asset materialize` (CLI and step process) for January 1-30."""
    home = Path(tempfile.mkdtemp(prefix="sync-assets-bench-home-"))
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN,
           "SYNC_ASSETS_STORE_URL": store}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(DAGSTER), "asset", "materialize", "-m", "benchmarks.backfill_defs", "--select",
                    "demo/surveys", "--partition-range", "2024-01-01...2024-01-30"],
                   env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(home, ignore_errors=True)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _in_child(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a fresh interpreter, so that runs do not share caches or connections."""
    code = (f"import json, sys; from benchmarks.storage import {function.__name__} as f; "
            f"print(json.dumps(f(*json.loads(sys.argv[1]))))")
    import json

    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def calibration() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine is right now."""
    started, total = time.process_time(), 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - started


def cpu_per_record(backends: list[str], repeats: int, concurrency: int = 10, engine_only: bool = False) -> None:
    rows = []
    with demo_api("--surveys", str(FULL)) as full_url, demo_api("--surveys", str(SMALL)) as small_url:
        for backend in backends:
            engine_full, engine_small, cli_full, cli_small, records, loops = [], [], [], [], [], []
            for _ in range(repeats):
                loops.append(calibration())
                with fresh_store(backend) as store:
                    n, cpu = _in_child(engine_run, full_url, store, concurrency)
                    records.append(n)
                    engine_full.append(cpu)
                with fresh_store(backend) as store:
                    small, cpu = _in_child(engine_run, small_url, store, concurrency)
                    engine_small.append(cpu)
                if engine_only:
                    continue
                with fresh_store(backend) as store:
                    cli_full.append(cli_run(full_url, store))
                with fresh_store(backend) as store:
                    cli_small.append(cli_run(small_url, store))
            n = statistics.median(records)
            added, loop = n - small, statistics.median(loops)
            paths = [(f"engine, {concurrency} at a time", engine_full, engine_small)]
            if not engine_only:
                paths.append(("dagster asset materialize", cli_full, cli_small))
            for path, full, few in paths:
                f, s = statistics.median(full), statistics.median(few)
                # each repeat's pair ran back to back, at one speed of the machine: difference within pairs
                per_record = statistics.median(a - b for a, b in zip(full, few, strict=True)) / added * 1e6
                rows.append(f"| {backend} | {path} | {n:,.0f} | {f:.2f} | {s:.2f} | {per_record:.1f} | {loop:.2f} |")
    print(f"| backend | path | records | CPU s, 30 partitions | CPU s, ~1 % of the records | us per record "
          f"added (median of {repeats} pairs) | calibration loop s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def thread_cost(repeats: int) -> None:
    """What ten threads cost over one at zero latency, where they cannot help: the same windows synced in
    this process, ten at a time then one at a time, alternating, so that both see the same machine."""
    print(f"| DuckDB, engine, zero latency (median of {repeats} pairs) | CPU s, 1 thread | CPU s, 10 threads "
          "| 10 / 1 within pairs | context switches, 1 | context switches, 10 |")
    print("|---|---|---|---|---|---|")
    for label, surveys, days in (("365 one-page windows", 2000, 365), ("30 windows of about 1,000 records", FULL, 30)):
        runs: dict[int, list[tuple[float, int]]] = {1: [], 10: []}
        with demo_api("--surveys", str(surveys)) as url:
            _engine_counted(url, 1, days)  # warm: imports, connections, the time-zone database
            for _ in range(repeats):
                for concurrency in (10, 1):
                    runs[concurrency].append(_engine_counted(url, concurrency, days))
        ratio = statistics.median(a[0] / b[0] for a, b in zip(runs[10], runs[1], strict=True))
        cpu = {c: statistics.median(r[0] for r in runs[c]) for c in runs}
        switches = {c: statistics.median(r[1] for r in runs[c]) for c in runs}
        print(f"| {label} | {cpu[1]:.2f} | {cpu[10]:.2f} | {ratio:.2f} | {switches[1]:,.0f} | {switches[10]:,.0f} |")


def _engine_counted(url: str, concurrency: int, days: int) -> tuple[float, int]:
    """CPU seconds and context switches of this process for one engine run into a new DuckDB store."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    with fresh_store("duckdb") as store:
        _, cpu = engine_run(url, store, concurrency, days)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return cpu, (after.ru_nvcsw + after.ru_nivcsw) - (before.ru_nvcsw + before.ru_nivcsw)


def partition_floor(repeats: int) -> None:
    """365 windows in one in-process run, beside trivial assets over the same 365 partitions: one that logs
    nothing but its materializations, one that logs the same check evaluations per partition as ours; and
    ours again with the asset's checks off, beside the first."""
    runs: dict[str, list[tuple[float, float]]] = {"demo/surveys": [], "trivial_daily": [], "trivial_daily_checked": [],
                                                  "unchecked": []}
    with demo_api("--surveys", "2000") as url:
        for _ in range(repeats):
            for name, results in runs.items():
                key, checks = ("demo/surveys", False) if name == "unchecked" else (name, True)
                results.append(_in_child(in_process_year, url, key, checks))
    print(f"| 365 daily partitions, one in-process run (median of {repeats}) | wall s | CPU s |")
    print("|---|---|---|")
    for key, name in (("trivial_daily", "trivial asset, same partitions and backfill policy (Dagster's floor)"),
                      ("trivial_daily_checked", "the same, logging two check evaluations per partition as ours does"),
                      ("demo/surveys", "demo/surveys (fetch, type, stage, publish, check each window)"),
                      ("unchecked", "demo/surveys with its checks off")):
        print(f"| {name} | {statistics.median(r[0] for r in runs[key]):.2f} | "
              f"{statistics.median(r[1] for r in runs[key]):.2f} |")
    for ours, floor in (("demo/surveys", "trivial_daily"), ("demo/surveys", "trivial_daily_checked"),
                        ("unchecked", "trivial_daily")):
        cells = []
        for measure in (0, 1):  # each repeat's runs back to back: the machine's speed drifts less within one
            ratios = sorted(a[measure] / b[measure] for a, b in zip(runs[ours], runs[floor], strict=True))
            cells.append(f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}, {ratios[-1]:.2f})")
        print(f"| {ours} / {floor}, within each repeat: median (lowest, highest) | {cells[0]} | {cells[1]} |")


def in_process_year(url: str, key: str, checks: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds (this process: the run and its threads) of one run over 2024-01-01...2024-12-30."""
    os.environ["SYNC_ASSETS_BENCH_ASSET_CHECKS"] = "on" if checks else "off"  # before the definitions load
    from dagster import AssetKey, DagsterInstance, materialize

    from benchmarks.backfill_defs import defs

    os.environ.update({"SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN})
    home = tempfile.mkdtemp(prefix="sync-assets-bench-home-")
    shutil.copy(REPO / "dagster.yaml", Path(home) / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = home
    os.environ.pop("SYNC_ASSETS_STORE_URL", None)
    with DagsterInstance.get() as instance:
        asset = defs.get_assets_def(AssetKey.from_user_string(key))
        started, cpu = time.perf_counter(), time.process_time()
        result = materialize([asset], instance=instance, resources=defs.resources,
                             tags={"dagster/asset_partition_range_start": "2024-01-01",
                                   "dagster/asset_partition_range_end": "2024-12-30"})
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result.success
    return wall, cpu


def peak_memory() -> None:
    print("| full refresh of customers into DuckDB, fresh process | peak RSS MiB |")
    print("|---|---|")
    for count in (100_000, 1_000_000):
        with demo_api("--customers", str(count)) as url, fresh_store("duckdb") as store:
            rss = _in_child(refresh_rss, url, store, count)
        print(f"| {count:,} customers | {rss:.1f} |")


def refresh_rss(url: str, store: str, count: int) -> float:
    from sync_assets.http import open_client
    from sync_assets.reader import StreamReader
    from sync_assets.refresh import FullRefresh
    from sync_assets.spec import source_from_dict
    from sync_assets.storage import open_store

    source = source_from_dict({
        "name": "bench", "base_url": url, "auth": {"type": "bearer", "token": TOKEN},
        "streams": [{"name": "customers", "path": "/v1/customers", "records_path": "data", "primary_key": "id",
                     "chunk_pages": 100, "paginator": {"type": "cursor", "size_param": "limit", "size": 1000}}],
    })
    client = open_client(source, Path(tempfile.mkdtemp(prefix="sync-assets-bench-")))
    runner = FullRefresh(StreamReader(source, source.stream("customers"), client), open_store(store), 4)
    records = sum(r.checkpoint.records for r in runner.run() if r.checkpoint)
    assert runner.published and records == count, records
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", choices=["cpu", "threads", "floor", "memory"])
    parser.add_argument("--concurrency", type=int, default=10, help="windows at once in the engine path (cpu)")
    parser.add_argument("--engine-only", action="store_true", help="leave out the dagster path (cpu)")
    args = parser.parse_args()
    if args.only in (None, "cpu"):
        cpu_per_record(["duckdb"] if args.skip_postgres else ["duckdb", "postgres"], args.repeats, args.concurrency,
                       args.engine_only)
        print()
    if args.only in (None, "threads"):
        thread_cost(args.repeats)
        print()
    if args.only in (None, "floor"):
        partition_floor(args.repeats)
        print()
    if args.only in (None, "memory"):
        peak_memory()


if __name__ == "__main__":
    main()
