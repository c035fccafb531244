"""Every paginator against the real demo API: all records, in order, each exactly once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.windows import Window
from sync_assets_tests.helpers import TOKEN, OpenReader, make_source, read_all

CUSTOMERS = {"name": "customers", "path": "/v1/customers", "records_path": "data",
             "paginator": {"type": "cursor", "token_path": "next_cursor", "param": "cursor",
                           "size_param": "limit", "size": 23}}
ORDERS = {"name": "orders", "path": "/v1/orders", "records_path": "items",
          "paginator": {"type": "offset", "limit": 31, "total_path": "total"}}
EVENTS = {"name": "events", "path": "/v1/events", "params": {"page_size": 17}, "paginator": {"type": "link_header"}}
SURVEYS = {"name": "surveys", "path": "/v3/surveys", "records_path": "data",
           "paginator": {"type": "page_number", "size": 40, "total_path": "total"}}
PRICES = {"name": "prices", "path": "/v1/prices", "records_path": "data", "params": {"limit": 4},
          "paginator": {"type": "next_url"},
          "incremental": {"cursor_field": "date", "start": "2024-01-01", "start_param": "start_date",
                          "end_param": "end_date", "end_inclusive": True, "param_format": "date"}}


def test_cursor_pagination(api: DemoApi, tmp_path: Path) -> None:
    records, stats = read_all(make_source(api, [CUSTOMERS]), "customers", tmp_path)
    assert records == data.all_customers(0, 230)
    assert stats.requests == 10  # 230 / 23: the empty cursor after page 10 ends it


def test_offset_pagination_stops_at_the_total(api: DemoApi, tmp_path: Path) -> None:
    records, stats = read_all(make_source(api, [ORDERS]), "orders", tmp_path)
    assert records == data.all_orders(0, 310, 230)
    assert stats.requests == 10  # 310 / 31 exactly: the total saves the empty 11th request


def test_offset_pagination_without_total_stops_at_a_short_page(api: DemoApi, tmp_path: Path) -> None:
    stream = {**ORDERS, "paginator": {"type": "offset", "limit": 100}}
    records, stats = read_all(make_source(api, [stream]), "orders", tmp_path)
    assert records == data.all_orders(0, 310, 230)
    assert stats.requests == 4


def test_link_header_pagination_of_a_bare_list(api: DemoApi, tmp_path: Path) -> None:
    records, stats = read_all(make_source(api, [EVENTS]), "events", tmp_path)
    assert records == data.all_events(0, 170)
    assert stats.requests == 10


def test_page_number_pagination(api: DemoApi, tmp_path: Path) -> None:
    records, stats = read_all(make_source(api, [SURVEYS]), "surveys", tmp_path)
    assert records == data.surveys_modified_between(0, 400)
    assert stats.requests == 10


def test_next_url_pagination_within_a_window(api: DemoApi, tmp_path: Path) -> None:
    window = Window(datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
    records, stats = read_all(make_source(api, [PRICES]), "prices", tmp_path, window=window)
    assert records == data.price_rows(0, date(2024, 1, 5), date(2024, 1, 7))
    assert stats.requests == 4  # 15 rows, 4 a page


def test_a_read_resumes_from_any_page_token(api: DemoApi, open_reader: OpenReader) -> None:
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    pages = reader.pages(RequestStats())
    first = [next(pages) for _ in range(3)]
    resumed = list(reader.pages(RequestStats(), start_token=first[-1].next_token))
    records = [r for page in first + resumed for r in page.records]
    assert records == data.all_customers(0, 230)
    assert resumed[-1].is_last and not first[-1].is_last


@pytest.mark.parametrize("stream", [PRICES, EVENTS])
def test_next_url_tokens_never_hold_the_api_key(
    api: DemoApi, open_reader: OpenReader, stream: dict[str, object]
) -> None:
    source = make_source(api, [stream], auth={"type": "api_key", "key": TOKEN, "location": "query", "name": "api_key"})
    window = Window(datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)) if stream is PRICES else None
    pages = list(open_reader(source, str(stream["name"])).pages(RequestStats(), window=window))
    tokens = [str(p.next_token) for p in pages if p.next_token]
    assert len(tokens) >= 3 and all(TOKEN not in t and "api_key" not in t for t in tokens)


def test_a_read_that_reaches_where_a_running_read_began_is_no_cycle(api: DemoApi, open_reader: OpenReader) -> None:
    """After a kill, a refresh's chunk resumes while the next chunk, whose start it handed over before dying,
    is read at the same time; both share the refresh's followed tokens."""
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    tokens = [page.next_token for page in reader.pages(RequestStats())]  # tokens[i] leads to page i + 2
    shared: set[int] = set()
    later = reader.pages(RequestStats(), start_token=tokens[2], followed=shared)  # from page 4
    next(later)
    earlier = reader.pages(RequestStats(), start_token=tokens[0], followed=shared)  # pages 2 and 3, then page 4
    assert [next(earlier).next_token, next(earlier).next_token] == [tokens[1], tokens[2]]
    with pytest.raises(SyncSystemError, match="already followed"):
        next(earlier)  # following it further would read page 4 twice: that is the cycle


def test_a_paginator_that_does_not_advance_is_stopped(demo_api: object, api: DemoApi, tmp_path: Path) -> None:
    # The page parameter is named wrong, so the API serves page 1 forever: a real misconfiguration.
    stream = {**CUSTOMERS, "paginator": {"type": "cursor", "token_path": "next_cursor", "param": "cursr",
                                         "size_param": "limit", "size": 23}}
    with pytest.raises(SyncSystemError, match="did not advance"):
        read_all(make_source(api, [stream]), "customers", tmp_path)


def test_pagination_that_goes_round_in_a_cycle_is_stopped_at_the_first_repeat(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    api = demo_api(customers=230, cursor_cycle=3)  # page 3 points back to page 2: tokens A, B, A, B, ...
    with pytest.raises(SyncSystemError, match=r"'customers' came back to page token .* already followed") as error:
        read_all(make_source(api, [CUSTOMERS]), "customers", tmp_path)
    assert TOKEN not in str(error.value)
    assert requests.get(f"{api.url}/stats", timeout=5).json()["requests"] == 3  # none for a token followed before


@pytest.mark.parametrize("stream", [EVENTS, PRICES])
def test_a_saved_next_page_url_resumes_where_the_api_is_now(
    demo_api: Callable[..., DemoApi], open_reader: OpenReader, stream: dict[str, object]
) -> None:
    """A checkpoint holds the API's absolute next URL; if the API moved since (a new host in base_url), the
    read resumes there, and never asks the old address."""
    before, after = demo_api(), demo_api()  # the same data, two addresses
    name = str(stream["name"])
    window = Window(datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 9, tzinfo=UTC)) if stream is PRICES else None
    pages = open_reader(make_source(before, [stream]), name).pages(RequestStats(), window=window)
    first = [next(pages), next(pages)]
    saved = first[-1].next_token
    assert isinstance(saved, str) and saved.startswith(before.url)
    asked_before = before.stats()["requests"]
    moved = make_source(after, [stream])
    resumed = list(open_reader(moved, name).pages(RequestStats(), window=window, start_token=saved))
    assert before.stats()["requests"] == asked_before and after.stats()["requests"] == len(resumed)
    whole = [r for p in open_reader(moved, name).pages(RequestStats(), window=window) for r in p.records]
    assert [r for page in first + resumed for r in page.records] == whole and len(whole) > 8


def test_a_next_url_keeps_the_path_a_proxy_puts_before_the_endpoint() -> None:
    from sync_assets.pagination import rebased

    saved = "http://old:8000/v1/events?after=17"
    assert rebased(saved, "https://gateway/demo/v1/events") == "https://gateway/demo/v1/events?after=17"
    assert rebased("https://gateway/demo/v1/events?after=3", "http://new:9/v1/events") == "http://new:9/v1/events?after=3"
    assert rebased(saved, "http://old:8000/v2/other") == saved  # the same host: the API's own link, as it was
