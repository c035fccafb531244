"""The server's own account of what it was asked and how it answered, behind ``/stats``: tests and
benchmarks assert on it (that a client honoured the limit, how many tokens it asked for) rather than on the
client's account of itself.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from typing import Any


class Stats:
    """Counters behind ``/stats``, what benchmarks assert on (e.g. that a client honoured the limit)."""

    def __init__(self, rate_limit: tuple[int, float] | None) -> None:
        self._rate_limit = rate_limit
        self._window = rate_limit[1] if rate_limit else 1.0
        self._lock = threading.Lock()
        self._requests = 0
        self._statuses: Counter[int] = Counter()
        self._paths: Counter[str] = Counter()
        self._search_parameters: Counter[str] = Counter()  # "<parameter> in <query|body|header>", on /v3/surveys/search
        self._arrivals: defaultdict[str, deque[float]] = defaultdict(deque)
        self._max_in_window = 0
        self._first_arrival: float | None = None
        self._last_arrival: float | None = None
        self._in_pause = 0
        self._pause_examples: list[dict[str, Any]] = []
        self._faults: Counter[str] = Counter()
        self._tokens = 0
        self._token_requests = 0

    def count_request(self, path_key: str) -> None:
        with self._lock:
            self._requests += 1
            self._paths[path_key] += 1

    def count_arrival(self, identity: str, now: float) -> None:
        """Track the densest window of received requests per identity, whether accepted or not."""
        with self._lock:
            arrivals = self._arrivals[identity]
            arrivals.append(now)
            self._last_arrival = time.time()
            self._first_arrival = self._first_arrival or self._last_arrival
            while arrivals[0] <= now - self._window:
                arrivals.popleft()
            self._max_in_window = max(self._max_in_window, len(arrivals))

    def count_in_pause(self, path_key: str, after_announcement: float, before_end: float, announced: float) -> None:
        with self._lock:
            self._in_pause += 1
            if len(self._pause_examples) < 1000:
                self._pause_examples.append({"path": path_key, "after_announcement": round(after_announcement, 3),
                                             "before_end": round(before_end, 3), "announced_at": announced})

    def count_search_parameters(self, place: str, names: Iterable[str]) -> None:
        with self._lock:
            self._search_parameters.update(f"{name} in {place}" for name in names)

    def count_token(self) -> None:
        with self._lock:
            self._tokens += 1

    def count_token_request(self) -> None:
        with self._lock:
            self._token_requests += 1

    def count_fault(self, fault: str) -> None:
        with self._lock:
            self._faults[fault] += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._statuses.clear()
            self._paths.clear()
            self._search_parameters.clear()
            self._arrivals.clear()
            self._max_in_window = 0
            self._first_arrival = self._last_arrival = None
            self._in_pause = 0
            self._pause_examples.clear()
            self._faults.clear()
            self._tokens = 0
            self._token_requests = 0

    def snapshot(self) -> dict[str, Any]:
        limit = self._rate_limit
        with self._lock:
            return {
                "requests": self._requests,
                "responses_429": self._statuses[429],
                "responses_500": self._statuses[500],
                "responses_401": self._statuses[401],
                "responses_403": self._statuses[403],
                "max_requests_in_window": self._max_in_window,
                # epoch seconds of the first and last request counted against the budget (after the latency)
                "first_arrival_at": self._first_arrival,
                "last_arrival_at": self._last_arrival,
                # requests that arrived while a pause announced to their client (Retry-After) was in force,
                # more than limits.PAUSE_GRACE_SECONDS after it was announced: a well-behaved client sends none
                "requests_in_pause": self._in_pause,
                "requests_in_pause_examples": list(self._pause_examples),
                "faults_injected": dict(self._faults),
                "tokens_issued": self._tokens,
                "token_requests": self._token_requests,  # to the token endpoints, granted or refused
                "rate_limit": None if limit is None else {"requests": limit[0], "seconds": limit[1]},
                "by_path": dict(self._paths),
                "search_parameters": dict(self._search_parameters),
            }
