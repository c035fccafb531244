"""Is a request budget used to the full? 60 requests under 20 per 2 s, against the ideal.

    .venv/bin/python -m benchmarks.budget [--requests 60] [--budget 20/2] [--threads 10] [--repeats 5]

The demo API enforces the same budget (it answers 429 past it) and records when the first and the
last request reached it. A client that sends each batch the moment the window allows sends request
``k * budget + 1`` exactly ``k`` windows after the first, so the ideal span from first to last is
``(requests - 1) // budget`` windows: 4.0 s for 60 under 20/2 s. Each repeat uses a fresh budget.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import RequestStats, open_client
from sync_assets.spec import source_from_dict


def one_run(url: str, count: int, budget: int, window: float, threads: int, store: dict[str, str]) -> float:
    """Seconds from the first to the last request the API received."""
    requests.post(f"{url}/stats/reset", timeout=5)
    source = source_from_dict({
        "name": "budget", "base_url": url, "auth": {"type": "bearer", "token": TOKEN},
        "rate_limits": [{"requests": budget, "per": window}], "rate_limit_store": store,
        "streams": [{"name": "customers", "path": "/v1/customers", "records_path": "data"}],
    })
    client = open_client(source, Path(tempfile.mkdtemp(prefix="sync-assets-budget-")))
    try:
        stats = RequestStats()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: client.request(client.url_for("/v1/customers"), {"limit": 1}, stats), range(count)))
    finally:
        client.close()
    seen = requests.get(f"{url}/stats", timeout=5).json()
    assert seen["requests"] == count and seen["responses_429"] == 0, seen
    return float(seen["last_arrival_at"] - seen["first_arrival_at"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--budget", default="20/2", help="REQUESTS/SECONDS, enforced by the API too")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// or redis:// URL")
    args = parser.parse_args()
    budget, window = int(args.budget.split("/")[0]), float(args.budget.split("/")[1])
    store = {"kind": "sqlite"} if args.store == "sqlite" else {
        "kind": "redis" if args.store.startswith("redis") else "postgres", "url": args.store}
    ideal = (args.requests - 1) // budget * window
    with demo_api("--rate-limit", args.budget) as url:
        spans = [one_run(url, args.requests, budget, window, args.threads, store) for _ in range(args.repeats)]
    span = statistics.median(spans)
    print(f"{args.requests} requests under {args.budget} s, {args.threads} threads, {store['kind']} budget: "
          f"first to last {span:.2f} s (median of {args.repeats}: {', '.join(f'{s:.2f}' for s in spans)}); "
          f"ideal {ideal:.2f} s; ratio {span / ideal:.2f}")


if __name__ == "__main__":
    main()
