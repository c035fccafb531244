"""The long fault-injection soak: the chaos suite of ``sync_assets_tests/chaos.py``, many seeds, more kills.

    .venv/bin/python -m benchmarks.chaos_soak [--rounds 8] [--kills 5] [--seed 1] [--postgres URL]

Each round takes a new seed (``--seed`` plus the round number), runs every sync kind through the demo
API's chaos mode with ``--kills`` SIGKILLs per stream, then checks the store against the ground truth;
once on the DuckDB store and once on PostgreSQL (a fresh database per round, when the server is there).
It stops at the first failure, printing the seed that replays it in ``test_chaos.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.storage import fresh_store
from sync_assets_tests.chaos import chaos_api, run_chaos


def _postgres_here(admin_url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(admin_url, connect_timeout=3).close()
    except Exception as exc:  # no server here: the soak runs on DuckDB alone, and says so
        print(f"PostgreSQL skipped: {exc}")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs per stream and round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    started = time.monotonic()
    backends = ["duckdb", "postgres"] if _postgres_here(args.postgres) else ["duckdb"]
    for round_number in range(args.rounds):
        seed = args.seed + round_number
        work = Path(tempfile.mkdtemp(prefix="sync-assets-soak-"))
        for backend in backends:
            api = chaos_api(seed)
            try:
                with fresh_store(backend, args.postgres) as location:
                    report = run_chaos(api, work / backend, location, seed, kills_per_stream=args.kills)
            finally:
                api.stop()
            print(f"round {round_number + 1}, {backend}: {report}", flush=True)
            totals.update({"runs": sum(report.runs.values()), "kills": sum(report.kills.values()),
                           "records compared": report.records_compared, "requests": report.api["requests"],
                           "429s": report.api["responses_429"],
                           "refreshes restarted": sum(report.restarts.values()),
                           "requests in a pause": report.api["requests_in_pause"],
                           f"{backend} rounds": 1})
            faults.update(report.api["faults_injected"])
    print(f"{args.rounds} rounds in {time.monotonic() - started:.0f} s: {dict(totals)}; faults injected "
          f"{dict(faults)} ({sum(faults.values())} in all)")


if __name__ == "__main__":
    main()
