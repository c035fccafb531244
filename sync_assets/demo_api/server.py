"""A local HTTP API that behaves like the real ones users sync from, for the quickstart, tests and benchmarks.

Each endpoint uses a different pagination style (next URL in the body, page numbers, opaque cursor,
offset, ``Link`` header) and the server can add latency, require credentials, enforce a moving-window
rate limit and inject faults, so sync code is exercised against what production APIs do to it. All data
comes from :mod:`sync_assets.demo_api.data`, computed per page, so tests know the exact ground truth and
memory stays flat whatever the data set sizes.

Every request except ``/stats`` goes through, in order: latency, auth, rate limit, fault injection, the
endpoint. ``GET /stats`` and ``POST /stats/reset`` expose and clear the counters that benchmarks assert on.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from types import FrameType, TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

from sync_assets.demo_api import data

DEFAULT_CLI_PORT = 8765
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SLOW_FAULT_SECONDS = 2.0
FAULTS = ("500", "429", "malformed", "not_list", "slow", "reset", "truncated", "slow_body", "cycle", "no_cursor")
CURSOR_FIELDS = ("date_modified", "date", "occurred_at")  # what no_cursor takes out of every other record
# Chaos mode: the share of requests that meet each fault (the rest are answered normally). A burst is a
# second of 429s with Retry-After for every request of that client, as when an API sheds load.
CHAOS_MIX = (("5xx", 0.20), ("burst", 0.015), ("reset", 0.03), ("truncated", 0.03), ("slow_body", 0.03))
CHAOS_CYCLE_RATE = 0.03  # with chaos_cycles: the share of customers' pages whose next cursor points back
BURST_SECONDS = 1.0
SLOW_BODY_SECONDS = 0.6  # a slow body trickles in four parts over this long
PAUSE_GRACE_SECONDS = 0.25  # requests already on their way when a pause was announced are not counted in it
RATE_LIMIT_STYLES = ("retry-after", "ietf", "x-epoch", "github")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOKEN_KEY = b"sync-assets-demo-api-token"
_POLL_SECONDS = 0.02  # how fast serve_forever notices stop(); tests start and stop many servers


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
    rotate_refresh_tokens: bool = False
    """With ``token_lifetime``, the refresh token grant answers a new refresh token each time and the one it
    was given stops working at once (``400 invalid_grant`` afterwards), as providers that rotate them do: a
    client must keep the newest where its next run, and its other processes, find it."""
    """``POST /v3/surveys/search`` answers at most this many surveys for a query (0 = all), and says no more
    exist past them, as search endpoints that stop at 1,000 or 10,000 hits do."""
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


_DEFAULT_CONFIG = DemoApiConfig()


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


# --- replies ----------------------------------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    transport: str | None = None  # how the reply is damaged on the wire: reset, truncated, slow_body

TRANSPORT_FAULTS = ("reset", "truncated", "slow_body")


@dataclass
class _Page:
    """An endpoint's successful answer; ``records_key`` says where the records are (None: the body is
    the list), which is what the ``not_list`` fault needs to know."""

    body: Any
    records_key: str | None
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(body, separators=(",", ":")).encode(), headers or {})


def _bad_request(error: _BadParameter) -> _Reply:
    return _json_reply(400, {"error": "bad_request", "message": str(error), "parameter": error.parameter})


def _with_fault(page: _Page, fault: str | None) -> _Reply:
    """Render a page, damaged the way ``_fault`` asks, to test how clients cope with broken answers."""
    body = page.body
    if fault == "no_cursor" and page.records_key is not None:
        body = {**body, page.records_key: [
            {k: v for k, v in record.items() if k not in CURSOR_FIELDS} if index % 2 else record
            for index, record in enumerate(body[page.records_key])]}
    if fault == "not_list":
        if page.records_key is None:
            body = _records_as_object(body)
        else:
            body = {**body, page.records_key: _records_as_object(body[page.records_key])}
    reply = _json_reply(200, body, page.headers)
    if fault == "malformed":
        reply.body = reply.body[: max(1, len(reply.body) // 2)]
    return reply


def _records_as_object(records: list[Any]) -> dict[str, Any]:
    return {str(index): record for index, record in enumerate(records)}


# --- query parameters and pagination tokens ---------------------------------------------------------------


class _BadParameter(Exception):
    """A query parameter the endpoint cannot use; the message names it so clients can fix the call."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"invalid query parameter '{name}': {problem}")
        self.parameter = name


class _NotFound(Exception):
    pass


class _Query:
    """The query string of one request: typed accessors that raise _BadParameter, plus the raw pairs so
    next-page URLs can carry every original parameter."""

    def __init__(self, query_string: str) -> None:
        self.pairs = parse_qsl(query_string, keep_blank_values=True)
        self._values: dict[str, str] = {}
        for name, value in self.pairs:
            self._values.setdefault(name, value)

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise _BadParameter(name, f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise _BadParameter(name, f"must be {bounds}, got {value}")
        return value

    def page_size(self, name: str) -> int:
        return self.integer(name, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)

    def day(self, name: str) -> date:
        text = self.get(name)
        if text is None:
            raise _BadParameter(name, "required (YYYY-MM-DD)")
        try:
            if not _DAY_PATTERN.fullmatch(text):
                raise ValueError(text)
            return date.fromisoformat(text)
        except ValueError:
            raise _BadParameter(name, f"expected a date YYYY-MM-DD, got {text!r}") from None

    def epoch(self, name: str, unit: str = "seconds") -> datetime | None:
        """An epoch timestamp in ``seconds`` or ``milliseconds``, as Stripe-style filters take them."""
        text = self.get(name)
        if text is None:
            return None
        if not text.isdigit():
            raise _BadParameter(name, f"expected epoch {unit}, got {text!r}")
        return datetime.fromtimestamp(int(text) / (1000 if unit == "milliseconds" else 1), tz=UTC)

    def instant(self, name: str) -> datetime | None:
        text = self.get(name)
        if text is None:
            return None
        try:
            return data.parse_instant(text)
        except ValueError:
            hint = " ('+' in an offset must be sent as %2B)" if " " in text else ""
            problem = f"expected an ISO 8601 datetime with an offset, got {text!r}{hint}"
            raise _BadParameter(name, problem) from None

    def url_with(self, base_url: str, path: str, name: str, value: str) -> str:
        """This request's URL with one parameter replaced: real APIs keep every other parameter,
        credentials included, in their next links."""
        pairs = [(key, existing) for key, existing in self.pairs if key != name]
        return f"{base_url}{path}?{urlencode([*pairs, (name, value)])}"


def _token_checksum(kind: str, position: int) -> str:
    return hashlib.blake2b(f"{kind}:{position}".encode(), digest_size=6, key=_TOKEN_KEY).hexdigest()


def _encode_token(kind: str, position: int) -> str:
    """Opaque and tamper-evident: base64 of a small JSON document with a keyed checksum, so clients
    cannot (and need not) build tokens themselves, as with real cursor APIs."""
    document = json.dumps({"after": position, "check": _token_checksum(kind, position)})
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def _decode_token(kind: str, token: str, parameter: str) -> int:
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = document["after"]
        valid = (
            type(position) is int
            and position >= 0
            and hmac.compare_digest(str(document["check"]), _token_checksum(kind, position))
        )
    except (binascii.Error, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise _BadParameter(parameter, "invalid or corrupted token; pass the value of the previous page")
    return int(position)


def _ceil_timestamp(instant: datetime) -> int:
    """The first whole POSIX second at or after ``instant``: survey instants are whole seconds, so
    filtering on ``start <= t < end`` becomes exact integer comparisons."""
    whole, remainder = divmod(instant - _EPOCH, timedelta(seconds=1))
    return int(whole) + (1 if remainder else 0)


# --- endpoints --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    path: str
    path_args: tuple[str, ...]
    query: _Query
    base_url: str
    fault: str | None = None
    headers: Any = None  # the request's headers (an email.message.Message)
    body: bytes = b""


_SEARCH_PARAMETERS = ("start_modified_at", "end_modified_at", "page", "per_page", "sort")


def _form_fields(headers: Message | None, body: bytes) -> dict[str, str] | None:
    """A form body's fields (by its Content-Type); ``None`` for any other body."""
    if headers is None or not (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        return None
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def _body_fields(request: _Request) -> dict[str, Any]:
    """A request body's fields: a form by its Content-Type, else a JSON object (no body: none)."""
    form = _form_fields(request.headers, request.body)
    if form is not None:
        return form
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise _BadParameter("body", "expected a JSON object or a form") from None
    if not isinstance(body, dict):
        raise _BadParameter("body", "expected a JSON object or a form")
    return body


class _SurveyIndex:
    """Survey ids sorted by (modification instant, id), built once so a filtered page costs two bisects
    rather than hashing every survey on every request. Two int64 arrays: 16 bytes per survey."""

    def __init__(self, seed: int, count: int, year_start: date) -> None:
        keyed = sorted((data.survey_modified_timestamp(seed, i, year_start), i) for i in range(1, count + 1))
        self._instants = array("q", (instant for instant, _ in keyed))
        self._ids = array("q", (survey_id for _, survey_id in keyed))

    def ids_between(self, start: datetime | None, end: datetime | None) -> array[int]:
        low = 0 if start is None else bisect_left(self._instants, _ceil_timestamp(start))
        high = len(self._ids) if end is None else bisect_left(self._instants, _ceil_timestamp(end))
        return self._ids[low : max(low, high)]


def _page_slice(page: int, per_page: int) -> slice:
    return slice((page - 1) * per_page, page * per_page)


def _known_id(text: str, count: int) -> int:
    if not text.isdigit() or not 1 <= int(text) <= count:
        raise _NotFound(text)
    return int(text)


class _Endpoints:
    """The data endpoints, one method each, seeing only the parsed request and the config."""

    def __init__(self, config: DemoApiConfig, stats: _Stats) -> None:
        self._config, self._stats = config, stats
        self._survey_index = _SurveyIndex(config.seed, config.surveys, config.survey_year_start)

    def prices(self, request: _Request) -> _Page:
        query = request.query
        start, end = query.day("start_date"), query.day("end_date")
        if start > end:
            raise _BadParameter("end_date", "must not be before start_date (both are inclusive)")
        ticker = query.get("ticker")
        if ticker is not None and ticker not in data.TICKERS:
            raise _BadParameter("ticker", f"unknown ticker {ticker!r}; known: {', '.join(data.TICKERS)}")
        limit = query.page_size("limit")
        token = query.get("page_token")
        position = 0 if token is None else _decode_token("prices", token, "page_token")
        rows = data.iter_price_rows(self._config.seed, start, end, ticker, skip=position)
        next_url = None
        if position + limit < data.price_row_count(start, end, ticker):
            next_token = _encode_token("prices", position + limit)
            next_url = query.url_with(request.base_url, request.path, "page_token", next_token)
        return _Page({"data": list(islice(rows, limit)), "next": next_url}, "data")

    def tickers(self, request: _Request) -> _Page:
        """``GET /v1/tickers``: the instruments ``/v1/prices?ticker=`` reports on, in one page, as a list of
        accounts or campaigns is before a report per account per day."""
        return _Page({"data": [{"symbol": ticker, "name": f"{ticker} Inc."} for ticker in data.TICKERS]}, "data")

    def surveys(self, request: _Request, max_results: int = 0) -> _Page:
        """Also as Stripe-style APIs take it: ``modified[gte]`` / ``modified[lt]`` in epoch milliseconds, and
        newest first with ``sort=desc``; ``max_results`` cuts what a query finds, as a search endpoint does."""
        query = request.query
        start = query.instant("start_modified_at") or query.epoch("modified[gte]", "milliseconds")
        end = query.instant("end_modified_at") or query.epoch("modified[lt]", "milliseconds")
        page, per_page = query.integer("page", 1, 1), query.page_size("per_page")
        ids = self._survey_index.ids_between(start, end)
        if query.get("sort") == "desc":
            ids = ids[::-1]
        if max_results:
            ids = ids[:max_results]
        selected = ids[_page_slice(page, per_page)]
        config = self._config
        records = [data.survey(config.seed, survey_id, config.survey_year_start) for survey_id in selected]
        return _Page({"data": records, "page": page, "per_page": per_page, "total": len(ids)}, "data")

    def survey_responses(self, request: _Request) -> _Page:
        survey_id = _known_id(request.path_args[0], self._config.surveys)
        query = request.query
        page, per_page = query.integer("page", 1, 1), query.page_size("per_page")
        responses = data.survey_responses(self._config.seed, survey_id, self._config.survey_year_start)
        body = {"data": responses[_page_slice(page, per_page)], "page": page, "per_page": per_page,
                "total": len(responses)}
        return _Page(body, "data")

    def surveys_search(self, request: _Request) -> _Page:
        """``/v3/surveys/search`` (POST, or GET with a body): the surveys, asked for by ``start_modified_at``,
        ``end_modified_at``, ``page``, ``per_page`` and ``sort``, each taken from the query, a JSON or form body,
        or a header of its name, as search and report endpoints variously take them (a header wins, then
        the body)."""
        places = {"query": dict(request.query.pairs), "body": _body_fields(request),
                  "header": {name: request.headers[name] for name in _SEARCH_PARAMETERS
                             if request.headers is not None and request.headers.get(name) is not None}}
        values: dict[str, Any] = {}
        for place, fields in places.items():
            values.update(fields)
            self._stats.count_search_parameters(place, fields)
        query = _Query(urlencode({name: value for name, value in values.items() if isinstance(value, str | int)}))
        return self.surveys(_Request(request.path, (), query, request.base_url), self._config.search_max_results)

    def charges(self, request: _Request) -> _Page:
        """Stripe's shape over the surveys: ``created[gte]``/``created[lt]`` (epoch seconds), ``limit``,
        ``starting_after`` (an id), ``{"object": "list", "data": [...], "has_more": ...}``; each record is a
        survey with ``id`` ``ch_<n>`` and ``created`` its modification instant in epoch seconds."""
        query = request.query
        start, end = query.epoch("created[gte]"), query.epoch("created[lt]")
        limit = query.integer("limit", 10, 1, 100)
        ids = self._survey_index.ids_between(start, end)
        after = query.get("starting_after")
        position = 0
        if after is not None:
            if not after.startswith("ch_") or not after[3:].isdigit() or int(after[3:]) not in ids:
                raise _BadParameter("starting_after", f"no such object in this list: {after!r}")
            position = list(ids).index(int(after[3:])) + 1
        selected = ids[position:position + limit]
        config = self._config
        records = [data.charge(config.seed, survey_id, config.survey_year_start) for survey_id in selected]
        return _Page({"object": "list", "data": records, "has_more": position + limit < len(ids),
                      "url": "/v1/charges"}, "data")

    def responses(self, request: _Request) -> _Page:
        """A survey's responses by query parameter (``survey_id``), as APIs that filter children that way do.
        The ``X-Survey-Id`` header must name the same survey: it shows that headers carry parent values."""
        survey = request.query.get("survey_id")
        header = request.headers.get("X-Survey-Id") if request.headers is not None else None
        if survey is None:
            raise _BadParameter("survey_id", "required: the survey whose responses to list")
        if header != survey:
            raise _BadParameter("survey_id", f"the X-Survey-Id header says {header!r}, the parameter {survey!r}")
        return self.survey_responses(_Request(request.path, (survey,), request.query, request.base_url))

    def customers(self, request: _Request) -> _Page:
        query = request.query
        limit = query.page_size("limit")
        cursor = query.get("cursor")
        after = 0 if cursor is None else _decode_token("customers", cursor, "cursor")
        last = min(after + limit, self._config.customers)
        records = [data.customer(self._config.seed, i) for i in range(after + 1, last + 1)]
        cycle = self._config.cursor_cycle
        if (request.fault == "cycle" or (cycle and after // limit + 1 >= cycle)) and after >= limit:
            last = after - limit  # one page back: the reader has been there already
        next_cursor = _encode_token("customers", last) if last < self._config.customers else None
        return _Page({"data": records, "next_cursor": next_cursor}, "data")

    def orders(self, request: _Request) -> _Page:
        query = request.query
        offset, limit = query.integer("offset", 0, 0), query.page_size("limit")
        config = self._config
        last = min(offset + limit, config.orders)
        records = [data.order(config.seed, i, config.customers) for i in range(offset + 1, last + 1)]
        return _Page({"items": records, "total": config.orders, "offset": offset, "limit": limit}, "items")

    def issues(self, request: _Request) -> _Page:
        """GitHub's shape over the surveys: ``GET /repos/demo/issues?since=ISO&per_page=N&page=K``, oldest
        update first, the next page in a ``Link`` header; each record is a survey as an issue (``number``,
        ``updated_at``). Run with ``--rate-limit N/S --rate-limit-style github`` for GitHub's budget headers."""
        query = request.query
        since = query.instant("since")
        page, per_page = query.integer("page", 1, 1), query.integer("per_page", 30, 1, 100)
        ids = self._survey_index.ids_between(since, None)
        config = self._config
        records = [data.issue(config.seed, survey_id, config.survey_year_start)
                   for survey_id in ids[_page_slice(page, per_page)]]
        headers = {}
        if page * per_page < len(ids):
            headers["Link"] = f'<{query.url_with(request.base_url, request.path, "page", str(page + 1))}>; rel="next"'
        return _Page(records, None, headers)

    def events(self, request: _Request) -> _Page:
        query = request.query
        page_size, after = query.page_size("page_size"), query.integer("after", 0, 0)
        last = min(after + page_size, self._config.events)
        records = [data.event(self._config.seed, i) for i in range(after + 1, last + 1)]
        headers = {}
        if last < self._config.events:
            next_url = query.url_with(request.base_url, request.path, "after", str(last))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return _Page(records, None, headers)


_Endpoint = Callable[[_Endpoints, _Request], _Page]

# (path pattern, route template used as the /stats by_path key, endpoint)
_ROUTES: tuple[tuple[re.Pattern[str], str, _Endpoint], ...] = (
    (re.compile(r"/v1/prices"), "/v1/prices", _Endpoints.prices),
    (re.compile(r"/v1/tickers"), "/v1/tickers", _Endpoints.tickers),
    (re.compile(r"/v3/surveys"), "/v3/surveys", _Endpoints.surveys),
    (re.compile(r"/v3/surveys/([^/]+)/responses"), "/v3/surveys/{id}/responses", _Endpoints.survey_responses),
    (re.compile(r"/v3/responses"), "/v3/responses", _Endpoints.responses),
    (re.compile(r"/v1/charges"), "/v1/charges", _Endpoints.charges),
    (re.compile(r"/repos/demo/issues"), "/repos/demo/issues", _Endpoints.issues),
    (re.compile(r"/v3/surveys/search"), "/v3/surveys/search", _Endpoints.surveys_search),
    (re.compile(r"/v1/customers"), "/v1/customers", _Endpoints.customers),
    (re.compile(r"/v1/orders"), "/v1/orders", _Endpoints.orders),
    (re.compile(r"/v1/events"), "/v1/events", _Endpoints.events),
)
UNMATCHED_PATH_KEY = "(unmatched)"
_BODY_ENDPOINTS = (_Endpoints.surveys_search,)  # answer a POST, and a GET that carries a body


def _route(path: str) -> tuple[str, _Endpoint | None, tuple[str, ...]]:
    for pattern, template, endpoint in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return template, endpoint, match.groups()
    return UNMATCHED_PATH_KEY, None, ()


# --- auth, rate limit, faults, statistics -----------------------------------------------------------------


def _offered_credentials(headers: Message, query: _Query, body: bytes = b"") -> list[str]:
    """Every credential the request offers, in any of the styles real APIs accept (a form body's ``api_key``
    too, as Canny's API takes it)."""
    form = _form_fields(headers, body) or {}
    offered = [value for value in (headers.get("X-API-Key"), query.get("api_key"), form.get("api_key"))
               if value is not None]
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(value.strip())
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):  # undecodable: offers nothing
            offered.append(base64.b64decode(value.strip(), validate=True).decode().partition(":")[2])
    return offered


def _is_authorized(token: str, headers: Message, query: _Query, body: bytes = b"") -> bool:
    offered = _offered_credentials(headers, query, body)
    return any(hmac.compare_digest(credential.encode(), token.encode()) for credential in offered)


class _RateLimiter:
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


def _announced_wait(style: str, wait: float) -> float:
    """The seconds a refused client is told to wait, as its headers put it (rounded up, as sent)."""
    if style == "retry-after":
        return max(1, math.ceil(wait))
    if style == "ietf":
        return math.ceil(wait)
    now = time.time()
    return math.ceil(now + wait) - now  # an epoch reset, in whole seconds


def _budget_headers(style: str, remaining: int, reset: float) -> dict[str, str]:
    if style == "ietf":
        return {"RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(math.ceil(reset))}
    if style in ("x-epoch", "github"):
        return {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(math.ceil(time.time() + reset))}
    return {}


class _Stats:
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
                # more than PAUSE_GRACE_SECONDS after it was announced: a well-behaved client sends none
                "requests_in_pause": self._in_pause,
                "requests_in_pause_examples": list(self._pause_examples),
                "faults_injected": dict(self._faults),
                "tokens_issued": self._tokens,
                "token_requests": self._token_requests,  # to the token endpoints, granted or refused
                "rate_limit": None if limit is None else {"requests": limit[0], "seconds": limit[1]},
                "by_path": dict(self._paths),
                "search_parameters": dict(self._search_parameters),
            }


class _FaultStream:
    """One seeded random stream for the whole server, so a run's sequence of failures is reproducible."""

    def __init__(self, config: DemoApiConfig) -> None:
        self._random = random.Random(config.seed)
        self._fail_rate = config.fail_rate
        self._chaos, self._cycles = config.chaos, config.chaos and config.chaos_cycles
        self._lock = threading.Lock()

    def should_fail(self) -> bool:
        with self._lock:
            return self._random.random() < self._fail_rate

    def chaos(self, path_key: str) -> str | None:
        """The fault this request meets in chaos mode (a ``FAULTS`` name, or ``burst``), if any."""
        if not self._chaos:
            return None
        with self._lock:
            draw = self._random.random()
            if self._cycles and path_key == "/v1/customers" and self._random.random() < CHAOS_CYCLE_RATE:
                return "cycle"
            for fault, share in CHAOS_MIX:
                if draw < share:
                    return self._random.choice(("500", "502", "503")) if fault == "5xx" else fault
                draw -= share
        return None


class _Pauses:
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


# --- HTTP plumbing ----------------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    """Holds the per-server state the request handlers share, and tracks open connections so that
    stop() also ends idle keep-alive connections instead of leaving them served by orphan threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: DemoApiConfig) -> None:
        self.config = config
        self.stats = _Stats(config.rate_limit)
        self.limiter = _RateLimiter(config.rate_limit)
        self.faults = _FaultStream(config)
        self.pauses = _Pauses()
        self.endpoints = _Endpoints(config, self.stats)
        self._accepted, self._accepted_lock = 0, threading.Lock()
        self._issued: dict[str, float] = {}  # token -> when it expires (monotonic)
        self._refresh_token = self.config.token  # the one refresh token that works, when they rotate
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()
        super().__init__((config.host, config.port), _RequestHandler)

    def server_bind(self) -> None:
        """Skip HTTPServer's reverse DNS lookup of the bind address, which can stall start-up for seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-response (a timeout, a stop()) is routine here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def reset_stats(self) -> None:
        self.stats.reset()
        self.limiter.reset()
        self.pauses.reset()

    def exchange_refresh_token(self, offered: str | None) -> str | None:
        """The next refresh token if ``offered`` is the current one (it then stops working); else None."""
        with self._accepted_lock:
            if offered is None or offered != self._refresh_token:
                return None
            self._refresh_token = f"refresh-{random.getrandbits(64):016x}"
            return self._refresh_token

    def issue_token(self) -> str:
        token = f"issued-{random.getrandbits(64):016x}"
        with self._accepted_lock:
            self._issued[token] = time.monotonic() + self.config.token_lifetime
        self.stats.count_token()
        return token

    def issued_and_valid(self, offered: list[str]) -> bool:
        now = time.monotonic()
        with self._accepted_lock:
            return any(self._issued.get(token, 0.0) > now for token in offered)

    def revoked(self) -> bool:
        """Whether the token is refused from now on (``revoke_after`` accepted requests were served)."""
        limit = self.config.revoke_after
        if not limit:
            return False
        with self._accepted_lock:
            self._accepted += 1
            return self._accepted > limit


class _RequestHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with an explicit Content-Length, so clients reuse connections as in production."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would delay the body
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a line per request would drown test and benchmark output."""

    def do_GET(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a GET may carry a body too
        self._handle("GET")

    def do_POST(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # also keeps keep-alive in sync
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        if (method, url.path) == ("GET", "/stats"):
            self._send(_json_reply(200, self.server.stats.snapshot()))
        elif (method, url.path) == ("POST", "/stats/reset"):
            self.server.reset_stats()
            self._send(_json_reply(200, self.server.stats.snapshot()))
        elif (method, url.path) in (("POST", "/oauth/token"), ("POST", "/login")) and self.server.config.token_lifetime:
            time.sleep(self.server.config.latency_ms / 1000)  # a token endpoint is no faster than the API
            self._send(self._token(url.path))
        else:
            path_key, endpoint, path_args = _route(url.path)
            self.server.stats.count_request(path_key)
            reply = self._guarded(method, url.path, _Query(url.query), endpoint, path_args, path_key)
            self.server.stats.count_status(reply.status)
            self._send(reply)

    def _token(self, path: str) -> _Reply:
        """The token endpoints: credentials in, a short-lived token out (never through the data endpoints' auth)."""
        server, secret = self.server, self.server.config.token
        server.stats.count_token_request()
        body = getattr(self, "body", b"")
        if path == "/login":
            try:
                login = json.loads(body or b"{}")
            except ValueError:
                login = {}
            if not (isinstance(login, dict) and login.get("username") == "demo" and login.get("password") == secret):
                return _json_reply(401, {"error": "invalid_login"})
            return _json_reply(200, {"session": {"token": server.issue_token()},
                                     "expires_in": server.config.token_lifetime})
        form = dict(parse_qsl(body.decode()))
        grant = form.get("grant_type")
        rotated = None
        if grant == "refresh_token" and server.config.rotate_refresh_tokens:
            rotated = server.exchange_refresh_token(form.get("refresh_token"))
            if rotated is None:  # used already, or never issued: what rotating providers answer
                return _json_reply(400, {"error": "invalid_grant", "error_description": "refresh token is not valid"})
        good = rotated is not None or (grant == "client_credentials" and form.get("client_id") == "demo-client"
                                       and form.get("client_secret") == secret) or (
            grant == "refresh_token" and form.get("refresh_token") == secret)
        if not good:
            return _json_reply(400 if grant not in ("client_credentials", "refresh_token") else 401,
                               {"error": "invalid_client" if grant else "unsupported_grant_type"})
        answer = {"access_token": server.issue_token(), "token_type": "bearer",
                  "expires_in": server.config.token_lifetime}
        return _json_reply(200, {**answer, "refresh_token": rotated} if rotated else answer)

    def _guarded(
        self, method: str, path: str, query: _Query, endpoint: _Endpoint | None, path_args: tuple[str, ...],
        path_key: str,
    ) -> _Reply:
        """Latency, auth, rate limit and random faults, in that order, before the endpoint itself."""
        server = self.server
        config = server.config
        received = time.monotonic()  # when the request arrived: the moment that counts against a pause
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        authorized = config.token is None or _is_authorized(config.token, self.headers, query,
                                                              getattr(self, "body", b"")) or (
            config.token_lifetime > 0 and server.issued_and_valid(_offered_credentials(self.headers, query)))
        if not authorized or (config.token is not None and server.revoked()):
            message = ("missing or invalid credentials: send the API token as a Bearer token, an X-API-Key "
                       "header, an api_key query parameter or form field, or a Basic auth password")
            return _json_reply(401, {"error": "unauthorized", "message": message},
                                {"WWW-Authenticate": 'Bearer realm="demo"'})
        identity = config.token if config.token is not None else self.client_address[0]
        pause = server.pauses.in_pause(identity, received)
        if pause is not None:
            server.stats.count_in_pause(path_key, *pause)
        now = time.monotonic()
        server.stats.count_arrival(identity, now)
        wait = server.limiter.retry_after(identity, now)
        style = config.rate_limit_style
        if wait is not None:
            server.pauses.announce(identity, now, _announced_wait(style, wait))
            if style == "retry-after":
                return _json_reply(429, {"error": "rate_limited", "retry_after": round(wait, 3)},
                                    {"Retry-After": str(max(1, math.ceil(wait)))})
            return _json_reply(403 if style == "github" else 429, {"error": "rate_limited"},
                                _budget_headers(style, 0, wait))
        chaos = server.faults.chaos(path_key)
        if chaos is not None:
            server.stats.count_fault("5xx" if chaos.isdigit() else chaos)
        burst = server.pauses.burst(identity, now, BURST_SECONDS if chaos == "burst" else 0.0)
        if burst:
            server.pauses.announce(identity, now, math.ceil(burst))
            return _json_reply(429, {"error": "rate_limited", "burst": True}, {"Retry-After": str(math.ceil(burst))})
        if chaos is not None and chaos.isdigit():
            return _json_reply(int(chaos), {"error": "unavailable"})
        if server.faults.should_fail():
            return _json_reply(500, {"error": "internal"})
        reply = self._answer(method, path, query, endpoint, path_args, chaos)
        budget = server.limiter.budget(identity, now)
        if budget is not None and style != "retry-after":
            reply.headers.update(_budget_headers(style, *budget))
        return reply

    def _answer(
        self, method: str, path: str, query: _Query, endpoint: _Endpoint | None, path_args: tuple[str, ...],
        chaos: str | None = None,
    ) -> _Reply:
        fault = query.get("_fault")
        if fault is not None and fault not in FAULTS:
            return _bad_request(_BadParameter("_fault", f"must be one of {', '.join(FAULTS)}"))
        fault = fault or chaos
        if fault == "500":
            return _json_reply(500, {"error": "internal"})
        if fault == "429":  # throttled with no Retry-After: some APIs do that
            return _json_reply(429, {"error": "rate_limited"})
        if endpoint is None:
            return _json_reply(404, {"error": "not_found"})
        allowed = ("GET", "POST") if endpoint in _BODY_ENDPOINTS else ("GET",)
        if method not in allowed:
            return _json_reply(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(allowed)})
        if fault == "slow":
            time.sleep(SLOW_FAULT_SECONDS)
        try:
            page = endpoint(self.server.endpoints, _Request(path, path_args, query, self._base_url(), fault,
                                                            self.headers, getattr(self, "body", b"")))
        except _BadParameter as error:
            return _bad_request(error)
        except _NotFound:
            return _json_reply(404, {"error": "not_found"})
        reply = _with_fault(page, fault)
        reply.transport = fault if fault in TRANSPORT_FAULTS else None
        return reply

    def _base_url(self) -> str:
        """Next-page links point where the client connected, which may differ from the bind address."""
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        return f"http://{host}"

    def _send(self, reply: _Reply) -> None:
        if reply.transport == "reset":  # no answer at all: the connection is reset (RST, not FIN)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.transport == "truncated":  # the promised length, half of it sent, then the connection closed
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.close_connection = True
        elif reply.transport == "slow_body":
            quarter = max(1, len(reply.body) // 4 + 1)
            for start in range(0, len(reply.body), quarter):
                self.wfile.write(reply.body[start:start + quarter])
                time.sleep(SLOW_BODY_SECONDS / 4)
        else:
            self.wfile.write(reply.body)


# --- public server object ---------------------------------------------------------------------------------


class DemoApi:
    """The demo API bound to its socket at construction, so ``url`` is known before ``start()``."""

    def __init__(self, config: DemoApiConfig = _DEFAULT_CONFIG) -> None:
        self.config = config
        self._server = _HttpServer(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._server.server_name}:{self._server.server_port}"

    def start(self) -> DemoApi:
        """Serve from a daemon thread, for tests and in-process benchmarks."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(_POLL_SECONDS,), name=f"demo-api {self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until KeyboardInterrupt, for the CLI."""
        self._server.serve_forever(_POLL_SECONDS)

    def set_latency(self, latency_ms: float) -> None:
        """Answer with this latency from the next request on, as a real API slows down or recovers;
        requests already waiting keep the latency they began with."""
        self.config = self._server.config = replace(self.config, latency_ms=latency_ms)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def stats(self) -> dict[str, Any]:
        return self._server.stats.snapshot()

    def reset_stats(self) -> None:
        self._server.reset_stats()

    def __enter__(self) -> DemoApi:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


# --- command line -----------------------------------------------------------------------------------------


def _rate_limit_argument(text: str) -> tuple[int, float]:
    """argparse only shows the message of an ArgumentTypeError; a ValueError becomes a generic error."""
    try:
        return parse_rate_limit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _year_start_argument(text: str) -> date:
    if text == "recent":
        return datetime.now(UTC).date() - timedelta(days=365)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or recent, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = _DEFAULT_CONFIG
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_CLI_PORT,
                        help="port to bind, 0 picks a free one (default: %(default)s)")
    parser.add_argument("--token", default=None,
                        help="require this token (Bearer, X-API-Key, api_key=... or Basic password)")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms,
                        help="delay added before every response (default: %(default)s)")
    parser.add_argument("--rate-limit", type=_rate_limit_argument, default=None, metavar="N/SECONDS",
                        help="allow N requests per moving window of SECONDS per client, e.g. 10/1")
    parser.add_argument("--fail-rate", type=float, default=defaults.fail_rate, metavar="F",
                        help="share of requests answered 500, reproducible from the seed")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the data and of the faults (default: %(default)s)")
    for name in ("customers", "orders", "events", "surveys"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name),
                            help=f"number of {name} (default: %(default)s)")
    parser.add_argument("--survey-year-start", type=_year_start_argument, default=defaults.survey_year_start,
                        metavar="DATE|recent", help="first of the 366 days over which surveys are modified; recent: "
                                                    "the year up to today (default: %(default)s)")
    parser.add_argument("--rate-limit-style", choices=RATE_LIMIT_STYLES, default=defaults.rate_limit_style,
                        help="how the budget is announced (default: %(default)s)")
    parser.add_argument("--revoke-after", type=int, default=0, metavar="N",
                        help="refuse the token (401) after N accepted requests, as a revoked credential (0: never)")
    parser.add_argument("--cursor-cycle", type=int, default=0, metavar="N",
                        help="from page N on, the customers' next cursor points one page back (0: never)")
    parser.add_argument("--token-lifetime", type=float, default=0.0, metavar="SECONDS",
                        help="serve POST /oauth/token and POST /login, handing out tokens that live this long")
    parser.add_argument("--search-max-results", type=int, default=0, metavar="N",
                        help="POST /v3/surveys/search finds at most N surveys per query, as search endpoints do")
    parser.add_argument("--rotate-refresh-tokens", action="store_true",
                        help="with --token-lifetime, each refresh token grant answers a new refresh token and the "
                             "old one stops working")
    parser.add_argument("--chaos", action="store_true",
                        help="mix faults into every endpoint, reproducibly from --seed: 5xx at 20%%, bursts of "
                             "429s, connection resets, cut-off and trickling bodies")
    parser.add_argument("--chaos-cycles", action="store_true",
                        help="with --chaos, also point some customers' next cursors one page back")


def _config_from_args(args: argparse.Namespace) -> DemoApiConfig:
    return DemoApiConfig(
        host=args.host, port=args.port, token=args.token, latency_ms=args.latency_ms,
        rate_limit=args.rate_limit, fail_rate=args.fail_rate, seed=args.seed,
        customers=args.customers, orders=args.orders, events=args.events, surveys=args.surveys,
        survey_year_start=args.survey_year_start,
        cursor_cycle=args.cursor_cycle, revoke_after=args.revoke_after, rate_limit_style=args.rate_limit_style,
        chaos=args.chaos, chaos_cycles=args.chaos_cycles, token_lifetime=args.token_lifetime,
        search_max_results=args.search_max_results, rotate_refresh_tokens=args.rotate_refresh_tokens,
    )


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM (e.g. from a process manager) stops the server the same clean way Ctrl-C does."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. The single stdout line tells scripts which port was picked."""
    try:
        api = DemoApi(_config_from_args(args))
    except (ValueError, OSError) as error:
        print(f"demo API: cannot start: {error}", file=sys.stderr)
        return 2
    print(f"demo API listening on {api.url}", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        api.stop()
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m sync_assets.demo_api.server") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Serve the sync-assets demo HTTP API.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
