"""The one scheduler: units of work on a bounded thread pool, handed back in the order they finish.

Every kind of sync cuts its work into units (request slices of windows, chunks of a refresh, parents
of a substream) and runs them here, bounded by the stream's ``concurrency``. The API is latency-bound,
so threads overlap waiting (the shared rate limiter keeps them inside the budget). A caller reports
each result as soon as it is durable, whatever the order; work that fails returns its error as a
result (see the ``fn`` given), so the others go on. Units can come lazily (parents listed from the
store as threads free up), be added by a running unit (a refresh's first page registers its other
chunks), or be replaced by others (a slice split in two).

Threads overlap in waiting, not in Python work: the GIL runs one thread's Python at a time anyway.
What the GIL does not do is keep that work together. Each pyarrow call on a page releases the GIL,
and with ten threads at hand each release hands it to another thread and back, a pair of context
switches per call: a page's typing, tens of calls, cost more in hand-offs than in work (at zero
latency, 41,000 context switches for 300 pages, and 70 % more CPU than one thread). So the CPU-bound
work on a page holds ``page_work`` throughout, and the threads meet once per page, not per call.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from threading import Lock
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

page_work = Lock()
"""Held by the computation on a page, or on a publish's rows (filtering, typing, encoding, writing a
local Parquet file from pages staged on local disk): never around a request, a wait for another thread
or process (a storage lock, a rate limit, a PostgreSQL COPY) or a user's code, so that holding it
blocks nothing but other such computation, which the GIL would have run one at a time anyway."""


class Units(Generic[Item, Result]):
    """``fn(item)`` for every unit, at most ``concurrency`` at once; ``run`` yields results as they finish.

    ``again`` turns a result into the units to do instead of it (a slice split in two, say): those
    go before anything not started yet, and that result is not yielded. ``add`` hands in more units
    while ``run`` goes on, from any thread (a running unit included).
    """

    def __init__(self, fn: Callable[[Item], Result], concurrency: int, name: str,
                 again: Callable[[Result], Sequence[Item]] | None = None) -> None:
        self.fn, self.concurrency, self.name, self.again = fn, max(1, concurrency), name, again
        self._waiting: deque[Item] = deque()
        self._lock = Lock()
        self._events: queue.SimpleQueue[Future[Result] | None] = queue.SimpleQueue()  # None: units were added
        self._started = 0  # units started and not handed back yet
        self._source_done = False

    def idle(self) -> int:
        """Threads with nothing left to start: what a unit running deep could hand work to (0 when any
        unit waits, or the source may have more)."""
        with self._lock:
            if self._waiting or not self._source_done or self.concurrency == 1:
                return 0
        return max(0, self.concurrency - self._started)

    def add(self, items: Iterable[Item]) -> None:
        with self._lock:
            self._waiting.extend(items)
        self._events.put(None)

    def _next(self, source: Iterator[Item]) -> list[Item]:
        """The next unit to start (none: nothing is waiting): one added or handed back first, else the next
        of ``source``, pulled only when a thread is free, so that a lazy source stays lazy."""
        with self._lock:
            if self._waiting:
                return [self._waiting.popleft()]
        unit = list(islice(source, 1))
        self._source_done = not unit
        return unit

    def _instead(self, result: Result) -> bool:
        instead = self.again(result) if self.again is not None else ()
        with self._lock:
            self._waiting.extendleft(reversed(instead))
        return bool(instead)

    def run(self, items: Iterable[Item] = ()) -> Iterator[Result]:
        """Every unit of ``items`` (taken as threads free up) and every unit added, until none is left.

        Work starts as the caller takes results, at most twice ``concurrency`` units ahead of it: a caller
        slower than the work (a protocol writer) bounds what is held, not the number of units. A concurrency
        of 1 runs each unit in the calling thread (no pool, nothing to wait on).
        """
        source = iter(items)
        if self.concurrency == 1:
            while unit := self._next(source):
                result = self.fn(unit[0])
                if not self._instead(result):
                    yield result
            return
        ahead = 2 * self.concurrency
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=self.name) as pool:
            started: set[Future[Result]] = set()
            try:
                while True:
                    while len(started) < ahead and (unit := self._next(source)):
                        future = pool.submit(self.fn, unit[0])
                        started.add(future)
                        self._started = len(started)
                        future.add_done_callback(self._events.put)
                    if not started:
                        with self._lock:
                            if not self._waiting:
                                return
                        continue
                    event = self._events.get()
                    if event is None:  # units were added: start them if there is room
                        continue
                    started.discard(event)
                    self._started = len(started)
                    result = event.result()
                    if not self._instead(result):
                        yield result
            finally:
                for future in started:  # the caller stopped early: do not start what has not started
                    future.cancel()


def completed(
    fn: Callable[[Item], Result], items: Iterable[Item], concurrency: int, name: str,
    again: Callable[[Result], Sequence[Item]] | None = None,
) -> Iterator[Result]:
    """``Units(fn, concurrency, name, again).run(items)``: a fixed (or lazy) set of units, no additions."""
    return Units(fn, concurrency, name, again).run(items)
