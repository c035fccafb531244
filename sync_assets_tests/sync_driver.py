"""Runs one sync in its own process, for tests that kill it: `python -m sync_assets_tests.sync_driver`.

    sync_driver SOURCE_JSON STATE_DIR STORE KIND STREAM [--days FIRST LAST] [--die-at-checkpoint N]

KIND is ``refresh`` (advance the stream's full refresh), ``windows`` (the daily windows FIRST..LAST
that have no committed state yet) or ``substream`` (the same days of a substream). It prints
``started`` once imported, and exits 0 once everything asked for is committed (1 otherwise), as an
orchestrator re-running what failed would see it.

``--die-at-checkpoint N`` SIGKILLs the process at its Nth page commit, after the page is read and
before the transaction that stages it with its checkpoint is committed: the worst moment.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from datetime import date, timedelta
from pathlib import Path

from sync_assets.http import open_client
from sync_assets.reader import StreamReader
from sync_assets.refresh import FullRefresh
from sync_assets.spec import source_from_dict
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.bookkeeping import Bookkeeping
from sync_assets.substream import sync_substream
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Window, as_utc, partition_key, windows_between


def days(first: str, last: str) -> list[tuple[str, Window]]:
    """Daily partitions FIRST..LAST (inclusive), keyed as Dagster keys them."""
    start = as_utc(date.fromisoformat(first))
    end = as_utc(date.fromisoformat(last)) + timedelta(days=1)
    return [(partition_key(w.start, "daily"), w) for w in windows_between(start, end, "daily")]


def _die_at_checkpoint(n: int) -> None:
    commits = {"n": 0}
    original = Bookkeeping.append_page

    def append_page(self: Bookkeeping, *a: object, **k: object) -> None:
        commits["n"] += 1
        if commits["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, *a, **k)  # type: ignore[arg-type]

    Bookkeeping.append_page = append_page  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", type=Path, help="the source, as a JSON file")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("store", help="the store's folder or postgresql:// URL")
    parser.add_argument("kind", choices=["refresh", "windows", "substream"])
    parser.add_argument("stream")
    parser.add_argument("--days", nargs=2, metavar=("FIRST", "LAST"))
    parser.add_argument("--die-at-checkpoint", type=int)
    args = parser.parse_args()
    print("started", flush=True)
    if args.die_at_checkpoint:
        _die_at_checkpoint(args.die_at_checkpoint)
    source = source_from_dict(json.loads(args.source.read_text()))
    stream = source.stream(args.stream)
    client, store = open_client(source, args.state_dir), open_store(args.store)
    reader = StreamReader(source, stream, client)
    try:
        if args.kind == "refresh":
            refresh = FullRefresh(reader, store, concurrency=4)
            errors = [r.error for r in refresh.run() if r.error is not None]
            print("published" if refresh.published else f"not published: {errors}", flush=True)
            return 0 if refresh.published else 1
        committed = store.partition_states(TableSpec.of(source, stream))
        todo = [(key, window) for key, window in days(*args.days) if key not in committed]
        if args.kind == "windows":
            results = list(sync_windows(reader, store, todo, concurrency=4))
        else:
            assert stream.parent is not None
            results = list(sync_substream(reader, store, todo, concurrency=4))
        errors = [r.error for r in results if r.error is not None]
        print(f"{len(results) - len(errors)} of {len(todo)} committed; errors: {errors}", flush=True)
        return 1 if errors else 0
    finally:
        client.close()
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
