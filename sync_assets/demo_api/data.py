"""Deterministic data served by the demo API, and the ground truth that tests compare synced data with.

Every record is a pure function of ``(seed, record key)``: one blake2b hash of ``"{seed}:{kind}:{key}"``
feeds all of its fields, so record ``i`` is computed alone, in constant time, without materialising the
records before it. The server builds pages from these functions and tests call the same functions to
know what a complete sync must contain.

Public functions (each returns exactly the dicts the API serves):

- ``price_row(seed, day, ticker)``: one ``/v1/prices`` row; ``price_rows(seed, start, end_inclusive,
  ticker=None)`` all rows of a window (both ends inclusive) in API order, ``iter_price_rows(...,
  skip=0)`` the same lazily, and ``price_row_count(start, end_inclusive, ticker=None)`` their number.
- ``survey(seed, survey_id)``, ``all_surveys(seed, count)`` (id order), ``survey_modified_timestamp(seed,
  survey_id)`` (the instant of ``date_modified`` in POSIX seconds) and ``surveys_modified_between(seed,
  count, start, end)``: what ``/v3/surveys`` returns for ``start <= date_modified < end``, in API order.
- Each survey function takes ``year_start`` (default ``SURVEY_YEAR_START``): the first of the 366 days
  over which surveys are modified.
- ``survey_responses(seed, survey_id)``: all responses of one survey, in API order, and
  ``survey_response_count(seed, survey_id)`` their number (0 to ``MAX_RESPONSES_PER_SURVEY``).
- ``customer(seed, customer_id)`` / ``all_customers(seed, count)``.
- ``order(seed, order_id, customers)`` / ``all_orders(seed, count, customers)``.
- ``event(seed, event_id)`` / ``all_events(seed, count)``.
- ``parse_instant(text)``: the instant of an ISO 8601 datetime with an offset, or of a bare date (midnight
  UTC), as the API interprets ``start_modified_at`` / ``end_modified_at``.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import combinations
from typing import Any, TypeVar

T = TypeVar("T")

TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA")
# What a dollar buys: the prices report converts into these, one fixed rate each.
CURRENCIES: dict[str, float] = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}
PRICES_FIRST_DAY = date(2020, 1, 1)
PRICES_LAST_DAY = date(2100, 12, 31)

# Renderings of survey modification times: the instant never depends on the one chosen.
SURVEY_OFFSETS: dict[str, int] = {"Z": 0, "+00:00": 0, "+02:00": 7200, "-05:00": -18000, "+05:30": 19800}
# Every MIDNIGHT_SURVEY_EVERY-th survey is modified exactly at a midnight UTC, so that window edges
# (end exclusive) are exercised by any data set of a realistic size.
MIDNIGHT_SURVEY_EVERY = 20
MAX_RESPONSES_PER_SURVEY = 12
SURVEY_YEAR_START = date(2024, 1, 1)
"""The first of the 366 days over which surveys are modified, unless a server is told another
(``year_start``): fixed, so that tests know their data; the demo moves it to end today."""

_DAY = 86400
_SURVEY_YEAR_DAYS = 366
_CUSTOMERS_START = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp())
_ORDERS_START = int(datetime(2022, 1, 1, tzinfo=UTC).timestamp())
_EVENTS_START = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())
_EVENT_SPACING_SECONDS = 60

_TOPICS = ("Customer satisfaction", "Onboarding", "Pricing", "Support quality", "Feature wishes",
           "Employee pulse", "Checkout experience", "Mobile app", "Delivery", "Newsletter")
_FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Guido",
                "Hedy", "John", "Katherine", "Edsger", "Radia", "Tim", "Sophie", "Yukihiro", "Anita",
                "Niklaus")
_LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie",
               "Allen", "van Rossum", "Lamarr", "Backus", "Johnson", "Dijkstra", "Perlman", "Berners-Lee",
               "Wilson", "Matsumoto", "Borg", "Wirth")
_COUNTRIES = ("US", "DE", "FR", "GB", "JP", "IN", "BR", "CA", "AU", "NL", "SE", "ES", "IT", "MX", "ZA")
_CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Bristol", "Madison",
           "Georgetown", "Clinton", "Salem", "Franklin", "Ashland", "Milton", "Oxford", "Newport")
_TAGS = ("vip", "newsletter", "beta", "churn-risk", "b2b", "trial", "referral", "enterprise")
# Customers carry none, one or two tags; one draw picks the whole set, which keeps customers cheap.
_TAG_SETS: tuple[tuple[str, ...], ...] = ((), *((tag,) for tag in _TAGS), *combinations(_TAGS, 2))
_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
_ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
_EVENT_TYPES = ("page_view", "click", "signup", "purchase", "logout", "search")
_SOURCES = ("web", "ios", "android", "api")

_INSTANT_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Draws:
    """Hands out independent-looking small numbers from one record's hash.

    A single hash per record keeps generation fast, and mixed-radix extraction (``divmod``) spends
    only the entropy each field needs, so 256 bits cover every record kind (a customer uses ~70).
    """

    __slots__ = ("_pool",)

    def __init__(self, seed: int, kind: str, key: object) -> None:
        digest = hashlib.blake2b(f"{seed}:{kind}:{key}".encode(), digest_size=32).digest()
        self._pool = int.from_bytes(digest, "big")

    def below(self, bound: int) -> int:
        self._pool, value = divmod(self._pool, bound)
        return value

    def choice(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]


def _iso_z(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _iso_with_offset(timestamp: int, offset: str) -> str:
    local = time.gmtime(timestamp + SURVEY_OFFSETS[offset])
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + offset


def parse_instant(text: str) -> datetime:
    """Read a datetime the way the API does: an explicit offset is required, because a naive time would
    silently shift windows by the server's zone; a bare date is unambiguous and means midnight UTC."""
    if _INSTANT_DATE.fullmatch(text):
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"datetime {text!r} has no UTC offset")
    return parsed


# --- stock prices -------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _ticker_shape(seed: int, ticker: str) -> tuple[float, float, float, float]:
    """Per-ticker base price, decade growth, cycle length and phase: cached because every row needs them."""
    draws = _Draws(seed, "ticker", ticker)
    base = 20 + draws.below(480)
    growth = 0.2 + draws.below(1000) / 1000
    period_days = 120 + draws.below(300)
    phase = draws.below(6283) / 1000
    return float(base), growth, float(period_days), phase


def price_row(seed: int, day: date, ticker: str) -> dict[str, Any]:
    """A smooth trend times a cycle times noise: plausible to look at, yet computable for any day alone."""
    base, growth, period_days, phase = _ticker_shape(seed, ticker)
    age_days = (day - PRICES_FIRST_DAY).days
    draws = _Draws(seed, "price", f"{ticker}:{age_days}")
    trend = 1 + growth * age_days / 3650
    cycle = 1 + 0.15 * math.sin(2 * math.pi * age_days / period_days + phase)
    noise = 1 + (draws.below(4001) - 2000) / 100_000
    return {
        "date": day.isoformat(),
        "ticker": ticker,
        "price": round(base * trend * cycle * noise, 2),
        "volume": 100_000 + draws.below(50_000_000),
    }


def in_currency(row: dict[str, Any], currency: str) -> dict[str, Any]:
    """A price row in another currency, saying which (the row's key grows by it)."""
    return {**row, "price": round(row["price"] * CURRENCIES[currency], 2), "currency": currency}


def _price_window(start: date, end_inclusive: date, ticker: str | None) -> tuple[date, int, tuple[str, ...]]:
    """Clamp a requested window to the days that have prices; returns (first day, day count, tickers)."""
    if ticker is not None and ticker not in TICKERS:
        raise ValueError(f"unknown ticker {ticker!r}; known: {', '.join(TICKERS)}")
    tickers = TICKERS if ticker is None else (ticker,)
    first = max(start, PRICES_FIRST_DAY)
    last = min(end_inclusive, PRICES_LAST_DAY)
    return first, max(0, (last - first).days + 1), tickers


def price_row_count(start: date, end_inclusive: date, ticker: str | None = None) -> int:
    _, days, tickers = _price_window(start, end_inclusive, ticker)
    return days * len(tickers)


def iter_price_rows(
    seed: int, start: date, end_inclusive: date, ticker: str | None = None, skip: int = 0
) -> Iterator[dict[str, Any]]:
    """Rows ordered by date then ticker (the order of TICKERS); ``skip`` jumps straight to a page start."""
    first, days, tickers = _price_window(start, end_inclusive, ticker)
    for position in range(skip, days * len(tickers)):
        day_index, ticker_index = divmod(position, len(tickers))
        yield price_row(seed, first + timedelta(days=day_index), tickers[ticker_index])


def price_rows(
    seed: int, start: date, end_inclusive: date, ticker: str | None = None
) -> list[dict[str, Any]]:
    return list(iter_price_rows(seed, start, end_inclusive, ticker))


# --- surveys and their responses ----------------------------------------------------------------------


def _survey_modified(draws: _Draws, survey_id: int, year_start: date) -> int:
    first_day = int(datetime(year_start.year, year_start.month, year_start.day, tzinfo=UTC).timestamp())
    day_start = first_day + draws.below(_SURVEY_YEAR_DAYS) * _DAY
    if survey_id % MIDNIGHT_SURVEY_EVERY == 0:
        return day_start
    return day_start + draws.below(_DAY)


def survey_modified_timestamp(seed: int, survey_id: int, year_start: date = SURVEY_YEAR_START) -> int:
    """The instant of a survey's ``date_modified``, cheap enough to index every survey by it."""
    return _survey_modified(_Draws(seed, "survey", survey_id), survey_id, year_start)


def charge(seed: int, survey_id: int, year_start: date = SURVEY_YEAR_START) -> dict[str, Any]:
    """A survey as Stripe shapes its objects: a prefixed string id, ``created`` in epoch seconds, money in cents."""
    record = survey(seed, survey_id, year_start)
    return {"id": f"ch_{survey_id}", "object": "charge",
            "created": survey_modified_timestamp(seed, survey_id, year_start),
            "amount": 100 * record["question_count"], "currency": "eur", "description": record["title"]}


def issue(seed: int, survey_id: int, year_start: date = SURVEY_YEAR_START) -> dict[str, Any]:
    """A survey as GitHub shapes an issue: ``number``, ``title``, ``state``, ``updated_at`` (UTC, ``Z``)."""
    record = survey(seed, survey_id, year_start)
    return {"id": 10_000 + survey_id, "number": survey_id, "title": record["title"], "state": "open",
            "created_at": record["date_created"],
            "updated_at": _iso_z(survey_modified_timestamp(seed, survey_id, year_start))}


def issues_updated_between(seed: int, count: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [issue(seed, s["id"]) for s in surveys_modified_between(seed, count, start, end)]


def charges_created_between(seed: int, count: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [charge(seed, s["id"]) for s in surveys_modified_between(seed, count, start, end)]


def survey(seed: int, survey_id: int, year_start: date = SURVEY_YEAR_START) -> dict[str, Any]:
    draws = _Draws(seed, "survey", survey_id)
    modified = _survey_modified(draws, survey_id, year_start)
    offset = draws.choice(tuple(SURVEY_OFFSETS))
    created = modified - draws.below(400 * _DAY)
    return {
        "id": survey_id,
        "title": f"{draws.choice(_TOPICS)} survey #{survey_id}",
        "date_created": _iso_z(created),
        "date_modified": _iso_with_offset(modified, offset),
        "question_count": 3 + draws.below(13),
    }


def all_surveys(seed: int, count: int, year_start: date = SURVEY_YEAR_START) -> list[dict[str, Any]]:
    return [survey(seed, survey_id, year_start) for survey_id in range(1, count + 1)]


def surveys_modified_between(
    seed: int, count: int, start: datetime | None = None, end: datetime | None = None,
    year_start: date = SURVEY_YEAR_START,
) -> list[dict[str, Any]]:
    """Deliberately a plain scan-filter-sort, independent of the server's index, so tests can catch it."""
    def instant(record: dict[str, Any]) -> datetime:
        return parse_instant(record["date_modified"])

    matching = [
        record
        for record in all_surveys(seed, count, year_start)
        if (start is None or start <= instant(record)) and (end is None or instant(record) < end)
    ]
    return sorted(matching, key=lambda record: (instant(record), record["id"]))


def survey_response_count(seed: int, survey_id: int) -> int:
    return _Draws(seed, "responses", survey_id).below(MAX_RESPONSES_PER_SURVEY + 1)


def _survey_response(seed: int, parent: dict[str, Any], number: int) -> dict[str, Any]:
    response_id = f"{parent['id']}-{number}"
    draws = _Draws(seed, "response", response_id)
    created = int(parse_instant(parent["date_created"]).timestamp())
    return {
        "id": response_id,
        "survey_id": parent["id"],
        "submitted_at": _iso_z(created + draws.below(90 * _DAY)),
        "answers": [1 + draws.below(5) for _ in range(parent["question_count"])],
    }


def survey_responses(seed: int, survey_id: int, year_start: date = SURVEY_YEAR_START) -> list[dict[str, Any]]:
    parent = survey(seed, survey_id, year_start)
    count = survey_response_count(seed, survey_id)
    return [_survey_response(seed, parent, number) for number in range(1, count + 1)]


# --- customers, orders, events ------------------------------------------------------------------------


def customer(seed: int, customer_id: int) -> dict[str, Any]:
    draws = _Draws(seed, "customer", customer_id)
    first, last = draws.choice(_FIRST_NAMES), draws.choice(_LAST_NAMES)
    email_name = f"{first}.{last}".lower().replace(" ", "")
    return {
        "id": customer_id,
        "name": f"{first} {last}",
        "email": f"{email_name}{customer_id}@example.com",
        "country": draws.choice(_COUNTRIES),
        "created_at": _iso_z(_CUSTOMERS_START + draws.below(6 * 365 * _DAY)),
        "tags": list(draws.choice(_TAG_SETS)),
        "address": {"city": draws.choice(_CITIES), "zip": f"{draws.below(100_000):05d}"},
    }


def all_customers(seed: int, count: int) -> list[dict[str, Any]]:
    return [customer(seed, customer_id) for customer_id in range(1, count + 1)]


def order(seed: int, order_id: int, customers: int) -> dict[str, Any]:
    """``customers`` bounds ``customer_id`` so that every order references an existing customer."""
    draws = _Draws(seed, "order", order_id)
    return {
        "id": order_id,
        "customer_id": 1 + draws.below(customers),
        "amount": (500 + draws.below(199_501)) / 100,
        "currency": draws.choice(_CURRENCIES),
        "ordered_at": _iso_z(_ORDERS_START + draws.below(3 * 365 * _DAY)),
        "status": draws.choice(_ORDER_STATUSES),
    }


def all_orders(seed: int, count: int, customers: int) -> list[dict[str, Any]]:
    return [order(seed, order_id, customers) for order_id in range(1, count + 1)]


def event(seed: int, event_id: int) -> dict[str, Any]:
    """Events are spaced a minute apart plus jitter below a minute, so ``occurred_at`` grows with the id."""
    draws = _Draws(seed, "event", event_id)
    occurred = _EVENTS_START + (event_id - 1) * _EVENT_SPACING_SECONDS + draws.below(_EVENT_SPACING_SECONDS)
    return {
        "id": event_id,
        "type": draws.choice(_EVENT_TYPES),
        "occurred_at": _iso_z(occurred),
        "payload": {
            "user_id": 1 + draws.below(10_000),
            "source": draws.choice(_SOURCES),
            "value": draws.below(1000),
        },
    }


def all_events(seed: int, count: int) -> list[dict[str, Any]]:
    return [event(seed, event_id) for event_id in range(1, count + 1)]
