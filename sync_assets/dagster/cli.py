"""``sync-assets-dagster start-refresh``: start (or resume) full refreshes from the command line.

A full-refresh asset's partitions are chunks that exist only once registered, and Dagster's
``asset materialize`` refuses an unknown partition. This registers the first chunk of the refresh
to work on (``refresh-00001-chunk-000000`` the first time, then ``refresh-00002-...``) for each
selected asset and runs it through ``dagster asset materialize``, one run per asset, all started at
once. A running refresh is resumed from where it stopped; ``--restart`` abandons it and starts a new
one from the first page:

    sync-assets-dagster start-refresh -m sync_assets.definitions --select demo/customers
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance, Definitions, DynamicPartitionsDefinition

from sync_assets.dagster import STORE_KEY, SyncStoreIOManager
from sync_assets.storage import TableSpec
from sync_assets.storage.layout import chunk_key

_SUPERSEDED = "ignore:Function `asset_materialize_command` is superseded:FutureWarning"


def _definitions(module: str) -> Definitions:
    defs = importlib.import_module(module).defs
    loaded = defs() if callable(defs) and not isinstance(defs, Definitions) else defs
    if not isinstance(loaded, Definitions):
        raise SystemExit(f"{module}.defs is not a Dagster Definitions object")
    return loaded


def start_refresh(
    module: str, keys: list[str], instance: DagsterInstance, restart: bool = False, config_json: str | None = None
) -> int:
    defs = _definitions(module)
    dagster = Path(sys.executable).parent / "dagster"
    commands = []
    for key in keys:
        asset = defs.get_assets_def(AssetKey.from_user_string(key))
        partitions = asset.partitions_def
        if not isinstance(partitions, DynamicPartitionsDefinition) or partitions.name is None:
            print(f"{key} is not a full-refresh asset (its partitions are not chunks)", file=sys.stderr)
            return 2
        metadata = asset.specs_by_key[asset.key].metadata
        table = TableSpec(str(metadata["sync_assets/source"]), str(metadata["sync_assets/stream"]), "snapshot")
        store = ((defs.resources or {}).get(STORE_KEY) or SyncStoreIOManager(base_dir=None)).store
        if restart:
            abandoned = store.refreshes(table).abandon()
            if abandoned is not None:
                print(f"{key}: abandoned refresh {abandoned}; starting again from the first page")
        first = chunk_key(store.refreshes(table).next_number(), 0)
        if not instance.has_dynamic_partition(partitions.name, first):
            instance.add_dynamic_partitions(partitions.name, [first])
        command = [str(dagster), "asset", "materialize", "-m", module, "--select", key, "--partition", first]
        if config_json:
            command += ["--config-json", config_json]
        commands.append(command)
    # One run per stream, all at once: the API's pool and budget keep them within its limits. Dagster's notice
    # that `dagster asset materialize` is superseded is for someone typing it, not for each run we start.
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _SUPERSEDED]))
    runs = [subprocess.Popen(command, env={**os.environ, "PYTHONWARNINGS": warnings}) for command in commands]
    codes = [run.wait() for run in runs]
    return next((code for code in codes if code != 0), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sync-assets-dagster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start-refresh", help="register the next refresh's first chunk and materialize it")
    start.add_argument("-m", "--module", required=True, help="the module holding `defs`")
    start.add_argument("--select", required=True, action="append", help="asset key, e.g. demo/customers")
    start.add_argument("--restart", action="store_true",
                       help="abandon a running refresh (say its cursor expired) and start from the first page")
    start.add_argument("--config-json", help="run config, passed on to `dagster asset materialize`")
    args = parser.parse_args(argv)
    with DagsterInstance.get() as instance:
        return start_refresh(args.module, args.select, instance, args.restart, args.config_json)


if __name__ == "__main__":
    sys.exit(main())
