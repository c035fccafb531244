"""How a demo API behaves is settled once, up front, and checked there: a nonsense value (a negative
latency, a rate limit of no requests) fails at construction rather than as odd behaviour in the middle of a
benchmark. It stands apart from the HTTP server so that the command line and the tests can build and check
a configuration without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from sync_assets.demo_api import data

RATE_LIMIT_STYLES = ("retry-after", "ietf", "x-epoch", "github")


@dataclass(frozen=True)
class DemoApiConfig:
    """How the demo API behaves; the defaults give an open, fast and fault-free server."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    latency_ms: float = 0.0
    rate_limit: tuple[int, float] | None = None
    fail_rate: float = 0.0
    seed: int = 0
    customers: int = 1000
    orders: int = 2500
    events: int = 1500
    surveys: int = 2000
    survey_year_start: date = data.SURVEY_YEAR_START
    """The first of the 366 days over which surveys are modified (``--survey-year-start recent``: the year up
    to today, as the demo serves it, so that its recent partitions hold data)."""
    rate_limit_style: str = "retry-after"
    """How the budget is announced: ``retry-after`` (429 with Retry-After), ``ietf`` (RateLimit-Remaining and
    RateLimit-Reset seconds on every response, 429 without Retry-After), ``x-epoch`` (X-RateLimit-Remaining
    and an epoch X-RateLimit-Reset), ``github`` (the same headers, and 403 instead of 429)."""
    revoke_after: int = 0
    """After this many accepted requests (0 = never), the token is refused with 401, as when a credential
    is revoked or expires in the middle of a run."""
    cursor_cycle: int = 0
    """From this page on (1-based; 0 = never), the customers' next cursor points one page back, so a
    reader that follows it goes round two pages forever (A, B, A, B, ...), as broken real cursors do."""
    token_lifetime: float = 0.0
    """Seconds an issued token lives (0 = no token endpoints): ``POST /oauth/token`` (client credentials with
    client_id ``demo-client`` and the token as its secret, or the refresh token grant with the token as the
    refresh token) and ``POST /login`` (JSON ``{"username": "demo", "password": <token>}``) hand out
    short-lived tokens that every endpoint accepts until they expire, as SaaS APIs do."""
    search_max_results: int = 0
    """``POST /v3/surveys/search`` answers at most this many surveys for a query (0 = all), and says no more
    exist past them, as search endpoints that stop at 1,000 or 10,000 hits do."""
    rotate_refresh_tokens: bool = False
    """With ``token_lifetime``, the refresh token grant answers a new refresh token each time and the one it
    was given stops working at once (``400 invalid_grant`` afterwards), as providers that rotate them do: a
    client must keep the newest where its next run, and its other processes, find it."""
    chaos: bool = False
    """Mix faults into every endpoint, reproducibly from the seed (``CHAOS_MIX``): 5xx at 20 %, bursts of
    429s with Retry-After, connection resets, bodies cut off mid-way and bodies that trickle in."""
    chaos_cycles: bool = False
    """With ``chaos``, also make some customers' next cursors point one page back (a cursor cycle)."""

    def __post_init__(self) -> None:
        """Reject nonsense early: a bad value would otherwise surface as odd behaviour mid-benchmark."""
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.rate_limit is not None:
            _check_rate_limit(*self.rate_limit)
        if self.rate_limit_style not in RATE_LIMIT_STYLES:
            raise ValueError(f"rate_limit_style must be one of {', '.join(RATE_LIMIT_STYLES)}")
        if self.customers < 1:
            raise ValueError("customers must be >= 1: every order references a customer")
        for name in ("orders", "events", "surveys", "cursor_cycle", "revoke_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


DEFAULT_CONFIG = DemoApiConfig()


def _check_rate_limit(requests: int, seconds: float) -> None:
    if requests < 1:
        raise ValueError(f"rate limit must allow at least 1 request, got {requests}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"rate limit window must be a positive number of seconds, got {seconds}")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """Read ``N/SECONDS`` (e.g. ``10/1``, ``120/60``), the notation API docs use for limits."""
    count_text, slash, seconds_text = text.partition("/")
    try:
        if not slash:
            raise ValueError(text)
        requests, seconds = int(count_text), float(seconds_text)
    except ValueError:
        raise ValueError(f"rate limit must look like N/SECONDS (e.g. 10/1), got {text!r}") from None
    _check_rate_limit(requests, seconds)
    return requests, seconds
