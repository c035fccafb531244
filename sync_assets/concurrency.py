"""Independent pieces of work on a bounded thread pool, handed back in the order they finish.

The API is latency-bound, so threads overlap waiting (the shared rate limiter keeps them inside the
budget). A caller reports each result as soon as it is durable, whatever the order; work that fails
returns its error as a result (see the ``fn`` given), so the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def completed(fn: Callable[[Item], Result], items: Sequence[Item], concurrency: int, name: str) -> Iterator[Result]:
    """``fn(item)`` for every item, at most ``concurrency`` at once; yields the results as they finish.

    One item, or a concurrency of 1, runs in the calling thread (no pool, nothing to wait on).
    """
    if len(items) <= 1 or concurrency <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix=name) as pool:
        pending: set[Future[Result]] = {pool.submit(fn, item) for item in items}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:  # the caller stopped early: do not start what has not started
                future.cancel()
