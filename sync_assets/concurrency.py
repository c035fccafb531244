"""Independent pieces of work on a bounded thread pool, handed back in the order they finish.

The API is latency-bound, so threads overlap waiting (the shared rate limiter keeps them inside the
budget). A caller reports each result as soon as it is durable, whatever the order; work that fails
returns its error as a result (see the ``fn`` given), so the others go on.

Threads overlap in waiting, not in Python work: the GIL runs one thread's Python at a time anyway.
What the GIL does not do is keep that work together. Each pyarrow call on a page releases the GIL,
and with ten threads at hand each release hands it to another thread and back, a pair of context
switches per call: a page's typing, tens of calls, cost more in hand-offs than in work (at zero
latency, 41,000 context switches for 300 pages, and 70 % more CPU than one thread). So the CPU-bound
work on a page holds ``page_work`` throughout, and the threads meet once per page, not per call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from threading import Lock
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

page_work = Lock()
"""Held by the computation on a page, or on a publish's rows (filtering, typing, encoding, writing a
local Parquet file from pages staged on local disk): never around a request, a wait for another thread
or process (a storage lock, a rate limit, a PostgreSQL COPY) or a user's code, so that holding it
blocks nothing but other such computation, which the GIL would have run one at a time anyway."""


def completed(
    fn: Callable[[Item], Result], items: Sequence[Item], concurrency: int, name: str,
    again: Callable[[Result], Sequence[Item]] | None = None,
) -> Iterator[Result]:
    """``fn(item)`` for every item, at most ``concurrency`` at once; yields the results as they finish.

    ``again`` turns a result into the items to do instead of it (a slice split in two, say): those are
    done before anything not started yet, and that result is not yielded.
    Work starts as the caller takes results, at most twice ``concurrency`` items ahead of it: a caller
    slower than the work (a protocol writer) bounds what is held, not the number of items.
    A concurrency of 1, or one item that cannot become more, runs in the calling thread (no pool, nothing
    to wait on).
    """
    waiting: deque[Item] = deque(items)

    def redo(result: Result) -> bool:
        instead = again(result) if again is not None else ()
        waiting.extendleft(reversed(instead))
        return bool(instead)

    if concurrency <= 1 or (len(items) <= 1 and again is None):
        while waiting:
            result = fn(waiting.popleft())
            if not redo(result):
                yield result
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name) as pool:
        pending: set[Future[Result]] = set()

        def start(count: int) -> None:
            while waiting and count > 0:
                pending.add(pool.submit(fn, waiting.popleft()))
                count -= 1

        start(2 * concurrency)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if redo(result):
                        start(2 * concurrency - len(pending))
                        continue
                    yield result
                    start(1)
        finally:
            for future in pending:  # the caller stopped early: do not start what has not started
                future.cancel()
