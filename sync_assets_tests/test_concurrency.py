"""The thread pool every range of work runs on."""

from __future__ import annotations

import threading
import time

from sync_assets.concurrency import completed


def test_work_starts_as_results_are_taken_so_a_slow_caller_bounds_what_is_held() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        return item

    taken = []
    for result in completed(work, list(range(40)), 3, "test"):
        time.sleep(0.01)  # the caller is slower than the work: a publish, a protocol writer
        with lock:
            ahead = len(started) - len(taken)
        assert ahead <= 2 * 3 + 1, f"{ahead} results held for a caller that took {len(taken)}"
        taken.append(result)
    assert sorted(taken) == list(range(40))
