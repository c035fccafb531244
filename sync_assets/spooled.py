"""Slices read to local spool files, for readers that emit records rather than store them.

``sync-assets read`` and the Airbyte ``read`` hand records on as JSON lines. They read a range as a
Dagster range run does (through request slices, ``slices``), but a slice's records must be handed on
whole and after the slice has been read to its end (a protocol STATE that covers its windows must
not precede any of their records). So each slice's pages go to an unlinked temporary file as they
arrive, and the slice is handed on, file and all, when it is complete: memory holds a page, not a slice.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from sync_assets.reader import StreamReader
from sync_assets.slices import Slice, SliceRead, WindowRecords, read_slices
from sync_assets.windows import Window

encode_record = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""A record as one compact JSON line (no newline): what ``read`` and the Airbyte read send."""


class Spool:
    """A slice's sink on local disk: its records as JSON lines, in the order they came, whatever their window."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 -- closed by close()
        self._windows = array("I")  # the window of each line, as the slice reader placed it

    def put(self, parts: list[WindowRecords]) -> None:
        for index, records, _ in parts:
            self._file.write("".join(encode_record(record) + "\n" for record in records))
            self._windows.extend([index] * len(records))

    def commit(self, read: SliceRead[Any]) -> None:
        pass  # handed on whole by the caller

    def discard(self) -> None:
        self.close()

    def lines(self) -> Iterator[str]:
        """The slice's records, one JSON document per line (no newline)."""
        self._file.seek(0)
        for line in self._file:
            yield line.rstrip("\n")

    def by_window(self, count: int) -> list[list[str]]:
        """The slice's lines grouped by window (``count`` windows, in order): for a reader that hands on
        window by window, without placing the records a second time."""
        grouped: list[list[str]] = [[] for _ in range(count)]
        for index, line in zip(self._windows, self.lines(), strict=True):
            grouped[index].append(line)
        return grouped

    def close(self) -> None:
        self._file.close()  # never linked: closing it deletes it


def spool_windows(reader: StreamReader, windows: Sequence[Window], concurrency: int) -> Iterator[SliceRead[Spool]]:
    """Every window, read through request slices ``concurrency`` at once; each slice handed back whole as
    soon as it is read (the caller closes its spool)."""

    def spool(_: Slice) -> Spool:
        return Spool()

    return read_slices(reader, windows, concurrency, spool)
