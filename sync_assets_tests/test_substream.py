"""Substreams read their parents from the store, fetch children concurrently, and resume by parent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_assets.airbyte_state import FULL_REFRESH_COMPLETE, stream_state
from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.refresh import ChunkResult, FullRefresh
from sync_assets.spec import ApiSource, StreamKind, source_from_dict
from sync_assets.storage import Store, TableSpec, open_store
from sync_assets.substream import PartitionResult, sync_substream
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Window
from sync_assets_tests.helpers import TICKER_PRICES, TICKERS, ClientFor, make_source_data, stored, typed

SURVEYS = 4000  # about 11 a day
PAGE = {"type": "page_number", "size": 100, "total_path": "total"}
STREAMS: list[dict[str, Any]] = [
    {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id", "paginator": PAGE,
     "incremental": {"cursor_field": "date_modified", "start": "2024-01-01", "start_param": "start_modified_at",
                     "end_param": "end_modified_at"}},
    {"name": "survey_responses", "path": "/v3/surveys/{parent[id]}/responses", "records_path": "data",
     "primary_key": "id", "parent": {"stream": "surveys"}, "paginator": {**PAGE, "size": 5}},
]
DAYS = [(f"2024-01-{d:02d}", Window(datetime(2024, 1, d, tzinfo=UTC), datetime(2024, 1, d + 1, tzinfo=UTC)))
        for d in range(3, 6)]


def source(api: DemoApi, **overrides: Any) -> ApiSource:
    return source_from_dict(make_source_data(api.url, STREAMS, **overrides))


def sync_parents(api: DemoApi, store: Store, client_for: ClientFor) -> None:
    src = source(api)
    reader = StreamReader(src, src.stream("surveys"), client_for(src))
    assert all(r.state for r in sync_windows(reader, store, DAYS, 4))


def sync_children(src: ApiSource, store: Store, client_for: ClientFor) -> list[PartitionResult]:
    reader = StreamReader(src, src.stream("survey_responses"), client_for(src))
    return list(sync_substream(reader, store, DAYS, concurrency=8))


def expected_children(store: Store, key: str) -> list[str]:
    parents = stored(store, "surveys", [key])
    return sorted(r["id"] for p in parents for r in data.survey_responses(0, p["id"]))


def test_children_of_every_stored_parent_land_in_the_parents_partition(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    api = demo_api(surveys=SURVEYS)
    sync_parents(api, store, client_for)
    requests.post(f"{api.url}/stats/reset", timeout=5)
    results = sync_children(source(api), store, client_for)
    assert {r.key for r in results if r.state} == {key for key, _ in DAYS}
    for key, _ in DAYS:
        children = [r["id"] for r in stored(store, "survey_responses", [key])]
        assert sorted(children) == expected_children(store, key) and len(children) == len(set(children))
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["by_path"].get("/v3/surveys", 0) == 0  # parents came from the store, not the API
    assert stats["by_path"]["/v3/surveys/{id}/responses"] == sum(r.stats.requests for r in results)


def test_a_resumed_substream_asks_nothing_for_parents_already_done(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    healthy = demo_api(surveys=SURVEYS)
    sync_parents(healthy, store, client_for)
    flaky = demo_api(surveys=SURVEYS, fail_rate=0.3)
    first = sync_children(source(flaky, retry={"max_attempts": 1}), store, client_for)
    failed = [r for r in first if r.error is not None]
    assert failed and all(r.state is None for r in failed)
    done_before = {r.key: r.parents for r in failed}

    requests.post(f"{healthy.url}/stats/reset", timeout=5)
    second = sync_children(source(healthy), store, client_for)
    assert all(r.state is not None for r in second)
    for result in second:
        if result.key in done_before:
            assert result.parents_skipped == done_before[result.key] > 0
    parents_fetched = sum(r.parents for r in second)
    fetches = requests.get(f"{healthy.url}/stats", timeout=5).json()["by_path"]["/v3/surveys/{id}/responses"]
    assert parents_fetched == sum(r.parents + r.parents_skipped for r in second) - sum(done_before.values())
    assert fetches == sum(r.stats.requests for r in second)  # no request for a parent already done
    for key, _ in DAYS:
        children = [r["id"] for r in stored(store, "survey_responses", [key])]
        assert sorted(children) == expected_children(store, key) and len(children) == len(set(children))


def test_parents_without_their_primary_key_fail_the_partition_instead_of_being_skipped(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    api = demo_api(surveys=SURVEYS)
    sync_parents(api, store, client_for)
    streams = [{**STREAMS[0], "primary_key": "uuid"}, STREAMS[1]]  # a field the surveys do not have
    src = source_from_dict(make_source_data(api.url, streams))
    results = sync_children(src, store, client_for)
    assert all(r.state is None and "no value for its primary key uuid" in str(r.error) for r in results)
    assert store.partition_states(TableSpec("demo", "survey_responses")) == {}


def test_parent_values_fill_params_and_headers_and_are_copied_into_children(
    demo_api: Callable[..., DemoApi], tmp_path: Path, client_for: ClientFor
) -> None:
    api = demo_api(surveys=SURVEYS)
    store = open_store(tmp_path / "store")
    sync_parents(api, store, client_for)
    by_query = {**STREAMS[1], "path": "/v3/responses", "params": {"survey_id": "{parent[id]}"},
                "headers": {"X-Survey-Id": "{parent[id]}"}, "include_from_parent": ["id", "title"]}
    results = sync_children(source_from_dict(make_source_data(api.url, [STREAMS[0], by_query])), store, client_for)
    assert all(r.state is not None for r in results), [r.error for r in results]
    for key, _ in DAYS:
        parents = {p["id"]: p for p in stored(store, "surveys", [key])}
        children = stored(store, "survey_responses", [key])
        assert sorted(c["id"] for c in children) == expected_children(store, key)
        assert all(c["surveys_id"] == c["survey_id"] and c["surveys_title"] == parents[c["survey_id"]]["title"]
                   for c in children)


def test_parent_values_need_a_parent() -> None:
    with pytest.raises(ConfigurationError, match="param survey_id uses the parent record, but the stream has no"):
        source_from_dict(make_source_data("http://x", [{**STREAMS[1], "parent": None, "path": "/v3/responses",
                                                         "params": {"survey_id": "{parent[id]}"}}]))


# --- substreams of a full-refresh parent: a resumable full refresh over the parent's published snapshot ----

FULL_REFRESH_STREAMS: list[dict[str, Any]] = [
    {**STREAMS[0], "incremental": None, "chunk_pages": 2},
    {**STREAMS[1], "chunk_pages": 7},
]


def _refresh(api: DemoApi, stream: str, store: Store, client_for: ClientFor,
             streams: list[dict[str, Any]] | None = None, **overrides: Any) -> tuple[FullRefresh, list[ChunkResult]]:
    src = source_from_dict(make_source_data(api.url, streams or FULL_REFRESH_STREAMS, **overrides))
    runner = FullRefresh(StreamReader(src, src.stream(stream), client_for(src)), store, concurrency=4)
    return runner, list(runner.run())


def test_a_substream_of_a_full_refresh_parent_is_refreshed_over_its_published_parents_and_resumes_by_parent(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    flaky, steady = demo_api(surveys=300, fail_rate=0.03), demo_api(surveys=300)  # one seed: the same data
    _, refused = _refresh(steady, "survey_responses", store, client_for)
    assert "'surveys' has published none yet: refresh 'surveys' first" in str(refused[0].error)
    assert _refresh(steady, "surveys", store, client_for)[0].published is not None
    parents = [s["id"] for s in stored(store, "surveys")]
    assert len(parents) == 300
    truth = sorted(r["id"] for p in parents for r in data.survey_responses(0, p))

    failing, first = _refresh(flaky, "survey_responses", store, client_for, retry={"max_attempts": 1})
    chunks = -(-300 // 7)  # all registered from the first page
    assert failing.published is None and any(r.error for r in first) and len(first) == chunks
    src = source_from_dict(make_source_data(steady.url, FULL_REFRESH_STREAMS))
    progress = stream_state(store, src, src.stream("survey_responses"))  # a refresh's, not windows'
    assert progress[FULL_REFRESH_COMPLETE] is False and progress["refresh"] == failing.refresh
    finished, second = _refresh(steady, "survey_responses", store, client_for)
    assert finished.published is not None and finished.refresh == failing.refresh  # the same refresh, resumed
    assert stream_state(store, src, src.stream("survey_responses")) == {FULL_REFRESH_COMPLETE: True}
    assert len([r for r in second if r.checkpoint is not None]) == sum(1 for r in first if r.error is not None)
    assert sorted(r["id"] for r in stored(store, "survey_responses")) == truth  # each child once


def test_for_each_reads_a_stream_once_per_combination_of_its_lists_as_a_resumable_full_refresh(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    api = demo_api(surveys=50)
    ids = [3, 17, 42, 999]  # survey 999 does not exist: 404, ignored
    responses = {**STREAMS[1], "parent": None, "path": "/v3/surveys/{each[survey_id]}/responses",
                 "ignore_statuses": [404],
                 "params": {"per_page": "{each[size]}"},
                 "paginator": {"type": "page_number", "size_param": None, "size": None},  # to an empty page
                 "for_each": [{"field": "survey_id", "values": ids}, {"field": "size", "values": [5, 100]}],
                 "chunk_pages": 2}
    src = source_from_dict(make_source_data(api.url, [responses]))
    assert src.refreshes(src.stream("survey_responses"))
    assert src.describe(src.stream("survey_responses")).startswith("resumable full refresh for each survey_id x size")
    runner = FullRefresh(StreamReader(src, src.stream("survey_responses"), client_for(src)), store, concurrency=4)
    results = list(runner.run())
    assert runner.published is not None and len(results) == 4  # 8 combinations, 2 a chunk
    truth = sorted(r["id"] for survey in ids[:3] for r in data.survey_responses(0, survey))
    assert sorted(r["id"] for r in stored(store, "survey_responses")) == sorted(truth * 2)  # each size reads all
    with pytest.raises(ConfigurationError, match=r"no for_each list has field 'page'"):
        source_from_dict(make_source_data(api.url, [{**responses, "path": "/v3/surveys/{each[page]}/responses"}]))
    unignored = source_from_dict(make_source_data(api.url, [{**responses, "ignore_statuses": []}]))
    reader = StreamReader(unignored, unignored.stream("survey_responses"), client_for(unignored))
    with pytest.raises(ConfigurationError, match="404 Not Found"):  # not ignored: a failure, as before
        list(reader.pages(RequestStats(), parent={"survey_id": 999, "size": 5}))


@pytest.mark.parametrize(("streams", "kinds"), [
    (STREAMS, [StreamKind.WINDOWS, StreamKind.PARENT_WINDOWS]),
    (FULL_REFRESH_STREAMS, [StreamKind.FULL_REFRESH, StreamKind.FULL_REFRESH]),
    ([TICKERS, TICKER_PRICES], [StreamKind.FULL_REFRESH, StreamKind.WINDOWS_OVER_PARENTS]),
])
def test_each_stream_has_one_of_four_kinds_that_every_front_door_dispatches_on(
    api: DemoApi, streams: list[dict[str, Any]], kinds: list[StreamKind]
) -> None:
    src = source_from_dict(make_source_data(api.url, streams))
    assert [src.kind(s) for s in src.streams] == kinds


def test_a_substream_of_a_full_refresh_substream_is_refreshed_over_its_parents_published_snapshot(
    demo_api: Callable[..., DemoApi], tmp_path: Path, client_for: ClientFor
) -> None:
    api, store = demo_api(surveys=20), open_store(tmp_path / "store")
    # each response's survey's responses again: a third level the demo API can serve
    again = {**STREAMS[1], "name": "sibling_responses", "path": "/v3/surveys/{parent[survey_id]}/responses",
             "parent": {"stream": "survey_responses"}, "chunk_pages": 25}
    streams = [*FULL_REFRESH_STREAMS, again]
    src = source_from_dict(make_source_data(api.url, streams))
    assert src.refreshes(src.stream("sibling_responses"))
    for stream in ("surveys", "survey_responses", "sibling_responses"):
        assert _refresh(api, stream, store, client_for, streams=streams)[0].published is not None, stream
    responses = stored(store, "survey_responses")
    truth = sorted(r["id"] for response in responses for r in data.survey_responses(0, response["survey_id"]))
    assert sorted(r["id"] for r in stored(store, "sibling_responses")) == truth
    incremental_root = [STREAMS[0], STREAMS[1], {**again, "incremental": None}]
    with pytest.raises(ConfigurationError, match="'survey_responses' of 'sibling_responses' is a substream with"):
        source_from_dict(make_source_data(api.url, incremental_root))


def test_a_substream_with_windows_of_its_own_reads_each_window_once_per_parent_of_the_snapshot(
    api: DemoApi, store: Store, client_for: ClientFor
) -> None:
    """A report per account per day: the windows are the child's, the parents the parent's published snapshot."""
    streams = [TICKERS, TICKER_PRICES]
    src = source_from_dict(make_source_data(api.url, streams))
    child = src.stream("ticker_prices")
    assert not src.refreshes(child) and "each window read once per published parent" in src.describe(child)
    days = [(f"2024-03-{d:02d}", Window(datetime(2024, 3, d, tzinfo=UTC), datetime(2024, 3, d + 1, tzinfo=UTC)))
            for d in (4, 5, 6)]
    client = client_for(src)
    (refused,) = sync_substream(StreamReader(src, child, client), store, days[:1], concurrency=4)
    assert "'tickers' has published none yet: refresh 'tickers' first" in str(refused.error)
    assert _refresh(api, "tickers", store, client_for, streams=streams)[0].published is not None
    results = list(sync_substream(StreamReader(src, child, client), store, days, concurrency=4))
    assert all(r.error is None for r in results) and {r.key for r in results} == {k for k, _ in days}
    assert all(r.parents == len(data.TICKERS) for r in results)
    for key, window in days:
        truth = typed(data.price_rows(0, window.start.date(), window.start.date()), dates=("date",))  # end inclusive
        assert sorted(map(str, stored(store, "ticker_prices", [key]))) == sorted(map(str, truth)), key


def test_a_substream_with_windows_of_its_own_under_a_windowed_parent_reads_every_parent_once_per_slice(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    """Airbyte's cursor per parent under an incremental parent: every parent the parent holds (over all its
    windows), each read through one request sequence for the run's windows, not one per window."""
    api = demo_api(surveys=SURVEYS)
    own = {**STREAMS[1], "name": "recent_responses",  # the API cannot filter them: cut client side
           "incremental": {"cursor_field": "submitted_at", "start": "2024-01-01"}}
    src = source_from_dict(make_source_data(api.url, [STREAMS[0], own]))
    child = src.stream("recent_responses")
    assert src.kind(child) is StreamKind.WINDOWS_OVER_PARENTS
    assert "each window read once per record surveys holds" in src.describe(child)
    days = [(f"2024-{d:%m-%d}", Window(d, d + timedelta(days=1)))
            for d in (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=n) for n in range(120))]
    client = client_for(src)
    refused = list(sync_substream(StreamReader(src, child, client), store, days[:2], concurrency=8))
    assert all("'surveys' has synced no window yet: sync 'surveys' first" in str(r.error) for r in refused)
    sync_parents(api, store, client_for)
    parents = stored(store, "surveys", [key for key, _ in DAYS])
    api.reset_stats()
    results = list(sync_substream(StreamReader(src, child, client), store, days, concurrency=8))
    assert [r.error for r in results if r.error] == [] and len(results) == len(days)
    assert all(r.parents == len(parents) for r in results)
    pages = sum(-(-max(1, data.survey_response_count(0, p["id"])) // 5) for p in parents)  # 5 a page
    assert api.stats()["requests"] == pages  # one request sequence per parent, where a window each sent 120
    everything = [r for p in parents for r in data.survey_responses(0, p["id"])]
    for key, window in days:
        truth = sorted(r["id"] for r in everything if window.contains(datetime.fromisoformat(r["submitted_at"])))
        assert sorted(r["id"] for r in stored(store, "recent_responses", [key])) == truth, key
    assert sum(len(stored(store, "recent_responses", [k])) for k, _ in days) > 0


def test_a_chain_of_windowed_substreams_and_a_list_of_a_windowed_streams_values_read_what_the_store_holds(
    demo_api: Callable[..., DemoApi], store: Store, client_for: ClientFor
) -> None:
    """A child with windows of its own under a windowed substream (Airbyte: a cursor per parent two levels
    down), and a for_each list taken from a windowed stream: both read every record their parent holds."""
    api = demo_api(surveys=SURVEYS)
    own = {"incremental": {"cursor_field": "submitted_at", "start": "2023-01-01"}}
    responses = {**STREAMS[1], "name": "recent_responses", **own}
    siblings = {**STREAMS[1], "name": "siblings", "path": "/v3/surveys/{parent[survey_id]}/responses",
                "parent": {"stream": "recent_responses"}, **own}
    held = {**STREAMS[1], "name": "held_responses", "parent": None, "path": "/v3/surveys/{each[survey]}/responses",
            "for_each": [{"field": "survey", "values_of": {"stream": "surveys", "key": "id"}}]}
    src = source_from_dict(make_source_data(api.url, [STREAMS[0], responses, siblings, held]))
    assert [src.kind(s) for s in src.streams][1:] == [StreamKind.WINDOWS_OVER_PARENTS] * 2 + [StreamKind.FULL_REFRESH]
    days = [(f"{d:%Y-%m-%d}", Window(d, d + timedelta(days=1)))
            for d in (datetime(2023, 10, 1, tzinfo=UTC) + timedelta(days=n) for n in range(92))]
    client = client_for(src)
    sync_parents(api, store, client_for)
    for child in ("recent_responses", "siblings"):
        results = list(sync_substream(StreamReader(src, src.stream(child), client), store, days, concurrency=8))
        assert [r.error for r in results if r.error] == [] and len(results) == len(days), child
    refresh = FullRefresh(StreamReader(src, src.stream("held_responses"), client), store, concurrency=4)
    assert [c.error for c in refresh.run() if c.error] == [] and refresh.published is not None
    surveys = [s["id"] for s in stored(store, "surveys", [key for key, _ in DAYS])]
    keys = [key for key, _ in days]
    in_range = [r for r in stored(store, "recent_responses", keys)]
    assert in_range and {r["survey_id"] for r in in_range} < set(surveys)  # some surveys have none in the range
    of_their_surveys = [r for s in {r["survey_id"] for r in in_range} for r in data.survey_responses(0, s)]
    for key, window in days:  # every held response's survey's responses in each window
        truth = {r["id"] for r in of_their_surveys if window.contains(datetime.fromisoformat(r["submitted_at"]))}
        assert {r["id"] for r in stored(store, "siblings", [key])} == truth, key
    assert sorted(r["id"] for r in stored(store, "held_responses")) == sorted(
        r["id"] for s in surveys for r in data.survey_responses(0, s))
