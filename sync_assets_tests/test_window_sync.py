"""Window syncs: many windows of a range on a thread pool, each committed on its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets.reader import StreamReader
from sync_assets.sources import demo_source
from sync_assets.spec import source_from_dict
from sync_assets.storage import Store, TableSpec, open_store
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Window, partition_key, windows_between
from sync_assets_tests.helpers import TOKEN, ClientFor, make_source, make_source_data, stored, typed

CONCURRENCY = 5


def test_credentials_refused_mid_range_stop_every_window_at_once(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store: Store
) -> None:
    """20 windows as 5 slices of 4 pages each, 5 at a time; the API refuses the token after 17 requests:
    at least 2 slices end (15 requests cannot end none), at least 1 does not (20 would end all), and no
    window knocks again once refused."""
    surveys, revoke_after = 30_000, 17
    api = demo_api(surveys=surveys, latency_ms=30, revoke_after=revoke_after)
    source = demo_source()
    assert source.auth is not None
    source = source.model_copy(update={"base_url": api.url, "rate_limits": [],
                                       "auth": source.auth.model_copy(update={"token": SecretStr(TOKEN)})})
    windows = [(partition_key(w.start, "daily"), w) for w in
               windows_between(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 21, tzinfo=UTC), "daily")]
    client = client_for(source)
    results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, windows, CONCURRENCY))
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["responses_401"] <= CONCURRENCY  # only the requests already in flight when the first was refused
    assert stats["requests"] <= revoke_after + CONCURRENCY
    failed = [r for r in results if r.error is not None]
    done = {r.key for r in results if r.state is not None}
    assert len(failed) + len(done) == len(windows) and len(done) >= 8 and failed
    assert all(isinstance(r.error, ConfigurationError) and "refused our credentials" in str(r.error) for r in failed)
    assert set(store.partition_states(TableSpec("demo", "surveys"))) == done  # those stay committed
    for key in done:
        start = datetime.fromisoformat(key).replace(tzinfo=UTC)
        truth = data.surveys_modified_between(0, surveys, start, start + timedelta(days=1))
        assert sorted(r["id"] for r in stored(store, "surveys", [key])) == sorted(r["id"] for r in truth)


@pytest.mark.parametrize("missing_cursor", ["fail", "drop", "keep"])
def test_records_without_a_cursor_fail_are_dropped_or_kept_as_the_stream_says(
    api: DemoApi, tmp_path: Path, client_for: ClientFor, missing_cursor: str
) -> None:
    stream = {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
              "params": {"_fault": "no_cursor"},
              "paginator": {"type": "page_number", "size": 100, "total_path": "total"},
              "incremental": {"cursor_field": "date_modified", "start": "2024-01-01", "missing_cursor": missing_cursor,
                              "start_param": "start_modified_at", "end_param": "end_modified_at"}}
    source = make_source(api, [stream])
    client, store = client_for(source), open_store(tmp_path / "store")
    january = ("2024-01", Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)))
    (result,) = sync_windows(StreamReader(source, source.stream("surveys"), client), store, [january], 1)
    truth = [s["id"] for s in data.surveys_modified_between(0, 400, january[1].start, january[1].end)]
    every_other = truth[1::2]  # the API took the cursor out of these (its pages are in this order)
    if missing_cursor == "fail":
        assert result.error is not None and "not a timestamp" in str(result.error)
        return
    ids = sorted(r["id"] for r in stored(store, "surveys", [january[0]]))
    assert result.error is None and result.without_cursor == len(every_other) > 0
    assert ids == sorted(set(truth) - set(every_other) if missing_cursor == "drop" else truth)


def _surveys_stream(**incremental: object) -> dict[str, object]:
    params = incremental.pop("params", {})
    return {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id", "params": params,
            "paginator": {"type": "page_number", "size": 5, "total_path": "total"},
            "incremental": {"cursor_field": "date_modified", "start": "2024-01-01", **incremental}}


@pytest.mark.parametrize(("shape", "incremental", "reads"), [
    ("stripe: bracketed names, epoch ms", {"start_param": "modified[gte]", "end_param": "modified[lt]",
                                           "param_format": "epoch_ms"}, "the window"),
    ("a start parameter only, oldest first", {"start_param": "start_modified_at", "order": "ascending"},
     "the window"),
    ("no parameters, newest first", {"order": "descending", "params": {"sort": "desc"}}, "back to its start"),
])
def test_window_parameters_of_other_shapes_and_ordered_apis_read_exactly_the_window(
    api: DemoApi, tmp_path: Path, client_for: ClientFor, shape: str, incremental: dict[str, object], reads: str
) -> None:
    source = make_source(api, [_surveys_stream(**incremental)])
    client, store = client_for(source), open_store(tmp_path / "store")
    window = Window(datetime(2024, 11, 1, tzinfo=UTC), datetime(2024, 11, 8, tzinfo=UTC))
    api.reset_stats()
    (result,) = sync_windows(StreamReader(source, source.stream("surveys"), client), store, [("week", window)], 1)
    truth = sorted(s["id"] for s in data.surveys_modified_between(0, 400, window.start, window.end))
    assert result.error is None and truth, shape
    assert sorted(r["id"] for r in stored(store, "surveys", ["week"])) == truth, shape
    # pages read: those of the window (or, newest first, those back to its start), and one past it at most
    wanted = len(truth) if reads == "the window" else len(data.surveys_modified_between(0, 400, window.start))
    assert api.stats()["requests"] <= -(-wanted // 5) + 1, shape


@pytest.mark.parametrize(("placement", "arrived"), [
    ({"method": "POST", "params_in": "body", "body": {"kind": "survey"}},  # everything in a JSON body
     {"kind": "body", "start_modified_at": "body", "end_modified_at": "body", "page": "body", "per_page": "body"}),
    ({"method": "POST", "body_format": "form", "body": {"kind": "survey"},  # a form, the page in the query
      "param_places": {"start_modified_at": "body", "end_modified_at": "body", "per_page": "body"}},
     {"kind": "body", "start_modified_at": "body", "end_modified_at": "body", "page": "query", "per_page": "body"}),
    ({"method": "GET", "params_in": "header", "param_places": {"page": "body", "end_modified_at": "query"}},
     {"start_modified_at": "header", "end_modified_at": "query", "page": "body", "per_page": "header"}),
], ids=["json body", "form body and query", "headers, a GET's body and query"])
def test_a_search_endpoint_reads_the_parameters_wherever_the_stream_places_them(
    api: DemoApi, tmp_path: Path, client_for: ClientFor, placement: dict[str, Any], arrived: dict[str, str]
) -> None:
    stream = {**_surveys_stream(start_param="start_modified_at", end_param="end_modified_at"),
              "path": "/v3/surveys/search", **placement}
    source = make_source(api, [stream])
    client, store = client_for(source), open_store(tmp_path / "store")
    window = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    (result,) = sync_windows(StreamReader(source, source.stream("surveys"), client), store, [("march", window)], 1)
    truth = sorted(s["id"] for s in data.surveys_modified_between(0, 400, window.start, window.end))
    assert result.error is None and len(truth) > 5  # more than one page of 5
    assert sorted(r["id"] for r in stored(store, "surveys", ["march"])) == truth
    assert set(api.stats()["search_parameters"]) == {f"{name} in {place}" for name, place in arrived.items()}


PRICE_REPORT = {"name": "price_report", "path": "/v1/reports/prices/{param[from]}/{param[to]}",
                "records_path": "items", "primary_key": ["ticker", "date"],
                "incremental": {"cursor_field": "date", "start": "2024-01-01", "start_param": "from", "end_param": "to",
                                "end_inclusive": True, "param_format": "%Y%m%d"}}


def test_a_report_api_takes_the_window_in_its_path(api: DemoApi, tmp_path: Path, client_for: ClientFor) -> None:
    """Wikimedia's shape: /daily/20240301/20240307. A range's adjacent days are read as request slices, each
    slice's days written into the path (both inclusive), and each day lands in its own partition."""
    source = make_source(api, [PRICE_REPORT])
    client, store = client_for(source), open_store(tmp_path / "store")
    days = [(partition_key(w.start, "daily"), w) for w in windows_between(
        datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC), "daily")]
    requests.post(f"{api.url}/stats/reset", timeout=5)
    results = list(sync_windows(StreamReader(source, source.stream("price_report"), client), store, days, 4))
    assert all(r.error is None for r in results) and len(results) == 7
    for key, window in days:
        day = window.start.date()
        assert stored(store, "price_report", [key]) == typed(data.price_rows(0, day, day), dates=("date",)), key
    paths = api.stats()["by_path"]
    assert set(paths) == {"/v1/reports/prices/{start}/{end}"} and paths["/v1/reports/prices/{start}/{end}"] < 7


def test_a_form_body_holds_flat_fields() -> None:
    with pytest.raises(ConfigurationError, match="a form body holds flat fields"):
        source_from_dict(make_source_data("http://x", [{**_surveys_stream(), "method": "POST", "body_format": "form",
                                                        "body": {"q": {"nested": 1}}}]))
