"""The rate limit, counted the way providers count it (a moving window over accepted requests), and
announced in each of the styles APIs announce budgets in, so that a client's throttling is tested against
what it will meet. The pauses it announces are remembered, so that benchmarks can tell whether a client
honoured the wait it was told.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque

PAUSE_GRACE_SECONDS = 0.25  # requests already on their way when a pause was announced are not counted in it


class RateLimiter:
    """Moving window over *accepted* requests per identity, so rejected retries never extend the wait."""

    def __init__(self, limit: tuple[int, float] | None) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._accepted: defaultdict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, identity: str, now: float) -> float | None:
        """Admit the request (None) or tell how many seconds until the oldest accepted one leaves."""
        if self._limit is None:
            return None
        requests, seconds = self._limit
        with self._lock:
            accepted = self._accepted[identity]
            while accepted and accepted[0] <= now - seconds:
                accepted.popleft()
            if len(accepted) >= requests:
                return accepted[0] + seconds - now
            accepted.append(now)
            return None

    def budget(self, identity: str, now: float) -> tuple[int, float] | None:
        """(requests left, seconds until the oldest accepted one leaves the window), for budget headers."""
        if self._limit is None:
            return None
        requests, seconds = self._limit
        with self._lock:
            accepted = self._accepted[identity]
            reset = accepted[0] + seconds - now if accepted else 0.0
            return max(0, requests - len(accepted)), max(0.0, reset)

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()


def announced_wait(style: str, wait: float) -> float:
    """The seconds a refused client is told to wait, as its headers put it (rounded up, as sent)."""
    if style == "retry-after":
        return max(1, math.ceil(wait))
    if style == "ietf":
        return math.ceil(wait)
    now = time.time()
    return math.ceil(now + wait) - now  # an epoch reset, in whole seconds


def budget_headers(style: str, remaining: int, reset: float) -> dict[str, str]:
    if style == "ietf":
        return {"RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(math.ceil(reset))}
    if style in ("x-epoch", "github"):
        return {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(math.ceil(time.time() + reset))}
    return {}


class Pauses:
    """Pauses announced to each client (429s with Retry-After), and the requests that came during one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, tuple[float, float, float]] = {}  # identity -> (announced at, until, epoch)
        self.burst_until: dict[str, float] = {}

    def announce(self, identity: str, now: float, seconds: float) -> None:
        """A 429 told ``identity`` to wait ``seconds``. The grace runs from the first announcement of a pause:
        a 429 answered during it (to a request on its way) may extend it, but a client that shares what it
        was told among its workers knows of the extension long before the first end."""
        with self._lock:
            announced, until, epoch = self._until.get(identity, (now, 0.0, 0.0))
            self._until[identity] = ((now, now + seconds, time.time()) if until <= now
                                     else (announced, max(until, now + seconds), epoch))

    def in_pause(self, identity: str, now: float) -> tuple[float, float, float] | None:
        """If a request arriving now came during an announced pause (and not just before it was told): how long
        after the announcement, how long before the end, and when (epoch seconds) it was announced."""
        with self._lock:
            announced, until, epoch = self._until.get(identity, (0.0, 0.0, 0.0))
            if announced + PAUSE_GRACE_SECONDS <= now < until:
                return now - announced, until - now, epoch
            return None

    def burst(self, identity: str, now: float, start: float) -> float:
        """Seconds left of this client's burst of 429s (starting one of ``start`` seconds if > 0)."""
        with self._lock:
            if start and self.burst_until.get(identity, 0.0) <= now:
                self.burst_until[identity] = now + start
            return max(0.0, self.burst_until.get(identity, 0.0) - now)

    def reset(self) -> None:
        with self._lock:
            self._until.clear()
            self.burst_until.clear()
