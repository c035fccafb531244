"""Windows read to local spool files, for readers that emit records rather than store them.

``sync-assets read`` and the Airbyte ``read`` hand records on as JSON lines. Their windows are read
concurrently, as a Dagster range run reads them, but a window's records must be handed on whole and
after the window has been read to its end (a protocol STATE that covers a window must not precede
any of its records). So each window's pages go to an unlinked temporary file as they arrive, and the
window is handed on, file and all, when it is complete: memory holds a page, not a window.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from sync_assets.concurrency import completed
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.windows import Window

encode_record = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""A record as one compact JSON line (no newline): what ``read`` and the Airbyte read send."""


@dataclass
class SpooledWindow:
    """One window read to its end (``error`` is None), or as far as it got."""

    window: Window | None
    stats: RequestStats = field(default_factory=RequestStats)
    records: int = 0
    pages: int = 0
    dropped: int = 0
    max_cursor: datetime | None = None
    error: Exception | None = None
    _spool: IO[str] | None = None

    def lines(self) -> Iterator[str]:
        """The window's records, one JSON document per line (no newline), in the order they came."""
        if self._spool is None:
            return
        self._spool.seek(0)
        for line in self._spool:
            yield line.rstrip("\n")

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()  # never linked: closing it deletes it


def read_window(reader: StreamReader, window: Window | None) -> SpooledWindow:
    """Every page of ``window`` (``None``: the whole stream) into a spool file."""
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 -- handed on, closed by its reader
    result = SpooledWindow(window, _spool=spool)
    try:
        for page in reader.pages(result.stats, window=window):
            spool.write("".join(encode_record(record) + "\n" for record in page.records))
            result.records += len(page.records)
            result.pages += 1
            result.dropped += page.dropped
            latest = page.max_cursor
            if latest is not None and (result.max_cursor is None or latest > result.max_cursor):
                result.max_cursor = latest
    except Exception as exc:
        result.error = exc
    return result


def read_windows(reader: StreamReader, windows: Sequence[Window | None], concurrency: int) -> Iterator[SpooledWindow]:
    """Every window, at most ``concurrency`` at once; each handed back whole as soon as it is read."""
    return completed(lambda window: read_window(reader, window), windows, concurrency, "window")
