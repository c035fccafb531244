"""The data endpoints, each in the pagination style of a family of real APIs (a next URL in the body,
page numbers, an opaque cursor, an offset, a ``Link`` header, Stripe's ``starting_after``, a search that
takes its parameters in a body), so that sync code meets every style against data whose ground truth the
tests know from :mod:`sync_assets.demo_api.data`. Pages are computed per request, so memory stays flat
whatever the data set sizes. Latency, auth, the rate limit and faults are the server's business: an
endpoint sees only the parsed request.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from sync_assets.demo_api import data
from sync_assets.demo_api.config import DemoApiConfig
from sync_assets.demo_api.protocol import (
    BadParameter,
    NotFound,
    Page,
    Query,
    Request,
    body_fields,
    decode_token,
    encode_token,
)
from sync_assets.demo_api.stats import Stats

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEARCH_PARAMETERS = ("start_modified_at", "end_modified_at", "page", "per_page", "sort")


def _ceil_timestamp(instant: datetime) -> int:
    """The first whole POSIX second at or after ``instant``: survey instants are whole seconds, so
    filtering on ``start <= t < end`` becomes exact integer comparisons."""
    whole, remainder = divmod(instant - _EPOCH, timedelta(seconds=1))
    return int(whole) + (1 if remainder else 0)


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
        raise NotFound(text)
    return int(text)


class Endpoints:
    """The data endpoints, one method each, seeing only the parsed request and the config."""

    def __init__(self, config: DemoApiConfig, stats: Stats) -> None:
        self._config, self._stats = config, stats
        self._survey_index = _SurveyIndex(config.seed, config.surveys, config.survey_year_start)

    def prices(self, request: Request) -> Page:
        query = request.query
        start, end = query.day("start_date"), query.day("end_date")
        if start > end:
            raise BadParameter("end_date", "must not be before start_date (both are inclusive)")
        ticker = _ticker(query)
        limit = query.page_size("limit")
        token = query.get("page_token")
        position = 0 if token is None else decode_token("prices", token, "page_token")
        rows = data.iter_price_rows(self._config.seed, start, end, ticker, skip=position)
        next_url = None
        if position + limit < data.price_row_count(start, end, ticker):
            next_token = encode_token("prices", position + limit)
            next_url = query.url_with(request.base_url, request.path, "page_token", next_token)
        return Page({"data": list(islice(rows, limit)), "next": next_url}, "data")

    def price_report(self, request: Request) -> Page:
        """A report API's shape (Wikimedia's pageviews): the days in the path, both inclusive, as YYYYMMDD
        (``/v1/reports/prices/20240101/20240131``), every row of them in one answer, under ``items``; in
        dollars, or in the ``currency`` asked for (a report per ticker per currency: two lists' product)."""
        start, end = (_report_day(text, name) for text, name in zip(request.path_args, ("start", "end"), strict=True))
        if start > end:
            raise BadParameter("end", "must not be before start (both are inclusive)")
        if (end - start).days >= _REPORT_MAX_DAYS:
            raise BadParameter("end", f"a report covers at most {_REPORT_MAX_DAYS} days")
        rows = data.price_rows(self._config.seed, start, end, _ticker(request.query))
        currency = request.query.get("currency")
        if currency is not None:
            if currency not in data.CURRENCIES:
                raise BadParameter("currency", f"unknown currency {currency!r}; known: {', '.join(data.CURRENCIES)}")
            rows = [data.in_currency(row, currency) for row in rows]
        return Page({"items": rows}, "items")

    def tickers(self, request: Request) -> Page:
        """``GET /v1/tickers``: the instruments ``/v1/prices?ticker=`` reports on, in one page, as a list of
        accounts or campaigns is before a report per account per day."""
        return Page({"data": [{"symbol": ticker, "name": f"{ticker} Inc."} for ticker in data.TICKERS]}, "data")

    def currencies(self, request: Request) -> Page:
        """``GET /v1/currencies``: what the prices report converts into, in one page."""
        return Page({"data": [{"code": code, "per_usd": rate} for code, rate in data.CURRENCIES.items()]}, "data")

    def surveys(self, request: Request, max_results: int = 0) -> Page:
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
        return Page({"data": records, "page": page, "per_page": per_page, "total": len(ids)}, "data")

    def survey_responses(self, request: Request) -> Page:
        survey_id = _known_id(request.path_args[0], self._config.surveys)
        query = request.query
        page, per_page = query.integer("page", 1, 1), query.page_size("per_page")
        responses = data.survey_responses(self._config.seed, survey_id, self._config.survey_year_start)
        body = {"data": responses[_page_slice(page, per_page)], "page": page, "per_page": per_page,
                "total": len(responses)}
        return Page(body, "data")

    def surveys_search(self, request: Request) -> Page:
        """``/v3/surveys/search`` (POST, or GET with a body): the surveys, asked for by ``start_modified_at``,
        ``end_modified_at``, ``page``, ``per_page`` and ``sort``, each taken from the query, a JSON or form body,
        or a header of its name, as search and report endpoints variously take them (a header wins, then
        the body). A JSON body may nest them in a ``filter`` object, as search APIs nest their criteria."""
        body = body_fields(request)
        nested = body.pop("filter", None)
        places = {"query": dict(request.query.pairs), "body": body,
                  "filter": nested if isinstance(nested, dict) else {},
                  "header": {name: request.headers[name] for name in _SEARCH_PARAMETERS
                             if request.headers is not None and request.headers.get(name) is not None}}
        values: dict[str, Any] = {}
        for place, fields in places.items():
            values.update(fields)
            self._stats.count_search_parameters(place, fields)
        query = Query(urlencode({name: value for name, value in values.items() if isinstance(value, str | int)}))
        return self.surveys(Request(request.path, (), query, request.base_url), self._config.search_max_results)

    def charges(self, request: Request) -> Page:
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
                raise BadParameter("starting_after", f"no such object in this list: {after!r}")
            position = list(ids).index(int(after[3:])) + 1
        selected = ids[position:position + limit]
        config = self._config
        records = [data.charge(config.seed, survey_id, config.survey_year_start) for survey_id in selected]
        return Page({"object": "list", "data": records, "has_more": position + limit < len(ids),
                     "url": "/v1/charges"}, "data")

    def responses(self, request: Request) -> Page:
        """A survey's responses by query parameter (``survey_id``), as APIs that filter children that way do.
        The ``X-Survey-Id`` header must name the same survey: it shows that headers carry parent values."""
        survey = request.query.get("survey_id")
        header = request.headers.get("X-Survey-Id") if request.headers is not None else None
        if survey is None:
            raise BadParameter("survey_id", "required: the survey whose responses to list")
        if header != survey:
            raise BadParameter("survey_id", f"the X-Survey-Id header says {header!r}, the parameter {survey!r}")
        return self.survey_responses(Request(request.path, (survey,), request.query, request.base_url))

    def customers(self, request: Request) -> Page:
        query = request.query
        limit = query.page_size("limit")
        cursor = query.get("cursor")
        after = 0 if cursor is None else decode_token("customers", cursor, "cursor")
        last = min(after + limit, self._config.customers)
        records = [data.customer(self._config.seed, i) for i in range(after + 1, last + 1)]
        cycle = self._config.cursor_cycle
        if (request.fault == "cycle" or (cycle and after // limit + 1 >= cycle)) and after >= limit:
            last = after - limit  # one page back: the reader has been there already
        next_cursor = encode_token("customers", last) if last < self._config.customers else None
        return Page({"data": records, "next_cursor": next_cursor}, "data")

    def orders(self, request: Request) -> Page:
        query = request.query
        offset, limit = query.integer("offset", 0, 0), query.page_size("limit")
        config = self._config
        last = min(offset + limit, config.orders)
        records = [data.order(config.seed, i, config.customers) for i in range(offset + 1, last + 1)]
        return Page({"items": records, "total": config.orders, "offset": offset, "limit": limit}, "items")

    def issues(self, request: Request) -> Page:
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
        return Page(records, None, headers)

    def events(self, request: Request) -> Page:
        query = request.query
        page_size, after = query.page_size("page_size"), query.integer("after", 0, 0)
        last = min(after + page_size, self._config.events)
        records = [data.event(self._config.seed, i) for i in range(after + 1, last + 1)]
        headers = {}
        if last < self._config.events:
            next_url = query.url_with(request.base_url, request.path, "after", str(last))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Page(records, None, headers)


Endpoint = Callable[[Endpoints, Request], Page]

# (path pattern, route template used as the /stats by_path key, endpoint)
_ROUTES: tuple[tuple[re.Pattern[str], str, Endpoint], ...] = (
    (re.compile(r"/v1/prices"), "/v1/prices", Endpoints.prices),
    (re.compile(r"/v1/reports/prices/([^/]+)/([^/]+)"), "/v1/reports/prices/{start}/{end}", Endpoints.price_report),
    (re.compile(r"/v1/tickers"), "/v1/tickers", Endpoints.tickers),
    (re.compile(r"/v1/currencies"), "/v1/currencies", Endpoints.currencies),
    (re.compile(r"/v3/surveys"), "/v3/surveys", Endpoints.surveys),
    (re.compile(r"/v3/surveys/([^/]+)/responses"), "/v3/surveys/{id}/responses", Endpoints.survey_responses),
    (re.compile(r"/v3/responses"), "/v3/responses", Endpoints.responses),
    (re.compile(r"/v1/charges"), "/v1/charges", Endpoints.charges),
    (re.compile(r"/repos/demo/issues"), "/repos/demo/issues", Endpoints.issues),
    (re.compile(r"/v3/surveys/search"), "/v3/surveys/search", Endpoints.surveys_search),
    (re.compile(r"/v1/customers"), "/v1/customers", Endpoints.customers),
    (re.compile(r"/v1/orders"), "/v1/orders", Endpoints.orders),
    (re.compile(r"/v1/events"), "/v1/events", Endpoints.events),
)
UNMATCHED_PATH_KEY = "(unmatched)"
BODY_ENDPOINTS = (Endpoints.surveys_search,)  # answer a POST, and a GET that carries a body


_REPORT_MAX_DAYS = 366


def _ticker(query: Query) -> str | None:
    """The ``ticker`` a prices request narrows to, if any; an unknown one is refused, naming the known."""
    ticker = query.get("ticker")
    if ticker is not None and ticker not in data.TICKERS:
        raise BadParameter("ticker", f"unknown ticker {ticker!r}; known: {', '.join(data.TICKERS)}")
    return ticker


def _report_day(text: str, name: str) -> date:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise BadParameter(name, f"expected a day as YYYYMMDD, got {text!r}") from None


def route(path: str) -> tuple[str, Endpoint | None, tuple[str, ...]]:
    for pattern, template, endpoint in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return template, endpoint, match.groups()
    return UNMATCHED_PATH_KEY, None, ()
