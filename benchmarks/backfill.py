"""A 90-day backfill of the surveys stream as one range run through the Dagster CLI, against the ideal.

    .venv/bin/python -m benchmarks.backfill [--days 90] [--latency-ms 100] [--repeats 3]

The demo API answers every request after `--latency-ms`. The ideal wall time is
requests x latency / concurrency (the windows are latency-bound and read `concurrency` at a time)
plus the overhead of one trivial `dagster asset materialize` run, measured here on the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import requests
from dagster import DagsterInstance

from benchmarks.demo_server import TOKEN, demo_api

REPO = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"
CONCURRENCY = 10  # the demo source's default


def fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="sync-assets-backfill-"))
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    DagsterInstance.from_config(str(home)).dispose()
    return home


def materialize(env: dict[str, str], *selection: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "benchmarks.backfill_defs", *selection],
        env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    first = date(2024, 1, 1)
    last = first + timedelta(days=args.days - 1)
    with demo_api("--latency-ms", str(args.latency_ms), "--surveys", "2000") as url:
        overheads, walls, requests_made = [], [], []
        for _ in range(args.repeats):
            env = {**os.environ, "DAGSTER_HOME": str(fresh_home()), "SYNC_ASSETS_DEMO_URL": url,
                   "SYNC_ASSETS_DEMO_TOKEN": TOKEN}
            overheads.append(materialize(env, "--select", "trivial"))
            requests.post(f"{url}/stats/reset", timeout=5)
            walls.append(materialize(env, "--select", "demo/surveys", "--partition-range", f"{first}...{last}"))
            requests_made.append(requests.get(f"{url}/stats", timeout=5).json()["requests"])
    overhead, wall = statistics.median(overheads), statistics.median(walls)
    fetch_ideal = statistics.median(requests_made) * args.latency_ms / 1000 / CONCURRENCY
    ideal = fetch_ideal + overhead
    print(f"| {args.days}-day surveys backfill, {args.latency_ms:.0f} ms latency, one range run "
          f"(median of {args.repeats}) | seconds |")
    print("|---|---|")
    print(f"| requests made | {statistics.median(requests_made):.0f} |")
    print(f"| trivial CLI run (overhead) | {overhead:.2f} |")
    print(f"| ideal = requests x latency / {CONCURRENCY} + overhead | {ideal:.2f} |")
    print(f"| measured wall time | {wall:.2f} |")
    print(f"| ratio measured/ideal | {wall / ideal:.2f} |")


if __name__ == "__main__":
    main()
