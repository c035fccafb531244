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

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from threading import Lock
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

page_work = Lock()
"""Held by the computation on a page, or on a publish's rows (filtering, typing, encoding, writing a
local Parquet file from pages staged on local disk): never around a request, a wait for another thread
or process (a storage lock, a rate limit, a PostgreSQL COPY) or a user's code, so that holding it
blocks nothing but other such computation, which the GIL would have run one at a time anyway."""


def completed(fn: Callable[[Item], Result], items: Sequence[Item], concurrency: int, name: str) -> Iterator[Result]:
    """``fn(item)`` for every item, at most ``concurrency`` at once; yields the results as they finish.

    Work starts as the caller takes results, at most twice ``concurrency`` items ahead of it: a caller
    slower than the work (a protocol writer) bounds what is held, not the number of items.
    One item, or a concurrency of 1, runs in the calling thread (no pool, nothing to wait on).
    """
    if len(items) <= 1 or concurrency <= 1:
        for item in items:
            yield fn(item)
        return
    waiting = iter(items)
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix=name) as pool:
        pending: set[Future[Result]] = {pool.submit(fn, item) for item in islice(waiting, 2 * concurrency)}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    pending.update(pool.submit(fn, item) for item in islice(waiting, 1))
        finally:
            for future in pending:  # the caller stopped early: do not start what has not started
                future.cancel()
