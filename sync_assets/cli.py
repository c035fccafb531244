"""``sync-assets``: the engine's front door, with no Dagster involved.

- ``sync-assets read SOURCE STREAM [--start --end] [-o FILE]``: JSON lines of a stream's records, its
  windows read concurrently (each written whole, in the order they finish); a summary (records,
  pages, requests, retries, 429s) goes to stderr.
- ``sync-assets check SOURCE``: validate a source's config and list its streams.
- ``sync-assets state SOURCE [--store DIR]``: each stream's state, as Airbyte STATE messages.
- ``sync-assets sql QUERY [--store DIR]``: query the synced tables (the store's DuckDB database), read-only.
- ``sync-assets airbyte SOURCE spec|check|discover|read [--config C --catalog CAT --state S]``: the
  source under Airbyte's protocol (``airbyte.py``).
- ``sync-assets manifest check PATH...``: whether each Airbyte low-code manifest translates onto the engine,
  and what blocks it if not (docs/airbyte-manifests.md).
- ``sync-assets demo-api``: the bundled local API that the quickstart, tests and benchmarks use.

Exit codes: 0 ok, 2 configuration error (fix the config or credentials), 1 any other failure.

Storage (DuckDB, Arrow) is imported by the commands that use it, not by ``read``: a read that only hands
records on starts in about half the time and memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sync_assets.errors import ConfigurationError, SyncError
from sync_assets.redaction import mask

if TYPE_CHECKING:
    from sync_assets.http import RequestStats
    from sync_assets.reader import StreamReader
    from sync_assets.storage import Store
    from sync_assets.windows import Window


def _instant(text: str) -> datetime:
    from sync_assets.windows import as_utc

    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or datetime") from None


def _read(args: argparse.Namespace) -> int:
    from sync_assets.http import RequestStats, open_client
    from sync_assets.reader import StreamReader
    from sync_assets.spec import StreamKind, load_source
    from sync_assets.windows import windows_between

    source = load_source(args.source)
    stream = source.stream(args.stream)
    if stream.reads_from:
        raise ConfigurationError(
            f"stream {stream.name!r} is a substream of {' and '.join(map(repr, stream.reads_from))}: it is read "
            "once per parent record, so it cannot be read alone. Materialize it in Dagster (it reads its parents "
            f"from the store), or read it with its parents from the API: sync-assets airbyte {args.source} read, "
            f"with a catalog naming {stream.name} (docs/airbyte.md)"
        )
    windows: list[Window] = []
    if source.kind(stream) is StreamKind.WINDOWS:
        assert stream.incremental is not None
        start = args.start or stream.incremental.start
        end = stream.incremental.until(args.end or datetime.now(UTC))
        windows = list(windows_between(start, end, stream.incremental.window))
    elif args.start or args.end:
        raise ConfigurationError(f"stream {stream.name!r} is not incremental; --start/--end do not apply")
    stats = RequestStats()
    client = open_client(source, args.state_dir)
    reader = StreamReader(source, stream, client)
    totals = {"records": 0, "pages": 0, "dropped_out_of_window": 0, "slices": 0}
    try:
        if args.output:
            target = Path(args.output)
            partial = target.with_name(target.name + ".partial")
            with partial.open("w") as out:
                _write(reader, windows, out, totals, stats)
            partial.replace(target)  # readers never see a half-written file
        else:
            _write(reader, windows, sys.stdout, totals, stats)
    finally:
        client.close()
    summary = {"source": source.name, "stream": stream.name, "windows": len(windows), **totals, **stats.as_dict()}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _write(reader: StreamReader, windows: list[Window], out: IO[str], totals: dict[str, int],
           stats: RequestStats) -> None:
    """An incremental stream's windows read through request slices (as a Dagster range run reads them),
    each slice written whole as it ends; any other stream page by page."""
    from sync_assets.spec import StreamKind
    from sync_assets.spooled import encode_record, spool_windows

    if reader.source.kind(reader.stream) is StreamKind.FULL_REFRESH:
        for page in reader.pages(stats):
            out.writelines(encode_record(record) + "\n" for record in page.records)
            totals["records"] += len(page.records)
            totals["pages"] += 1
        return
    for result in spool_windows(reader, windows, reader.source.concurrency):
        try:
            stats.merge(result.stats)
            if result.error is not None:
                raise result.error
            out.writelines(line + "\n" for line in result.sink.lines())  # line by line: never held whole
            totals["records"] += sum(window.records for window in result.windows)
            totals["pages"] += result.pages
            totals["slices"] += 1
            totals["dropped_out_of_window"] += result.dropped
        finally:
            result.sink.close()


def _check(args: argparse.Namespace) -> int:
    from sync_assets.spec import load_source

    source = load_source(args.source)
    for stream in source.streams:
        print(f"{source.name}/{stream.name}: {stream.path} ({source.describe(stream)}; "
              f"{stream.paginator.type} pagination)")
    return 0


def _store_location(args: argparse.Namespace) -> str:
    """What ``--store`` names (a folder or a postgresql:// URL), else the instance's; checked to hold a store."""
    from sync_assets.storage.layout import store_dir

    location = args.store or os.environ.get("SYNC_ASSETS_STORE_URL")
    if location is None and not (os.environ.get("DAGSTER_HOME") or os.environ.get("SYNC_ASSETS_HOME")):
        raise ConfigurationError("pass --store, or set DAGSTER_HOME to the instance whose store to read")
    if str(location or "").startswith(("postgresql://", "postgres://")):
        return str(location)
    folder = Path(location) if location else store_dir()
    if not (folder / "state.sqlite").exists():
        raise ConfigurationError(f"{folder} holds no sync-assets store; sync something first, or pass --store")
    return str(folder)


def _open_store(args: argparse.Namespace) -> Store:
    from sync_assets.storage import open_store

    return open_store(_store_location(args))


def _state(args: argparse.Namespace) -> int:
    from sync_assets.airbyte_state import airbyte_state_messages
    from sync_assets.spec import load_source

    source = load_source(args.source)
    for message in airbyte_state_messages(_open_store(args), source):
        print(json.dumps(message))
    return 0


def _sql(args: argparse.Namespace) -> int:
    """Only DuckDB and the store's bookkeeping are loaded: a query answers in about the time DuckDB takes to
    load, not the engine's (benchmarks/RESULTS.md)."""
    location = _store_location(args)
    if location.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError("this store is in PostgreSQL: query its tables with psql or any PostgreSQL client")
    import duckdb

    from sync_assets.storage.catalog import Catalog

    catalog = Catalog(Path(location))
    catalog.apply_views()  # views that a publish could not create while the database was held open
    try:
        with duckdb.connect(str(catalog.path), read_only=True) as db:
            relation = db.sql(args.query)
            if relation is not None:
                relation.show(max_width=200)
    except duckdb.Error as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _airbyte(args: argparse.Namespace) -> int:
    from sync_assets import airbyte

    return airbyte.run(args.source, args.protocol_command, args.config, args.catalog, args.state)


def _manifest_check(args: argparse.Namespace) -> int:
    from sync_assets.airbyte_manifest import check

    return check.run(args.paths)


def _demo_api(args: argparse.Namespace) -> int:
    from sync_assets.demo_api import command

    return command.main(args.server_arguments, prog="sync-assets demo-api")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sync-assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries, pauses and requests")
    commands = parser.add_subparsers(dest="command", required=True)

    read = commands.add_parser("read", help="read a stream to JSON lines")
    read.add_argument("source", help="a source YAML file, or module:attribute of an ApiSource")
    read.add_argument("stream", help="the stream's name")
    read.add_argument("--start", type=_instant, help="incremental streams: first instant (default: the stream's start)")
    read.add_argument("--end", type=_instant, help="incremental streams: end, exclusive (default: now)")
    read.add_argument("-o", "--output", help="write here instead of stdout (written whole, then renamed)")
    read.add_argument("--state-dir", type=Path, help="shared rate-limit state (default: $SYNC_ASSETS_HOME)")
    read.set_defaults(handler=_read)

    check = commands.add_parser("check", help="validate a source's config and list its streams")
    check.add_argument("source")
    check.set_defaults(handler=_check)

    state = commands.add_parser("state", help="print each stream's state as Airbyte STATE messages")
    state.add_argument("source")
    state.add_argument("--store", help="the store's folder or postgresql:// URL (default: the instance's)")
    state.set_defaults(handler=_state)

    sql = commands.add_parser("sql", help="query the synced tables with DuckDB (read-only)")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM demo.surveys"')
    sql.add_argument("--store", help="the store's folder (default: $DAGSTER_HOME/sync_assets/store)")
    sql.set_defaults(handler=_sql)

    airbyte = commands.add_parser("airbyte", help="run a source under Airbyte's protocol (docs/airbyte.md)")
    airbyte.add_argument("source", help="a source YAML file, or module:attribute of an ApiSource")
    airbyte.add_argument("protocol_command", choices=["spec", "check", "discover", "read"], metavar="COMMAND",
                         help="spec, check, discover or read")
    airbyte.add_argument("--config", help="the connection config (JSON): values for the source's env variables")
    airbyte.add_argument("--catalog", help="read: the configured catalog (JSON)")
    airbyte.add_argument("--state", help="read: the STATE messages of the last read (a JSON list)")
    airbyte.set_defaults(handler=_airbyte)

    manifest = commands.add_parser("manifest", help="Airbyte low-code manifests (docs/airbyte-manifests.md)")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True)
    manifest_check = manifest_commands.add_parser(
        "check", help="tell for each manifest whether it translates onto the engine, and what blocks it")
    manifest_check.add_argument("paths", nargs="+", metavar="PATH", help="manifest.yaml files or connector folders")
    manifest_check.set_defaults(handler=_manifest_check)

    # its options are the demo API's own, parsed by its command module, which loads only when it is asked for
    demo = commands.add_parser("demo-api", help="serve the bundled demo API (see demo-api --help)", add_help=False)
    demo.set_defaults(handler=_demo_api)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo-api":
        args.server_arguments = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: Any = args.handler(args)
        return int(result or 0)
    except ConfigurationError as exc:
        print(f"configuration error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except SyncError as exc:
        print(f"{exc.kind}: {mask(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `sync-assets read ... | head` is a normal thing to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
