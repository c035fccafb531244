"""Failures are classified and retried as they should be; flaky APIs still deliver every record once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError, SyncSystemError, TransientError
from sync_assets_tests.helpers import ClientFor, make_source, read_all
from sync_assets_tests.test_pagination import CUSTOMERS, EVENTS, ORDERS, SURVEYS


def server_stats(api: DemoApi) -> dict[str, Any]:
    return requests.get(f"{api.url}/stats", timeout=5).json()  # type: ignore[no-any-return]


def test_5xx_at_fail_rate_02_still_delivers_every_record_exactly_once(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    api = demo_api(fail_rate=0.2, seed=7, customers=230, orders=310, events=170, surveys=400)
    source = make_source(api, [CUSTOMERS, ORDERS, EVENTS, SURVEYS])
    retries = 0
    expected = {
        "customers": data.all_customers(7, 230),
        "orders": data.all_orders(7, 310, 230),
        "events": data.all_events(7, 170),
        "surveys": data.surveys_modified_between(7, 400),
    }
    for stream, truth in expected.items():
        records, stats = read_all(source, stream, tmp_path)
        assert records == truth
        retries += stats.retries
    served = server_stats(api)
    assert served["responses_500"] > 0 and retries == served["responses_500"]


def test_429_storm_honours_retry_after_and_delivers_every_record_once(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    """The API allows 8 requests a second; three readers with no budget configured run into it."""
    api = demo_api(rate_limit=(8, 1.0), customers=230)
    source = make_source(api, [CUSTOMERS])
    results: dict[int, list[dict[str, Any]]] = {}
    rate_limited: list[int] = []

    def reader(index: int) -> None:
        records, stats = read_all(source, "customers", tmp_path)
        results[index] = records
        rate_limited.append(stats.rate_limited)

    started = time.monotonic()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert [results.get(i) for i in range(3)] == [data.all_customers(0, 230)] * 3
    served = server_stats(api)
    assert served["responses_429"] > 0 and sum(rate_limited) == served["responses_429"]
    assert elapsed >= (30 / 8) - 1.5  # 30 requests at 8/s cannot finish faster: waits were honoured


def test_malformed_json_is_a_system_error_and_not_retried(api: DemoApi, tmp_path: Path) -> None:
    stream = {**CUSTOMERS, "params": {"_fault": "malformed"}}
    with pytest.raises(SyncSystemError, match="malformed JSON"):
        read_all(make_source(api, [stream]), "customers", tmp_path)
    assert server_stats(api)["requests"] == 1


def test_records_that_are_not_a_list_are_a_system_error(api: DemoApi, tmp_path: Path) -> None:
    stream = {**CUSTOMERS, "params": {"_fault": "not_list"}}
    with pytest.raises(SyncSystemError, match="expected a list of records at records_path 'data'"):
        read_all(make_source(api, [stream]), "customers", tmp_path)


def test_wrong_path_is_a_configuration_error(api: DemoApi, tmp_path: Path) -> None:
    stream = {**CUSTOMERS, "path": "/v1/customerz"}
    with pytest.raises(ConfigurationError, match="404.*check the stream's path"):
        read_all(make_source(api, [stream]), "customers", tmp_path)
    assert server_stats(api)["requests"] == 1


def test_timeouts_are_retried_then_fail_as_transient(api: DemoApi, tmp_path: Path) -> None:
    stream = {**CUSTOMERS, "params": {"_fault": "slow"}}
    retry = {"max_attempts": 2, "backoff_seconds": 0.01, "read_timeout_seconds": 0.3}
    with pytest.raises(TransientError, match="did not answer in time"):
        read_all(make_source(api, [stream], retry=retry), "customers", tmp_path)
    assert server_stats(api)["by_path"]["/v1/customers"] == 2


def test_connection_refused_is_transient(api: DemoApi, tmp_path: Path) -> None:
    source = make_source(api, [CUSTOMERS], retry={"max_attempts": 3, "backoff_seconds": 0.01})
    source = source.model_copy(update={"base_url": "http://127.0.0.1:9"})
    started = time.monotonic()
    with pytest.raises(TransientError):
        read_all(source, "customers", tmp_path)
    assert time.monotonic() - started < 5


def test_429_without_retry_after_backs_off_exponentially_and_pauses_every_worker(
    api: DemoApi, tmp_path: Path
) -> None:
    stream = {**CUSTOMERS, "params": {"_fault": "429"}}
    retry = {"backoff_seconds": 0.05, "max_backoff_seconds": 1, "max_elapsed_seconds": 1.2}
    started = time.monotonic()
    with pytest.raises(TransientError, match="429"):
        read_all(make_source(api, [stream], retry=retry), "customers", tmp_path)
    attempts = server_stats(api)["responses_429"]
    # Waits of about 0.05, 0.1, 0.2, 0.4 (halved by jitter at most) fit in 1.2 s: a handful, not a storm.
    assert 3 <= attempts <= 6 and time.monotonic() - started < 2.5
    from sync_assets.rate_limit import RateLimitStore, SharedRateLimiter

    other_worker = SharedRateLimiter("demo", [], RateLimitStore(), tmp_path)
    assert other_worker.board.get() > time.time() - 1.5  # the backoff was published as a shared pause


def test_a_retry_after_beyond_the_budget_fails_at_once(demo_api: Callable[..., DemoApi], tmp_path: Path) -> None:
    api = demo_api(rate_limit=(1, 60.0), customers=230)
    stream = {**CUSTOMERS, "paginator": {"type": "cursor", "size_param": "limit", "size": 10}}
    started = time.monotonic()
    with pytest.raises(TransientError, match="Retry-After"):
        read_all(make_source(api, [stream], retry={"max_elapsed_seconds": 5}), "customers", tmp_path)
    assert time.monotonic() - started < 2  # did not sleep a minute to fail afterwards
    assert server_stats(api)["responses_429"] == 1


@pytest.mark.parametrize("style", ["ietf", "x-epoch", "github"])
def test_an_api_announcing_its_budget_in_headers_is_never_refused(
    demo_api: Callable[..., DemoApi], tmp_path: Path, style: str
) -> None:
    """The source configures no rate limit: the API's headers alone keep the client inside 5 requests/s."""
    api = demo_api(customers=200, rate_limit=(5, 1), rate_limit_style=style)
    started = time.monotonic()
    records, stats = read_all(make_source(api, [CUSTOMERS]), "customers", tmp_path)
    assert records == data.all_customers(0, 200) and stats.requests == 9  # 23 a page
    served = requests.get(f"{api.url}/stats", timeout=5).json()
    assert served["responses_429"] == served["responses_403"] == 0  # paused before the budget ran out
    assert served["max_requests_in_window"] <= 5
    assert time.monotonic() - started >= 0.9 and stats.seconds_waited >= 0.9  # 9 pages at 5 a second: paused


@pytest.mark.parametrize("style", ["ietf", "github"])
def test_threads_sharing_a_client_never_send_more_than_the_headers_leave(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, style: str
) -> None:
    """Six threads, one client, a budget of 5 a second announced only in headers: a thread must not send
    while the requests already on their way could use up what the last answer said was left."""
    from sync_assets.http import RequestStats

    api = demo_api(customers=50, rate_limit=(5, 1), rate_limit_style=style)
    client = client_for(make_source(api, [CUSTOMERS]))
    stats = RequestStats()

    def worker() -> None:
        for _ in range(4):
            client.request(client.url_for("/v1/customers"), {"limit": 5}, stats)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = server_stats(api)
    assert served["requests"] == stats.requests == 24  # each answered the first time
    assert served["responses_429"] == served["responses_403"] == 0 and served["max_requests_in_window"] <= 5
