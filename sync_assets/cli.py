"""``sync-assets``: the engine's front door, with no Dagster involved.

- ``sync-assets read SOURCE STREAM [--start --end] [-o FILE]``: JSON lines of a stream's records;
  a summary (records, pages, requests, retries, 429s) goes to stderr.
- ``sync-assets check SOURCE``: validate a source's config and list its streams.
- ``sync-assets state SOURCE [--store DIR]``: each stream's state, as Airbyte STATE messages.
- ``sync-assets demo-api``: the bundled local API that the quickstart, tests and benchmarks use.

Exit codes: 0 ok, 2 configuration error (fix the config or credentials), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sync_assets.demo_api import server as demo_server
from sync_assets.errors import ConfigurationError, SyncError
from sync_assets.http import RequestStats
from sync_assets.reader import Page, StreamReader, open_client
from sync_assets.redaction import mask
from sync_assets.spec import load_source
from sync_assets.state import airbyte_state_messages
from sync_assets.store import LocalStore
from sync_assets.windows import Window, as_utc, windows_between


def _instant(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or datetime") from None


def _read(args: argparse.Namespace) -> int:
    source = load_source(args.source)
    stream = source.stream(args.stream)
    windows: list[Window | None] = [None]
    if stream.incremental is not None:
        start = args.start or stream.incremental.start
        end = args.end or datetime.now(UTC)
        windows = list(windows_between(start, end, stream.incremental.window))
    elif args.start or args.end:
        raise ConfigurationError(f"stream {stream.name!r} is not incremental; --start/--end do not apply")
    stats = RequestStats()
    client = open_client(source, args.state_dir)
    reader = StreamReader(source, stream, client)
    totals = {"records": 0, "pages": 0, "dropped_out_of_window": 0}

    def pages() -> Iterator[Page]:
        for window in windows:
            yield from reader.pages(stats, window=window)

    try:
        if args.output:
            target = Path(args.output)
            partial = target.with_name(target.name + ".partial")
            with partial.open("w") as out:
                _write_pages(pages(), out, totals)
            partial.replace(target)  # readers never see a half-written file
        else:
            _write_pages(pages(), sys.stdout, totals)
    finally:
        client.close()
    summary = {"source": source.name, "stream": stream.name, "windows": len(windows), **totals, **stats.as_dict()}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _write_pages(pages: Iterator[Page], out: IO[str], totals: dict[str, int]) -> None:
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for page in pages:
        out.write("".join(dumps(record) + "\n" for record in page.records))
        totals["records"] += len(page.records)
        totals["pages"] += 1
        totals["dropped_out_of_window"] += page.dropped


def _check(args: argparse.Namespace) -> int:
    source = load_source(args.source)
    for stream in source.streams:
        kind = f"incremental on {stream.incremental.cursor_field}" if stream.incremental else "full refresh"
        print(f"{source.name}/{stream.name}: {stream.path} ({kind}, {stream.paginator.type} pagination)")
    return 0


def _state(args: argparse.Namespace) -> int:
    source = load_source(args.source)
    if args.store is None and not os.environ.get("DAGSTER_HOME"):
        raise ConfigurationError("pass --store DIR, or set DAGSTER_HOME to the instance whose store to read")
    store = LocalStore(args.store or Path(os.environ["DAGSTER_HOME"]) / "sync_assets" / "data")
    for message in airbyte_state_messages(store, source):
        print(json.dumps(message))
    return 0


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
    state.add_argument("--store", type=Path, help="the store's folder (default: $DAGSTER_HOME/sync_assets/data)")
    state.set_defaults(handler=_state)

    demo = commands.add_parser("demo-api", help="serve the bundled demo API")
    demo_server.add_arguments(demo)
    demo.set_defaults(handler=demo_server.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
