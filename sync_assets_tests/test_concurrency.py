"""The one scheduler every kind of work runs on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from sync_assets.concurrency import Units, completed


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


def test_a_lazy_source_is_pulled_only_as_threads_free_up() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for item in range(100):
            pulled.append(item)
            yield item

    results = completed(lambda item: item, source(), 4, "test")
    first = next(results)
    assert first in range(8) and len(pulled) <= 2 * 4 + 1  # not the whole listing at once
    assert sorted([first, *results]) == list(range(100))


def test_a_running_unit_adds_units_and_a_result_can_be_replaced_by_others() -> None:
    """A refresh's first chunk hands in the others while it runs; a slice that hits a cap comes back as two."""
    started_second = threading.Event()

    def work(item: str) -> str:
        if item == "first":
            units.add(["second", "third"])
            assert started_second.wait(5), "an added unit did not start while the one adding it ran"
        if item == "second":
            started_second.set()
        return item

    units: Units[str, str] = Units(work, 3, "test", again=lambda result: ["split-a", "split-b"]
                                   if result == "third" else [])
    assert sorted(units.run(["first"])) == ["first", "second", "split-a", "split-b"]
    single: Units[str, str] = Units(lambda item: item, 1, "test", again=lambda r: ["x", "y"] if r == "xy" else [])
    assert list(single.run(["a", "xy", "b"])) == ["a", "x", "y", "b"]  # handed back units go first
