"""The demo API over real loopback HTTP: pagination walks must equal the ground truth of the data module,
and auth, rate limiting, faults and /stats must behave the way the sync code and benchmarks rely on."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sync_assets.demo_api import (
    MIDNIGHT_SURVEY_EVERY,
    SURVEY_OFFSETS,
    TICKERS,
    DemoApi,
    DemoApiConfig,
    all_customers,
    all_events,
    all_orders,
    all_surveys,
    customer,
    parse_instant,
    price_row_count,
    price_rows,
    survey_response_count,
    survey_responses,
    surveys_modified_between,
)
from sync_assets.demo_api.command import add_arguments, run
from sync_assets.demo_api.config import parse_rate_limit

SEED = 7
SIZES: dict[str, Any] = {"customers": 53, "orders": 47, "events": 41, "surveys": 83}
TOKEN = "s3cret-token"
WRONG = "WRONG-credential-4711"
REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_PAGES = 50  # walks fail instead of looping forever if the server never signals the last page

MakeApi = Callable[..., DemoApi]


@pytest.fixture(scope="module")
def api() -> Iterator[DemoApi]:
    """One shared, open server for the tests that only read data."""
    with DemoApi(DemoApiConfig(seed=SEED, **SIZES)) as server:
        yield server


@pytest.fixture(scope="module")
def secured_api() -> Iterator[DemoApi]:
    with DemoApi(DemoApiConfig(seed=SEED, token=TOKEN, **SIZES)) as server:
        yield server


@pytest.fixture
def make_api() -> Iterator[MakeApi]:
    """Fresh servers for tests that depend on counters, windows or the fault stream."""
    started: list[DemoApi] = []

    def make(**overrides: Any) -> DemoApi:
        settings: dict[str, Any] = {"seed": SEED, **SIZES, **overrides}
        server = DemoApi(DemoApiConfig(**settings)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def get_json(url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    response = requests.get(url, params=params, timeout=5, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


def is_midnight_utc(instant: datetime) -> bool:
    return instant.astimezone(UTC).time() == datetime.min.time()


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_latency_can_change_while_the_api_serves(make_api: MakeApi) -> None:
    api = make_api()

    def timed() -> float:
        started = time.monotonic()
        get_json(f"{api.url}/v1/customers", {"limit": 1})
        return time.monotonic() - started

    api.set_latency(400)
    assert timed() >= 0.4
    api.set_latency(0)
    assert timed() < 0.4


# --- pagination walks equal the ground truth ----------------------------------------------------------


@pytest.mark.parametrize("ticker", [None, "MSFT"])
def test_prices_next_url_walk_returns_every_row_of_the_inclusive_window(
    api: DemoApi, ticker: str | None
) -> None:
    params = {"start_date": "2023-12-29", "end_date": "2024-01-04", "limit": "4"}
    if ticker:
        params["ticker"] = ticker
    rows: list[dict[str, Any]] = []
    pages = 0
    body = get_json(f"{api.url}/v1/prices", params)
    while True:
        rows += body["data"]
        pages += 1
        assert pages <= MAX_PAGES
        if body["next"] is None:
            break
        assert {key: values for key, values in query_of(body["next"]).items() if key != "page_token"} == {
            key: [value] for key, value in params.items()
        }
        body = get_json(body["next"])

    expected = price_rows(SEED, date(2023, 12, 29), date(2024, 1, 4), ticker)
    assert rows == expected
    assert len(rows) == 7 * (1 if ticker else len(TICKERS))
    assert pages == math.ceil(len(rows) / 4)
    assert rows[-1]["date"] == "2024-01-04"  # end_date is inclusive
    assert [(row["date"], TICKERS.index(row["ticker"])) for row in rows] == sorted(
        (row["date"], TICKERS.index(row["ticker"])) for row in rows
    )


def test_prices_cover_every_calendar_day_from_2020_until_2100(api: DemoApi) -> None:
    early = get_json(f"{api.url}/v1/prices", {"start_date": "2019-12-30", "end_date": "2020-01-01"})
    assert [row["date"] for row in early["data"]] == ["2020-01-01"] * len(TICKERS)
    weekend = get_json(f"{api.url}/v1/prices", {"ticker": "AAPL", "start_date": "2024-01-06",
                                                 "end_date": "2024-01-07"})
    assert [row["date"] for row in weekend["data"]] == ["2024-01-06", "2024-01-07"]
    late = get_json(f"{api.url}/v1/prices", {"ticker": "NVDA", "start_date": "2100-12-31",
                                              "end_date": "2100-12-31"})
    assert late == {"data": price_rows(SEED, date(2100, 12, 31), date(2100, 12, 31), "NVDA"), "next": None}
    assert late["data"][0]["price"] > 0


def test_surveys_page_walk_returns_all_surveys_sorted_by_modification_instant(api: DemoApi) -> None:
    records: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get_json(f"{api.url}/v3/surveys", {"page": page, "per_page": 10})
        assert (body["page"], body["per_page"], body["total"]) == (page, 10, SIZES["surveys"])
        if not body["data"]:
            break
        records += body["data"]
        page += 1
        assert page <= MAX_PAGES
    assert page == math.ceil(SIZES["surveys"] / 10) + 1
    assert records == surveys_modified_between(SEED, SIZES["surveys"])
    assert sorted(record["id"] for record in records) == list(range(1, SIZES["surveys"] + 1))
    assert [record["id"] for record in records] != sorted(record["id"] for record in records)


def test_the_surveys_year_can_end_today_as_the_demo_serves_it(make_api: MakeApi) -> None:
    """``--survey-year-start recent``: surveys are modified over the 366 days up to today, so the demo's recent
    partitions hold data; the same ground truth functions know them."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    recent = parser.parse_args(["--survey-year-start", "recent"]).survey_year_start
    assert recent == datetime.now(UTC).date() - timedelta(days=365)
    assert parser.parse_args([]).survey_year_start == date(2024, 1, 1)  # the tests' fixed year by default
    server = make_api(survey_year_start=recent)
    start = datetime(recent.year, recent.month, recent.day, tzinfo=UTC) + timedelta(days=300)
    window = {"start_modified_at": start.isoformat(), "end_modified_at": (start + timedelta(days=60)).isoformat()}
    served = fetch_surveys(server, **window)
    assert served and served == surveys_modified_between(SEED, SIZES["surveys"], start, start + timedelta(days=60),
                                                         year_start=recent)
    assert max(parse_instant(r["date_modified"]) for r in surveys_modified_between(
        SEED, SIZES["surveys"], year_start=recent)) < datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(SystemExit):
        parser.parse_args(["--survey-year-start", "last-year"])


def fetch_surveys(api: DemoApi, **window: str) -> list[dict[str, Any]]:
    body = get_json(f"{api.url}/v3/surveys", {"per_page": 1000, **window})
    assert body["total"] == len(body["data"])
    return list(body["data"])


def test_surveys_window_is_end_exclusive_on_the_instant_whatever_the_offset(api: DemoApi) -> None:
    # a survey modified exactly at midnight UTC, rendered with a non-UTC offset
    midnight = next(
        s
        for s in all_surveys(SEED, SIZES["surveys"])
        if is_midnight_utc(parse_instant(s["date_modified"]))
        and not s["date_modified"].endswith(("Z", "+00:00"))
    )
    edge = parse_instant(midnight["date_modified"])
    renderings = [
        edge.astimezone(timezone(timedelta(hours=2))).isoformat(),
        edge.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        edge.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        edge.astimezone(UTC).date().isoformat(),  # a bare date means midnight UTC
    ]
    for text in renderings:
        before = fetch_surveys(api, end_modified_at=text)
        after = fetch_surveys(api, start_modified_at=text)
        assert midnight not in before, text
        assert midnight in after, text
        assert before == surveys_modified_between(SEED, SIZES["surveys"], None, edge)
        assert after == surveys_modified_between(SEED, SIZES["surveys"], edge, None)
        assert len(before) + len(after) == SIZES["surveys"]

    next_day = (edge + timedelta(days=1)).isoformat()
    one_day = fetch_surveys(api, start_modified_at=renderings[1], end_modified_at=next_day)
    assert one_day[0] == midnight
    assert all(edge <= parse_instant(s["date_modified"]) < edge + timedelta(days=1) for s in one_day)

    half_second_later = (edge + timedelta(milliseconds=500)).isoformat()
    assert midnight not in fetch_surveys(api, start_modified_at=half_second_later)
    assert midnight in fetch_surveys(api, end_modified_at=half_second_later)


def test_survey_responses_substream_walk_matches_ground_truth(api: DemoApi) -> None:
    multi_page = 0
    for survey_id in range(1, SIZES["surveys"] + 1):
        responses: list[dict[str, Any]] = []
        page = 1
        while True:
            body = get_json(f"{api.url}/v3/surveys/{survey_id}/responses", {"page": page, "per_page": 5})
            if not body["data"]:
                break
            responses += body["data"]
            page += 1
            assert page <= MAX_PAGES
        assert body["total"] == survey_response_count(SEED, survey_id)
        assert responses == survey_responses(SEED, survey_id)
        multi_page += page > 2
    assert multi_page > 0  # the walk did cross page boundaries


@pytest.mark.parametrize("survey_id", ["0", str(SIZES["surveys"] + 1), "abc"])
def test_responses_of_an_unknown_survey_are_404(api: DemoApi, survey_id: str) -> None:
    response = requests.get(f"{api.url}/v3/surveys/{survey_id}/responses", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}


def test_customers_cursor_walk_matches_ground_truth_and_cursor_is_opaque(api: DemoApi) -> None:
    records: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 10}
    cursors = []
    page_sizes = []
    while True:
        body = get_json(f"{api.url}/v1/customers", params)
        records += body["data"]
        page_sizes.append(len(body["data"]))
        if body["next_cursor"] is None:
            break
        cursors.append(body["next_cursor"])
        assert len(cursors) <= MAX_PAGES
        params = {"limit": 10, "cursor": body["next_cursor"]}
    assert records == all_customers(SEED, SIZES["customers"])
    assert page_sizes == [10] * (SIZES["customers"] // 10) + [SIZES["customers"] % 10]
    for cursor in cursors:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
        assert not cursor.isdigit()


@pytest.mark.parametrize("mangle", ["flip_char", "garbage", "forged", "other_endpoint_token"])
def test_garbled_cursors_are_rejected(api: DemoApi, mangle: str) -> None:
    cursor = get_json(f"{api.url}/v1/customers", {"limit": 5})["next_cursor"]
    prices_next = get_json(f"{api.url}/v1/prices", {"start_date": "2024-01-01", "end_date": "2024-01-09",
                                                     "limit": 5})["next"]
    bad = {
        "flip_char": cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:],
        "garbage": "!!not-a-cursor!!",
        # base64 of {"after": 5, "check": "000000000000"}
        "forged": "eyJhZnRlciI6IDUsICJjaGVjayI6ICIwMDAwMDAwMDAwMDAifQ",
        "other_endpoint_token": query_of(prices_next)["page_token"][0],
    }[mangle]
    response = requests.get(f"{api.url}/v1/customers", params={"cursor": bad}, timeout=5)
    assert response.status_code == 400
    assert response.json()["parameter"] == "cursor"


def test_orders_offset_walk_matches_ground_truth(api: DemoApi) -> None:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = get_json(f"{api.url}/v1/orders", {"offset": offset, "limit": 10})
        assert (body["total"], body["offset"], body["limit"]) == (SIZES["orders"], offset, 10)
        if not body["items"]:
            break
        items += body["items"]
        offset += 10
        assert offset <= 10 * MAX_PAGES
    assert items == all_orders(SEED, SIZES["orders"], SIZES["customers"])
    assert all(1 <= item["customer_id"] <= SIZES["customers"] for item in items)


def test_events_link_header_walk_matches_ground_truth(api: DemoApi) -> None:
    events: list[dict[str, Any]] = []
    url: str | None = f"{api.url}/v1/events?page_size=10&source=demo"
    pages = 0
    while url:
        response = requests.get(url, timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body, list)
        events += body
        pages += 1
        assert pages <= MAX_PAGES
        url = response.links.get("next", {}).get("url")
        if url:
            assert url.startswith(api.url)
            assert query_of(url)["source"] == ["demo"]
            assert query_of(url)["after"] == [str(events[-1]["id"])]
        else:
            assert "Link" not in response.headers
    assert events == all_events(SEED, SIZES["events"])
    assert pages == math.ceil(SIZES["events"] / 10)


# --- auth -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        {"headers": {"X-API-Key": TOKEN}},
        {"params": {"api_key": TOKEN}},
        {"auth": ("any-user", TOKEN)},
    ],
    ids=["bearer", "x-api-key", "query", "basic"],
)
def test_each_credential_style_is_accepted(secured_api: DemoApi, credentials: dict[str, Any]) -> None:
    response = requests.get(f"{secured_api.url}/v1/orders", timeout=5, **credentials)
    assert response.status_code == 200
    assert len(response.json()["items"]) == min(100, SIZES["orders"])


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"headers": {"Authorization": f"Bearer {WRONG}"}},
        {"headers": {"X-API-Key": WRONG}},
        {"params": {"api_key": WRONG}},
        {"auth": ("any-user", WRONG)},
        {"auth": (TOKEN, WRONG)},
        {"headers": {"Authorization": "Basic %%%not-base64"}},
    ],
    ids=["missing", "bearer", "x-api-key", "query", "basic", "basic-token-as-user", "basic-garbled"],
)
def test_missing_or_wrong_credentials_get_401_without_echo(
    secured_api: DemoApi, credentials: dict[str, Any]
) -> None:
    response = requests.get(f"{secured_api.url}/v1/customers", timeout=5, **credentials)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="demo"'
    assert response.json()["error"] == "unauthorized"
    assert response.json()["message"]
    assert WRONG not in response.text
    assert TOKEN not in response.text


def test_next_links_carry_an_api_key_sent_in_the_query(secured_api: DemoApi) -> None:
    params = {"start_date": "2024-01-01", "end_date": "2024-01-02", "limit": 3, "api_key": TOKEN}
    next_url = get_json(f"{secured_api.url}/v1/prices", params)["next"]
    assert query_of(next_url)["api_key"] == [TOKEN]
    assert len(get_json(next_url)["data"]) == 3  # the link alone authenticates

    events = requests.get(f"{secured_api.url}/v1/events?page_size=5&api_key={TOKEN}", timeout=5)
    link = events.links["next"]["url"]
    assert query_of(link)["api_key"] == [TOKEN]
    assert [event["id"] for event in get_json(link)] == [6, 7, 8, 9, 10]


def test_401s_are_counted_and_stats_need_no_credentials(make_api: MakeApi) -> None:
    api = make_api(token=TOKEN)
    assert requests.get(f"{api.url}/v1/events", timeout=5).status_code == 401
    assert requests.get(f"{api.url}/v1/events", params={"api_key": TOKEN}, timeout=5).status_code == 200
    stats = get_json(f"{api.url}/stats")
    assert (stats["requests"], stats["responses_401"], stats["by_path"]) == (2, 1, {"/v1/events": 2})
    assert stats["max_requests_in_window"] == 1  # only requests past auth count toward windows


# --- rate limit -----------------------------------------------------------------------------------------


def test_burst_over_the_limit_gets_429_with_retry_after(make_api: MakeApi) -> None:
    api = make_api(rate_limit=(5, 2.0))
    with requests.Session() as session:
        responses = [session.get(f"{api.url}/v1/orders", params={"limit": 1}, timeout=5) for _ in range(8)]
    assert [response.status_code for response in responses] == [200] * 5 + [429] * 3
    for response in responses[5:]:
        body = response.json()
        assert body["error"] == "rate_limited"
        assert 1.0 < body["retry_after"] <= 2.0
        assert response.headers["Retry-After"] == str(math.ceil(body["retry_after"]))
    stats = api.stats()
    assert stats["requests"] == 8
    assert stats["responses_429"] == 3
    assert stats["max_requests_in_window"] == 8  # received, not just accepted
    assert stats["rate_limit"] == {"requests": 5, "seconds": 2.0}
    assert get_json(f"{api.url}/stats") == stats


def test_rejected_requests_do_not_extend_the_window(make_api: MakeApi) -> None:
    api = make_api(rate_limit=(2, 0.5))
    with requests.Session() as session:
        def status() -> int:
            return session.get(f"{api.url}/v1/events", params={"page_size": 1}, timeout=5).status_code

        assert status() == 200
        first_done = time.monotonic()
        time.sleep(0.25)
        assert status() == 200
        rejected = session.get(f"{api.url}/v1/events", timeout=5)
        assert rejected.status_code == 429
        assert 0 < rejected.json()["retry_after"] <= 0.26  # until the *first* request leaves the window
        time.sleep(max(0.0, first_done + 0.6 - time.monotonic()))
        assert status() == 200  # the window holds the second request only; the 429 did not count


def test_max_requests_in_window_uses_one_second_without_rate_limit(make_api: MakeApi) -> None:
    api = make_api()
    with requests.Session() as session:
        for _ in range(6):
            assert session.get(f"{api.url}/v1/customers", params={"limit": 1}, timeout=5).status_code == 200
    stats = api.stats()
    assert (stats["max_requests_in_window"], stats["rate_limit"], stats["responses_429"]) == (6, None, 0)


def test_stats_reset_zeroes_counters_and_windows(make_api: MakeApi) -> None:
    api = make_api(rate_limit=(2, 30.0))
    with requests.Session() as session:
        statuses = [session.get(f"{api.url}/v3/surveys/3/responses", timeout=5).status_code for _ in range(3)]
        session.get(f"{api.url}/nope", timeout=5)
        assert statuses == [200, 200, 429]
        assert api.stats()["by_path"] == {"/v3/surveys/{id}/responses": 3, "(unmatched)": 1}

        reset = session.post(f"{api.url}/stats/reset", timeout=5).json()
        assert reset == {"requests": 0, "responses_429": 0, "responses_500": 0, "responses_401": 0,
                         "responses_403": 0, "max_requests_in_window": 0, "first_arrival_at": None,
                         "last_arrival_at": None, "requests_in_pause": 0, "requests_in_pause_examples": [],
                         "faults_injected": {}, "tokens_issued": 0, "token_requests": 0,
                         "rate_limit": {"requests": 2, "seconds": 30.0},
                         "by_path": {}, "search_parameters": {}}
        assert session.get(f"{api.url}/v1/orders", timeout=5).status_code == 200  # the window was cleared
    assert api.stats()["requests"] == 1


# --- latency and faults ---------------------------------------------------------------------------------


def test_latency_applies_to_endpoints_but_not_to_stats(make_api: MakeApi) -> None:
    api = make_api(latency_ms=150)
    started = time.monotonic()
    get_json(f"{api.url}/v1/events", {"page_size": 1})
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    get_json(f"{api.url}/stats")
    assert time.monotonic() - started < 0.1


def test_fail_rate_follows_the_seeded_stream(make_api: MakeApi) -> None:
    def statuses(api: DemoApi) -> list[int]:
        with requests.Session() as session:
            return [session.get(f"{api.url}/v1/events", params={"page_size": 1}, timeout=5).status_code
                    for _ in range(80)]

    first = statuses(make_api(fail_rate=0.5, seed=11))
    stream = random.Random(11)
    assert first == [500 if stream.random() < 0.5 else 200 for _ in range(80)]
    assert 25 <= first.count(500) <= 55
    assert statuses(make_api(fail_rate=0.5, seed=11)) == first
    assert statuses(make_api(fail_rate=0.5, seed=12)) != first


def test_failures_answer_500_internal_and_are_counted(make_api: MakeApi) -> None:
    api = make_api(fail_rate=1.0)
    response = requests.get(f"{api.url}/v1/orders", timeout=5)
    assert (response.status_code, response.json()) == (500, {"error": "internal"})
    assert api.stats()["responses_500"] == 1


RECORD_ENDPOINTS = [
    ("/v1/prices", {"start_date": "2024-02-01", "end_date": "2024-02-03", "limit": 4}, "data"),
    ("/v3/surveys", {"per_page": 5}, "data"),
    ("/v3/surveys/2/responses", {"per_page": 2}, "data"),
    ("/v1/customers", {"limit": 3}, "data"),
    ("/v1/orders", {"limit": 3}, "items"),
    ("/v1/events", {"page_size": 3}, None),
]


@pytest.mark.parametrize(("path", "params", "records_key"), RECORD_ENDPOINTS)
def test_fault_not_list_puts_an_object_where_the_records_were(
    api: DemoApi, path: str, params: dict[str, Any], records_key: str | None
) -> None:
    normal = requests.get(f"{api.url}{path}", params=params, timeout=5)
    faulty = requests.get(f"{api.url}{path}", params={**params, "_fault": "not_list"}, timeout=5)
    assert faulty.status_code == 200
    normal_body, faulty_body = normal.json(), faulty.json()
    normal_records = normal_body if records_key is None else normal_body[records_key]
    faulty_records = faulty_body if records_key is None else faulty_body[records_key]
    assert isinstance(faulty_records, dict)
    assert list(faulty_records.values()) == normal_records
    if records_key is not None:  # the envelope, pagination included, is otherwise untouched
        assert {k: v for k, v in faulty_body.items() if k not in (records_key, "next")} == {
            k: v for k, v in normal_body.items() if k not in (records_key, "next")
        }
    assert ("next" in faulty.links) == ("next" in normal.links)


@pytest.mark.parametrize(("path", "params", "records_key"), RECORD_ENDPOINTS)
def test_fault_malformed_truncates_the_json(
    api: DemoApi, path: str, params: dict[str, Any], records_key: str | None
) -> None:
    normal = requests.get(f"{api.url}{path}", params=params, timeout=5)
    faulty = requests.get(f"{api.url}{path}", params={**params, "_fault": "malformed"}, timeout=5)
    assert faulty.status_code == 200
    assert faulty.headers["Content-Type"] == "application/json"
    assert 0 < len(faulty.content) < len(normal.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(faulty.content)


def test_fault_500_and_unknown_fault(api: DemoApi) -> None:
    forced = requests.get(f"{api.url}/v1/orders", params={"_fault": "500"}, timeout=5)
    assert (forced.status_code, forced.json()) == (500, {"error": "internal"})
    unknown = requests.get(f"{api.url}/v1/orders", params={"_fault": "explode"}, timeout=5)
    assert unknown.status_code == 400
    assert unknown.json()["parameter"] == "_fault"


def test_fault_next_links_are_those_of_the_normal_page(api: DemoApi) -> None:
    params = {"start_date": "2024-02-01", "end_date": "2024-02-03", "limit": 4}
    normal = get_json(f"{api.url}/v1/prices", params)["next"]
    faulty = get_json(f"{api.url}/v1/prices", {**params, "_fault": "not_list"})["next"]
    assert {key: value for key, value in query_of(faulty).items() if key != "_fault"} == query_of(normal)


@pytest.mark.slow
def test_fault_slow_answers_normally_after_two_seconds(api: DemoApi) -> None:
    params = {"limit": 2, "cursor": get_json(f"{api.url}/v1/customers", {"limit": 2})["next_cursor"]}
    started = time.monotonic()
    slow = get_json(f"{api.url}/v1/customers", {**params, "_fault": "slow"})
    assert time.monotonic() - started >= 2.0
    assert slow == get_json(f"{api.url}/v1/customers", params)
    assert [record["id"] for record in slow["data"]] == [3, 4]


# --- errors ---------------------------------------------------------------------------------------------

PRICE_WINDOW = {"start_date": "2024-01-01", "end_date": "2024-01-09"}


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/v1/prices", {"end_date": "2024-01-09"}, "start_date"),
        ("/v1/prices", {"start_date": "2024-13-01", "end_date": "2024-01-09"}, "start_date"),
        ("/v1/prices", {"start_date": "2024-01-10", "end_date": "2024-01-09"}, "end_date"),
        ("/v1/prices", {**PRICE_WINDOW, "ticker": "IBM"}, "ticker"),
        ("/v1/prices", {**PRICE_WINDOW, "limit": "1001"}, "limit"),
        ("/v1/prices", {**PRICE_WINDOW, "page_token": "nope"}, "page_token"),
        ("/v3/surveys", {"per_page": "1001"}, "per_page"),
        ("/v3/surveys", {"page": "0"}, "page"),
        ("/v3/surveys", {"start_modified_at": "2024-03-01T00:00:00"}, "start_modified_at"),
        ("/v3/surveys", {"end_modified_at": "yesterday"}, "end_modified_at"),
        ("/v3/surveys/1/responses", {"per_page": "0"}, "per_page"),
        ("/v1/customers", {"limit": "abc"}, "limit"),
        ("/v1/orders", {"offset": "-1"}, "offset"),
        ("/v1/events", {"after": "-3"}, "after"),
        ("/v1/events", {"page_size": "1001"}, "page_size"),
    ],
)
def test_bad_parameters_get_400_naming_the_parameter(
    api: DemoApi, path: str, params: dict[str, str], parameter: str
) -> None:
    response = requests.get(f"{api.url}{path}", params=params, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["parameter"]) == ("bad_request", parameter)
    assert f"'{parameter}'" in body["message"]


def test_unencoded_plus_in_an_offset_gets_a_hint(api: DemoApi) -> None:
    response = requests.get(f"{api.url}/v3/surveys?start_modified_at=2024-03-01T00:00:00+02:00", timeout=5)
    assert response.status_code == 400
    assert "%2B" in response.json()["message"]


def test_unknown_path_is_404_and_wrong_method_405(api: DemoApi) -> None:
    missing = requests.get(f"{api.url}/v2/customers", timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})
    post = requests.post(f"{api.url}/v1/customers", json={"id": 1}, timeout=5)
    assert post.status_code == 405
    assert post.headers["Allow"] == "GET"


# --- connections and lifecycle --------------------------------------------------------------------------


def test_connections_are_kept_alive(api: DemoApi) -> None:
    host, port = urlsplit(api.url).hostname, urlsplit(api.url).port
    connection = http.client.HTTPConnection(str(host), port, timeout=5)
    try:
        connection.request("GET", "/v1/orders?limit=2")
        socket_used = connection.sock
        for _ in range(3):
            response = connection.getresponse()
            body = response.read()
            assert (response.status, response.version) == (200, 11)
            assert response.getheader("Content-Length") == str(len(body))
            assert connection.sock is socket_used
            connection.request("GET", "/v1/events?page_size=2")
        connection.getresponse().read()
    finally:
        connection.close()


def test_stop_closes_idle_keep_alive_connections(make_api: MakeApi) -> None:
    api = make_api()
    with requests.Session() as session:
        assert session.get(f"{api.url}/v1/orders", timeout=5).status_code == 200
        api.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{api.url}/v1/orders", timeout=5)


# --- rate limit parsing and command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("10/1", (10, 1.0)), ("120/60", (120, 60.0)), ("5/0.5", (5, 0.5))]
)
def test_parse_rate_limit(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    "text", ["", "10", "10/", "/1", "a/1", "10/x", "1.5/1", "0/1", "-1/1", "10/0", "10/-1", "10/inf", "1/nan"]
)
def test_parse_rate_limit_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate_limit(text)


def test_cli_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--rate-limit", "10/2", "--fail-rate", "0.1", "--customers", "5", "--token", "t"]
    )
    assert (args.rate_limit, args.fail_rate, args.customers, args.token) == ((10, 2.0), 0.1, 5, "t")
    assert (args.host, args.port, args.orders) == ("127.0.0.1", 8765, 2500)
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate-limit", "ten"])
    assert "N/SECONDS" in capsys.readouterr().err
    assert run(parser.parse_args(["--port", "0", "--fail-rate", "2"])) == 2
    assert "fail_rate" in capsys.readouterr().err


@pytest.mark.slow
def test_module_cli_prints_its_url_serves_and_stops_on_sigterm() -> None:
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    command = ["-m", "sync_assets.demo_api.server", "--port", "0", "--customers", "3", "--token", TOKEN]
    process = subprocess.Popen(
        [sys.executable, *command], env={**os.environ, "PYTHONPATH": python_path}, cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"demo API listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        body = get_json(f"{match.group(1)}/v1/customers", headers={"Authorization": f"Bearer {TOKEN}"})
        assert body == {"data": [customer(0, i) for i in (1, 2, 3)], "next_cursor": None}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        process.kill()
    assert process.returncode == 0
    assert stderr == ""


# --- the data module itself -----------------------------------------------------------------------------


def test_data_is_deterministic_per_seed() -> None:
    assert all_customers(3, 20) == all_customers(3, 20)
    assert all_customers(3, 20) != all_customers(4, 20)
    day = date(2024, 1, 1)
    assert price_rows(3, day, day) != price_rows(4, day, day)
    assert price_row_count(date(2024, 1, 1), date(2024, 1, 31)) == 31 * len(TICKERS)


def test_survey_dates_spread_over_2024_with_varied_offsets_and_midnights() -> None:
    surveys = all_surveys(SEED, 2000)
    instants = [parse_instant(s["date_modified"]) for s in surveys]
    year_start, year_end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    assert all(year_start <= instant < year_end for instant in instants)
    offsets_used = {next(o for o in SURVEY_OFFSETS if s["date_modified"].endswith(o)) for s in surveys}
    assert offsets_used == set(SURVEY_OFFSETS)
    midnights = [instant for instant in instants if is_midnight_utc(instant)]
    assert len(midnights) >= 2000 // MIDNIGHT_SURVEY_EVERY
    assert len(midnights) < 2000 // MIDNIGHT_SURVEY_EVERY + 5
    assert parse_instant("2024-03-01T01:30:00+02:00") == datetime(2024, 2, 29, 23, 30, tzinfo=UTC)
    assert parse_instant("2024-03-05") == datetime(2024, 3, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_instant("2024-03-05T00:00:00")


def test_survey_responses_have_consistent_shape() -> None:
    counts = [survey_response_count(SEED, survey_id) for survey_id in range(1, 200)]
    assert min(counts) == 0
    assert max(counts) == 12
    responses = survey_responses(SEED, counts.index(max(counts)) + 1)
    assert [r["id"] for r in responses] == [f"{counts.index(12) + 1}-{n}" for n in range(1, 13)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["submitted_at"]) for r in responses)
    assert all(1 <= answer <= 5 for r in responses for answer in r["answers"])


def test_faults_on_the_wire_reset_cut_off_and_trickle(api: DemoApi) -> None:
    params = {"limit": 50}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api.url}/v1/customers", params={**params, "_fault": "reset"}, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # fewer bytes than its Content-Length
        requests.get(f"{api.url}/v1/customers", params={**params, "_fault": "truncated"}, timeout=5)
    started = time.monotonic()
    slow = get_json(f"{api.url}/v1/customers", {**params, "_fault": "slow_body"})
    assert time.monotonic() - started >= 0.4
    assert slow == get_json(f"{api.url}/v1/customers", params)


def test_fault_cycle_points_the_cursor_one_page_back(api: DemoApi) -> None:
    first = get_json(f"{api.url}/v1/customers", {"limit": 2})
    second = get_json(f"{api.url}/v1/customers", {"limit": 2, "cursor": first["next_cursor"]})
    back = get_json(f"{api.url}/v1/customers", {"limit": 2, "cursor": second["next_cursor"], "_fault": "cycle"})
    assert [r["id"] for r in back["data"]] == [5, 6] and back["next_cursor"] == first["next_cursor"]


def _hammer(api: DemoApi, count: int, honour_retry_after: bool) -> dict[str, Any]:
    session = requests.Session()
    for _ in range(count):
        try:
            reply = session.get(f"{api.url}/v1/orders", params={"limit": 5}, timeout=5)
        except requests.RequestException:
            session = requests.Session()
            continue
        if reply.status_code == 429 and honour_retry_after:
            time.sleep(float(reply.headers["Retry-After"]))
    return api.stats()


@pytest.mark.slow  # 400 requests through real pauses and slow bodies: about 13 s
@pytest.mark.parametrize("honour_retry_after", [True, False])
def test_chaos_mixes_faults_from_the_seed_and_counts_requests_sent_during_a_pause(
    demo_api: Callable[..., DemoApi], honour_retry_after: bool
) -> None:
    api = demo_api(token=None, chaos=True, seed=11)
    stats = _hammer(api, 400, honour_retry_after)
    faults = stats["faults_injected"]
    assert 0.12 < faults["5xx"] / 400 < 0.28 and faults["reset"] and faults["truncated"] and faults["slow_body"]
    assert faults["burst"] and stats["responses_429"] >= faults["burst"]
    if honour_retry_after:
        assert stats["requests_in_pause"] == 0, stats["requests_in_pause_examples"]
    else:  # every request of a burst after the first, bar those within the grace, came during its pause
        assert stats["requests_in_pause"] > 0 and stats["requests_in_pause_examples"][0]["before_end"] > 0
