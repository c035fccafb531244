"""Resumable full refresh of 100,000 customers: throughput, the cost of a checkpoint per page, resume time.

    .venv/bin/python -m benchmarks.rfr [--records 100000] [--page-size 1000] [--repeats 5]

- records/s of a full refresh (the engine's FullRefresh into the local store, a checkpoint after
  every page), against the same pages written as JSON lines to one file with no types and no checkpoints;
- a refresh killed (SIGKILL) at its half-way checkpoint, then resumed in a new process, against a
  refresh from scratch in a new process (both wall times include interpreter start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.http import RequestStats, open_client
from sync_assets.reader import StreamReader
from sync_assets.refresh import FullRefresh
from sync_assets.spec import ApiSource, source_from_dict
from sync_assets.storage import open_store
from sync_assets.storage.bookkeeping import Bookkeeping


def source(url: str, page_size: int) -> ApiSource:
    return source_from_dict({
        "name": "bench", "base_url": url, "auth": {"type": "bearer", "token": TOKEN},
        "streams": [{"name": "customers", "path": "/v1/customers", "records_path": "data", "chunk_pages": 10,
                     "paginator": {"type": "cursor", "size_param": "limit", "size": page_size}}],
    })


def refresh(src: ApiSource, state_dir: Path) -> int:
    client = open_client(src, state_dir)
    runner = FullRefresh(StreamReader(src, src.stream("customers"), client), open_store(state_dir / "store"), 4)
    records = sum(r.checkpoint.records for r in runner.run() if r.checkpoint)
    client.close()
    assert runner.published
    return records


def no_checkpoints(src: ApiSource, state_dir: Path) -> int:
    """The same pages, encoded the same way, into one file: what a refresh costs without checkpoints."""
    client = open_client(src, state_dir)
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    records = 0
    with (state_dir / "plain.jsonl").open("wb") as out:
        for page in StreamReader(src, src.stream("customers"), client).pages(RequestStats()):
            out.write("".join(encode(r) + "\n" for r in page.records).encode())
            records += len(page.records)
    client.close()
    return records


def child(url: str, page_size: int, state_dir: Path, die_at: int) -> None:
    """Run in a subprocess: a refresh that SIGKILLs itself at checkpoint ``die_at`` (0 = never)."""
    if die_at:
        original, commits = Bookkeeping.append_page, [0]

        def append_page(self: Bookkeeping, *args: object) -> None:
            commits[0] += 1
            original(self, *args)  # type: ignore[arg-type]
            if commits[0] == die_at:
                os.kill(os.getpid(), signal.SIGKILL)

        Bookkeeping.append_page = append_page  # type: ignore[method-assign]
    refresh(source(url, page_size), state_dir)


def timed_child(url: str, page_size: int, state_dir: Path, die_at: int = 0) -> float:
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "benchmarks.rfr", "--child", url, str(page_size), str(state_dir),
                              str(die_at)], cwd=Path(__file__).resolve().parent.parent)
    assert process.returncode == (-signal.SIGKILL if die_at else 0)
    return time.perf_counter() - started


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with demo_api("--customers", str(args.records)) as url:
        src = source(url, args.page_size)
        rfr, plain, scratch, resumed = [], [], [], []
        for repeat in range(args.repeats):
            pair = [(plain, no_checkpoints), (rfr, refresh)]
            for runs, sync in pair if repeat % 2 else reversed(pair):  # alternate which goes first
                work = Path(tempfile.mkdtemp(prefix="sync-assets-rfr-"))
                started = time.perf_counter()
                assert sync(src, work) == args.records
                runs.append(args.records / (time.perf_counter() - started))
            scratch.append(timed_child(url, args.page_size, Path(tempfile.mkdtemp(prefix="sync-assets-rfr-"))))
            killed = Path(tempfile.mkdtemp(prefix="sync-assets-rfr-"))
            pages = -(-args.records // args.page_size)
            timed_child(url, args.page_size, killed, die_at=pages // 2)
            resumed.append(timed_child(url, args.page_size, killed))
    rfr_rate, plain_rate = statistics.median(rfr), statistics.median(plain)
    print(f"| {args.records:,} customers, {args.page_size} per page (median of {args.repeats}) | value |")
    print("|---|---|")
    print(f"| full refresh into typed tables, page and checkpoint staged per page (records/s) | {rfr_rate:,.0f} |")
    print(f"| same pages as JSON lines into one file, no types, no checkpoints (records/s) | {plain_rate:,.0f} |")
    print(f"| cost of typed, checkpointed storage | {(1 - rfr_rate / plain_rate) * 100:.1f}% |")
    print(f"| refresh from scratch in a new process (s) | {statistics.median(scratch):.2f} |")
    print(f"| resume after a SIGKILL at half way, new process (s) | {statistics.median(resumed):.2f} |")
    print(f"| ratio resume/scratch | {statistics.median(resumed) / statistics.median(scratch):.2f} |")


if __name__ == "__main__":
    main()
