"""Queries over a year of hourly partitions of 5 rows each (8,760 partitions, 43,800 rows), as group files.

    .venv/bin/python -m benchmarks.hourly_query [--repeats 5]

The year is published through the DuckDB store as ten request slices of 876 hours would publish it; a
second store gets its first 11 months so and its last 30 days one hour a publish, as an hourly schedule
would (each such publish rewrites the open group beside it). Then both are queried: `count(*)`, a
filter on the primary key, and a count of `<stream>_current`. Each query is timed inside DuckDB (a
read-only connection to the store's database, as `sync-assets sql` opens it) and through `sync-assets sql`
(process start included). Beside it, the same rows as one Parquet file per partition (how release 0.2 kept
them) behind the same kind of view.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sync_assets.storage import PartitionState, TableSpec
from sync_assets.storage.duckdb import DuckDBStore

BIN = Path(sys.executable).parent
TABLE = TableSpec("bench", "events", primary_key=("id",), cursor=True)
START = datetime(2024, 1, 1, tzinfo=UTC)
HOURS, ROWS = 8760, 5
QUERIES = {
    "count(*)": "SELECT count(*) FROM bench.events",
    "primary key filter": "SELECT * FROM bench.events WHERE id = 31337",
    "events_current count": "SELECT count(*) FROM bench.events_current",
}


def hour(h: int) -> tuple[str, list[dict[str, Any]], datetime]:
    at = START + timedelta(hours=h)
    return at.strftime("%Y-%m-%d-%H:%M"), [{"id": h * ROWS + i, "kind": "click", "updated": at}
                                            for i in range(ROWS)], at


def publish(store: DuckDBStore, hours: range) -> None:
    stages, states = [], []
    for h in hours:
        key, records, at = hour(h)
        stage = store.private_stage(TABLE, key)
        stage.append(records, cursors=[at] * ROWS)
        stages.append(stage)
        states.append(PartitionState(key, None, ROWS, 1, 1, 0, None, datetime.now(UTC)))
    store.publish_partitions(stages, states)


def one_file_each(folder: Path) -> Path:
    """The year as release 0.2 kept it, and a DuckDB database with the same views over it."""
    files = folder / "files"
    files.mkdir(parents=True)
    for h in range(HOURS):
        key, records, at = hour(h)
        table = pa.Table.from_pylist([{**r, "_sync_cursor": at, "_sync_partition": key} for r in records])
        pq.write_table(table, files / f"{key}.parquet")
    catalog = folder / "warehouse.duckdb"
    glob = str(files / "*.parquet")
    with duckdb.connect(str(catalog)) as db:
        db.execute("CREATE SCHEMA bench")
        db.execute(f"CREATE VIEW bench.events AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
        db.execute("CREATE VIEW bench.events_current AS SELECT * FROM bench.events QUALIFY row_number() OVER "
                   "(PARTITION BY id ORDER BY _sync_cursor DESC) = 1")
    return catalog


def in_duckdb(catalog: Path, sql: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with duckdb.connect(str(catalog), read_only=True) as db:
            started = time.perf_counter()
            db.sql(sql).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def through_cli(store: Path, sql: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([str(BIN / "sync-assets"), "sql", sql, "--store", str(store)], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sync-assets-hourly-"))
    sliced, scheduled = DuckDBStore(root / "sliced"), DuckDBStore(root / "scheduled")
    started = time.perf_counter()
    for first in range(0, HOURS, HOURS // 10):
        publish(sliced, range(first, min(first + HOURS // 10, HOURS)))
    sliced_seconds = time.perf_counter() - started
    scheduled_hours = 720
    for first in range(0, HOURS - scheduled_hours, (HOURS - scheduled_hours) // 10):
        publish(scheduled, range(first, min(first + (HOURS - scheduled_hours) // 10, HOURS - scheduled_hours)))
    started = time.perf_counter()
    for h in range(HOURS - scheduled_hours, HOURS):
        publish(scheduled, range(h, h + 1))
    per_hour = (time.perf_counter() - started) / scheduled_hours
    legacy = one_file_each(root / "legacy")
    files = {name: len(list(store.stream_dir(TABLE).glob("*.parquet"))) for name, store in
             (("sliced", sliced), ("scheduled", scheduled))}
    print(f"| a year of hourly partitions x {ROWS} rows (median of {args.repeats}) | group files, 10 slices "
          f"| group files, last 720 hours one a publish | one file per partition (0.2) |")
    print("|---|---|---|---|")
    print(f"| Parquet files | {files['sliced']} | {files['scheduled']} | {HOURS} |")
    print(f"| publishing | {sliced_seconds:.2f} s for the year | {per_hour * 1000:.0f} ms an hourly publish | |")
    for label, sql in QUERIES.items():
        figures = [in_duckdb(sliced.catalog.path, sql, args.repeats),
                   in_duckdb(scheduled.catalog.path, sql, args.repeats), in_duckdb(legacy, sql, args.repeats)]
        print(f"| {label}, in DuckDB, s | " + " | ".join(f"{f:.3f}" for f in figures) + " |")
        print(f"| {label}, `sync-assets sql` wall, s | {through_cli(sliced.root, sql, args.repeats):.2f} | "
              f"{through_cli(scheduled.root, sql, args.repeats):.2f} | |")


if __name__ == "__main__":
    main()
