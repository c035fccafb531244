"""Runs one full refresh in its own process, for tests that kill it: `python -m sync_assets_tests.refresh_driver`.

    refresh_driver STATE_DIR STORE URL STREAM [--die-at-checkpoint N]

``--die-at-checkpoint N`` SIGKILLs the process at its Nth page commit, after the page is read and
before the transaction that stages it with its checkpoint is committed: the worst moment.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from sync_assets.reader import StreamReader, open_client
from sync_assets.refresh import FullRefresh
from sync_assets.spec import source_from_dict
from sync_assets.storage import open_store
from sync_assets.storage.statedb import StateDB
from sync_assets_tests.helpers import make_source_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("store", help="the store's folder or postgresql:// URL")
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("--die-at-checkpoint", type=int)
    args = parser.parse_args()
    print("started", flush=True)
    if args.die_at_checkpoint:
        commits = {"n": 0}
        original = StateDB.append_page

        def append_page(self: StateDB, *a: object, **k: object) -> None:
            commits["n"] += 1
            if commits["n"] == args.die_at_checkpoint:
                os.kill(os.getpid(), signal.SIGKILL)
            original(self, *a, **k)  # type: ignore[arg-type]

        StateDB.append_page = append_page  # type: ignore[method-assign]
    source = source_from_dict(make_source_data(args.url))
    client = open_client(source, args.state_dir)
    refresh = FullRefresh(StreamReader(source, source.stream(args.stream), client),
                          open_store(args.store), concurrency=4)
    errors = [r.error for r in refresh.run() if r.error is not None]
    print("published" if refresh.published else f"not published: {errors}", flush=True)


if __name__ == "__main__":
    main()
