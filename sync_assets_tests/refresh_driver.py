"""Runs one full refresh in its own process, for tests that kill it: `python -m sync_assets_tests.refresh_driver`.

    refresh_driver STATE_DIR URL STREAM [--die-at-checkpoint N]

``--die-at-checkpoint N`` SIGKILLs the process at its Nth checkpoint commit, after that page's records
are written to the chunk file and before the checkpoint saying so is committed: the worst moment.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from sync_assets.reader import StreamReader, open_client
from sync_assets.refresh import FullRefresh
from sync_assets.spec import source_from_dict
from sync_assets.store import LocalStore
from sync_assets_tests.helpers import make_source_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("--die-at-checkpoint", type=int)
    args = parser.parse_args()
    print("started", flush=True)
    if args.die_at_checkpoint:
        commits = {"n": 0}
        original = LocalStore.save_checkpoint

        def save_checkpoint(self: LocalStore, *a: object, **k: object) -> None:
            commits["n"] += 1
            if commits["n"] == args.die_at_checkpoint:
                os.kill(os.getpid(), signal.SIGKILL)
            original(self, *a, **k)  # type: ignore[arg-type]

        LocalStore.save_checkpoint = save_checkpoint  # type: ignore[method-assign]
    source = source_from_dict(make_source_data(args.url))
    client = open_client(source, args.state_dir)
    refresh = FullRefresh(StreamReader(source, source.stream(args.stream), client),
                          LocalStore(args.state_dir / "data"), concurrency=4)
    errors = [r.error for r in refresh.run() if r.error is not None]
    print("published" if refresh.published else f"not published: {errors}", flush=True)


if __name__ == "__main__":
    main()
