"""Request slices: the ranges a run asks the API for, which need not be its partitions.

A partition is a window because that is what a user re-syncs and looks at; a request is a range
because that is what an API's budget charges. A run that covers a year of daily windows of a sparse
stream would spend 365 request sequences on what one range read fetches in a handful of pages. So
the run's windows are cut into **slices**: adjacent windows read through one request sequence for
their union, and each record goes to the window that holds its cursor value (the records are
filtered on the parsed cursor anyway, see ``windows``). The partition contract does not change:
each partition holds exactly its window's records.

How wide a slice is: the run's windows are shared out so that ``concurrency`` slices are in flight
(a dense range keeps every thread busy, as it did with one window each), never wider than
``max_slice``; a gap between windows (a backfill of what is missing) starts a new slice, so nothing
already synced is read again. A slice whose pagination runs deep while other threads are done is cut
up and read again by them (``read_slice``). An API that stops at a number of records
(``max_records_per_slice``) gets a slice that reaches it split in two and read again: no record past
the cap is lost.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import Any, Generic, Protocol, TypeVar

from sync_assets.concurrency import Units
from sync_assets.errors import SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.reader import Page, StreamReader, latest_instant
from sync_assets.windows import Incremental, Window


@dataclass(frozen=True)
class Slice:
    """Adjacent windows, in order, read through one request sequence for their union."""

    windows: tuple[Window, ...]
    spent: RequestStats = field(default_factory=RequestStats, compare=False, repr=False)
    """What reads of a slice this one was cut from cost before they were thrown away: counted with it, so
    that the windows of a run still add up to the requests it sent."""

    @property
    def window(self) -> Window:
        return Window(self.windows[0].start, self.windows[-1].end)

    def pieces(self, count: int) -> list[Slice]:
        """This slice cut into ``count`` slices of adjacent windows, as even as whole windows allow."""
        count = max(1, min(count, len(self.windows)))
        bounds = [round(i * len(self.windows) / count) for i in range(count + 1)]
        return [Slice(self.windows[low:high]) for low, high in pairwise(bounds)]

    def cut(self, count: int, spent: RequestStats) -> list[Slice]:
        """``pieces(count)``, the first carrying what was ``spent`` on this slice (and on its ancestors)."""
        first, *rest = self.pieces(count)
        carried = RequestStats()
        carried.merge(self.spent)
        carried.merge(spent)
        return [replace(first, spent=carried), *rest]

    def __str__(self) -> str:
        return f"{self.window} ({len(self.windows)} windows)"


def plan_slices(windows: Sequence[Window], incremental: Incremental, concurrency: int) -> list[Slice]:
    """The slices that read ``windows``: about ``concurrency`` of them, each a run of adjacent windows."""
    ordered = sorted(windows)
    if not incremental.spans_windows:
        return [Slice((window,)) for window in ordered]
    runs: list[list[Window]] = []
    for window in ordered:
        if runs and runs[-1][-1].end == window.start:
            runs[-1].append(window)
        else:
            runs.append([window])
    # windows a slice takes, to have `concurrency` slices; an API that cannot filter by range sends every
    # record to every slice, so its run is read once, as one slice
    per_slice = -(-len(ordered) // max(1, concurrency)) if incremental.filters_by_range else len(ordered)
    slices: list[Slice] = []
    for run in runs:
        pieces = -(-len(run) // per_slice)
        bounds = [round(i * len(run) / pieces) for i in range(pieces + 1)]  # even pieces, none empty
        for low, high in pairwise(bounds):
            slices.extend(_capped(run[low:high], incremental))
    return slices


def _capped(windows: list[Window], incremental: Incremental) -> Iterator[Slice]:
    """``windows`` as slices no longer than ``max_slice`` (a slice always takes at least one window)."""
    cap = incremental.max_slice
    taken: list[Window] = []
    for window in windows:
        if taken and cap is not None and window.end - taken[0].start > cap:
            yield Slice(tuple(taken))
            taken = []
        taken.append(window)
    if taken:
        yield Slice(tuple(taken))


@dataclass
class WindowRead:
    """What one window of a slice received."""

    window: Window
    records: int = 0
    max_cursor: datetime | None = None


WindowRecords = tuple[int, list[dict[str, Any]], list[datetime | None] | None]
"""Records of a page that fall in the slice's window ``index``, with their cursor values."""


class SliceSink(Protocol):
    """Where a slice's records go: the one thing the front doors do differently (a store's stages, a spool)."""

    def put(self, parts: list[WindowRecords]) -> None:
        """A page's records, window by window (``split_by_window``), as the page brings them: whole, so that
        a sink can handle a page once however many windows it spans."""

    def commit(self, read: SliceRead[Any]) -> None:
        """The slice was read to its end (in the thread that read it)."""

    def discard(self) -> None:
        """The slice failed, or is read again as two: drop what it holds."""


SinkT = TypeVar("SinkT", bound=SliceSink)


@dataclass
class SliceRead(Generic[SinkT]):
    """One slice read to its end (``error`` and ``split`` empty), or why not; ``sink`` holds its records.

    ``split`` holds the slices to read instead, when the API's cap on records may have cut this one
    short; what was read of it is then thrown away. Requests, pages and what fell outside the slice
    belong to the slice as a whole: a page serves several windows.
    """

    slice: Slice
    sink: SinkT
    windows: list[WindowRead]
    stats: RequestStats = field(default_factory=RequestStats)
    pages: int = 0
    dropped: int = 0
    without_cursor: int = 0
    seconds: float = 0.0
    error: Exception | None = None
    split: list[Slice] = field(default_factory=list)


DEEP_PAGES = 4
"""Pages left to read past which a slice that threads could share is cut up and read again (see ``read_slice``)."""


def read_slice(reader: StreamReader, slice_: Slice, sink: SinkT, idle: Callable[[], int] = lambda: 0,
               ) -> SliceRead[SinkT]:
    """Every page of ``slice_``, each page's records handed to ``sink`` window by window, as they arrive.

    A slice whose pagination runs deep while threads stand idle is cut into slices for them and read
    again, when the API says how many pages a read has and the cut saves more pages in a row than it
    adds requests (``_pieces_worth_it``).
    This is what keeps a range whose records crowd into a few of its windows (a quiet year, then a
    busy week) from being read one page at a time by one thread while the others are done.
    """
    started = time.monotonic()
    result = SliceRead(slice_, sink, [WindowRead(window) for window in slice_.windows])
    incremental = reader.stream.incremental
    assert incremental is not None
    cap = incremental.max_records_per_slice
    answered = 0  # records the API sent for this slice, in its window or not: what its cap counts
    starts = [window.start for window in slice_.windows[1:]]
    total: int | None = None
    try:
        for page in reader.pages(result.stats, window=slice_.window):
            result.pages += 1
            total = page.total_pages or total
            result.dropped += page.dropped
            result.without_cursor += page.without_cursor
            answered += len(page.records) + page.dropped
            if cap is not None and answered >= cap:
                if len(slice_.windows) == 1:
                    raise SyncSystemError(
                        f"window {slice_.window} of {reader.source.name}/{reader.stream.name} holds at least "
                        f"{cap} records, the API's cap (max_records_per_slice): records past it would be lost. "
                        "Use smaller windows (incremental.window), or raise the cap if the API allows more"
                    )
                result.split = slice_.cut(2, result.stats)
                break
            parts = list(split_by_window(page, starts))
            sink.put(parts)
            for index, records, cursors in parts:
                read = result.windows[index]
                read.records += len(records)
                latest = latest_instant(cursors)
                if latest is not None and (read.max_cursor is None or latest > read.max_cursor):
                    read.max_cursor = latest
            cuttable = len(slice_.windows) > 1 and incremental.filters_by_range
            if total and cuttable and (pieces := _pieces_worth_it(total, result.pages, idle)):
                result.split = slice_.cut(pieces, result.stats)
                break
    except Exception as exc:
        result.error = exc
    except BaseException:  # interrupted (Ctrl-C, run terminated): leave every window as it was
        sink.discard()
        raise
    result.seconds = time.monotonic() - started
    result.stats.merge(slice_.spent)
    if result.error is None and not result.split:
        sink.commit(result)
    else:
        sink.discard()
    return result


def _pieces_worth_it(total: int, read: int, idle: Callable[[], int]) -> int:
    """Into how many slices to cut a read of ``total`` pages, ``read`` of them done (0: go on as it is).

    Each piece reads about ``total / pieces`` pages, at least ``DEEP_PAGES``, from its first; the cut
    throws away the pages read and adds a last partial page per piece. It is worth it when the pages it
    saves one thread from reading in a row are more than the requests it adds: under a request budget
    requests are time too, so a cut never buys speed with more requests than it saves.
    """
    left = total - read
    if left < DEEP_PAGES or not (free := idle()):
        return 0
    pieces = min(free + 1, -(-total // DEEP_PAGES))
    saved = left - -(-total // pieces)
    return pieces if pieces > 1 and saved > read + pieces - 1 else 0


def split_by_window(page: Page, starts: list[datetime]) -> Iterator[WindowRecords]:
    """A page's records grouped by the window of the slice that holds each (``starts``: the windows'
    starts after the first); a record kept without a cursor stays in the first."""
    records, cursors = page.records, page.cursors
    if not records:
        return
    if not starts or cursors is None:
        yield 0, records, cursors
        return
    indexes = [0 if instant is None else bisect_right(starts, instant) for instant in cursors]
    first = indexes[0]
    if all(index == first for index in indexes):  # the usual page: one window's records
        yield first, records, cursors
        return
    groups: dict[int, list[int]] = {}
    for row, index in enumerate(indexes):
        groups.setdefault(index, []).append(row)
    for index, rows in sorted(groups.items()):
        yield index, [records[row] for row in rows], [cursors[row] for row in rows]


def read_slices(
    reader: StreamReader, windows: Sequence[Window], concurrency: int, sink: Callable[[Slice], SinkT],
) -> Iterator[SliceRead[SinkT]]:
    """Every slice of ``windows`` into its own ``sink(slice)``, ``concurrency`` at once; each handed back as
    it finishes (a slice split in two is read again as its halves, and handed back as those)."""
    incremental = reader.stream.incremental
    assert incremental is not None
    slices = plan_slices(windows, incremental, concurrency)
    units: Units[Slice, SliceRead[SinkT]] = Units(
        lambda slice_: read_slice(reader, slice_, sink(slice_), units.idle), concurrency, "slice",
        again=lambda result: result.split)
    return units.run(slices)
