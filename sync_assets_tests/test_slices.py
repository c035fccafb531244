"""Request slices: a run's windows read through ranges that span them, every record in its own window."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import SyncSystemError
from sync_assets.reader import StreamReader
from sync_assets.schema import PARTITION_COLUMN
from sync_assets.slices import Slice, plan_slices
from sync_assets.storage import Store, TableSpec, open_store
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Incremental, Window, parse_cursor, partition_key, windows_between
from sync_assets_tests.helpers import TOKEN, ClientFor, make_source, stored

YEAR = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
SPARSE = 1830  # surveys over 2024's 366 days: 5 a day, 19 pages of 100 in one range read


def _incremental(**settings: Any) -> Incremental:
    return Incremental(cursor_field="t", start=YEAR[0], **{"start_param": "from", "end_param": "to", **settings})


def _days(start: datetime, end: datetime) -> list[Window]:
    return list(windows_between(start, end, "daily"))


def _assert_cover(slices: list[Slice], windows: list[Window]) -> None:
    """Every window in exactly one slice, each slice a run of adjacent windows."""
    assert [w for s in slices for w in s.windows] == sorted(windows)
    for s in slices:
        assert all(a.end == b.start for a, b in zip(s.windows, s.windows[1:], strict=False))


def test_a_range_is_shared_out_as_one_slice_per_thread() -> None:
    days = _days(*YEAR)
    slices = plan_slices(days, _incremental(), concurrency=10)
    _assert_cover(slices, days)
    assert len(slices) == 10 and {len(s.windows) for s in slices} <= {36, 37}


def test_an_api_that_cannot_filter_by_range_is_read_once_per_run_of_adjacent_windows() -> None:
    days = _days(*YEAR)
    unfiltered = _incremental(start_param=None, end_param=None)
    assert [s.windows for s in plan_slices(days, unfiltered, concurrency=10)] == [tuple(days)]
    missing = days[:5] + days[40:42]
    assert [s.windows for s in plan_slices(missing, unfiltered, concurrency=10)] == [tuple(days[:5]),
                                                                                     tuple(days[40:42])]


def test_a_gap_starts_a_new_slice_and_nothing_synced_is_read_again() -> None:
    days = _days(*YEAR)
    missing = days[:5] + days[40:42] + days[300:]  # what a backfill of the missing partitions asks for
    slices = plan_slices(missing, _incremental(), concurrency=4)
    _assert_cover(slices, missing)
    assert all(not (s.window.start < days[40].start and s.window.end > days[4].end) for s in slices)
    assert len(slices) >= 3


def test_max_slice_caps_a_slice_and_window_slicing_or_kept_records_read_each_window_alone() -> None:
    days = _days(*YEAR)
    capped = plan_slices(days, _incremental(max_slice=timedelta(days=30)), concurrency=2)
    _assert_cover(capped, days)
    assert all(s.window.end - s.window.start <= timedelta(days=30) for s in capped) and len(capped) >= 13
    a_week = plan_slices(days, _incremental(max_slice=timedelta(hours=1)), concurrency=1)
    assert len(a_week) == len(days)  # never less than one window
    for settings in ({"slicing": "window"}, {"missing_cursor": "keep"}):
        assert [s.windows for s in plan_slices(days[:7], _incremental(**settings), 10)] == [(d,) for d in days[:7]]


def test_slice_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="max_records_per_slice"):
        _incremental(max_records_per_slice=0)
    with pytest.raises(ValidationError, match="slicing"):
        _incremental(slicing="weekly")
    assert _incremental(max_slice="P30D").max_slice == timedelta(days=30)


def _by_day(records: list[dict[str, Any]]) -> dict[str, set[int]]:
    days: dict[str, set[int]] = defaultdict(set)
    for record in records:
        days[partition_key(parse_cursor(record["date_modified"]), "daily")].add(record["id"])
    return dict(days)


def _surveys(**incremental: Any) -> dict[str, Any]:
    return {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
            "paginator": {"type": "page_number", "size": 100, "total_path": "total"},
            "incremental": {"cursor_field": "date_modified", "start": "2024-01-01", "start_param": "start_modified_at",
                            "end_param": "end_modified_at", **incremental}}


def test_a_sparse_year_costs_about_one_range_read_and_each_partition_holds_exactly_its_day(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store: Store
) -> None:
    api = demo_api(surveys=SPARSE)
    source = make_source(api, [_surveys()], concurrency=10)
    days = [(partition_key(w.start, "daily"), w) for w in _days(*YEAR)]
    client = client_for(source)
    results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, days, 10))
    assert all(r.error is None for r in results) and len(results) == 366
    requests = api.stats()["requests"]
    assert requests <= 21  # 10 slices of 183 records: 2 pages each; one range read takes 19
    assert sum(r.stats.requests for r in results) == requests  # each slice's requests counted once
    assert sum(r.state.pages for r in results if r.state) == requests
    truth = _by_day(data.surveys_modified_between(0, SPARSE, *YEAR))
    synced: dict[str, set[int]] = defaultdict(set)
    for batch in store.read_partitions(TableSpec.of(source, source.stream("surveys")), [k for k, _ in days]):
        for key, ident in zip(batch.column(PARTITION_COLUMN).to_pylist(), batch.column("id").to_pylist(), strict=True):
            synced[key].add(ident)
    assert dict(synced) == truth  # midnight records included: each in the day that starts then
    states = store.partition_states(TableSpec.of(source, source.stream("surveys")))
    assert {k: s.records for k, s in states.items() if s.records} == {k: len(v) for k, v in truth.items()}


def test_a_capped_search_splits_a_slice_that_reaches_the_cap_and_loses_nothing(
    demo_api: Callable[..., DemoApi], tmp_path: Path, client_for: ClientFor
) -> None:
    api = demo_api(surveys=2000, search_max_results=50)
    search = {"path": "/v3/surveys/search", "method": "POST", "params_in": "body"}
    march = [(partition_key(w.start, "daily"), w) for w in _days(datetime(2024, 3, 1, tzinfo=UTC),
                                                                 datetime(2024, 4, 1, tzinfo=UTC))]
    truth = sorted(s["id"] for s in data.surveys_modified_between(0, 2000, march[0][1].start, march[-1][1].end))
    assert len(truth) > 100

    def sync(cap: int | None, store_dir: str) -> tuple[list[Any], list[int]]:
        source = make_source(api, [{**_surveys(max_records_per_slice=cap), **search}])
        client, store = client_for(source), open_store(tmp_path / store_dir)
        results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, march, 2))
        return results, sorted(r["id"] for r in stored(store, "surveys", [k for k, _ in march]))

    api.reset_stats()
    results, ids = sync(50, "capped")
    assert all(r.error is None for r in results) and ids == truth
    assert sum(r.stats.requests for r in results) == api.stats()["requests"]  # the reads cut short counted too
    assert all(len(r.slice.windows) <= 15 for r in results)  # two slices of 15 and 16 days were split
    _, lost = sync(None, "uncapped")  # the same API without the setting: the cap cuts slices short
    assert len(lost) < len(truth)

    tiny = make_source(api, [{**_surveys(max_records_per_slice=3), **search}])
    client, store = client_for(tiny), open_store(tmp_path / "tiny")
    failed = list(sync_windows(StreamReader(tiny, tiny.stream("surveys"), client), store, march[:1], 1))
    assert isinstance(failed[0].error, SyncSystemError) and "max_records_per_slice" in str(failed[0].error)


@pytest.mark.parametrize("door", ["dagster", "cli", "airbyte"])
def test_every_front_door_reads_a_sparse_year_with_about_one_range_reads_requests(
    door: str, demo_api: Callable[..., DemoApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A year of daily windows of 5 records each, through each front door: the requests follow the data."""
    from dagster import instance_for_test

    from sync_assets.cli import main
    from sync_assets.sources import DEMO_SOURCE_PATH
    from sync_assets_tests.dagster.helpers import demo_defs, run, store_of

    api = demo_api(surveys=SPARSE)
    monkeypatch.setenv("SYNC_ASSETS_HOME", str(tmp_path / "home"))
    truth = {s["id"] for s in data.surveys_modified_between(0, SPARSE, *YEAR)}
    if door == "dagster":
        with instance_for_test() as instance:
            assert run(demo_defs(api), instance, partition_range=("2024-01-01", "2024-12-31")).success
            keys = [partition_key(w.start, "daily") for w in _days(*YEAR)]
            ids = {r["id"] for r in stored(store_of(instance), "surveys", keys)}
        slices = 10
    else:
        monkeypatch.setenv("SYNC_ASSETS_DEMO_URL", api.url)
        monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", TOKEN)
        if door == "cli":
            assert main(["read", str(DEMO_SOURCE_PATH), "surveys", "--start", "2024-01-01", "--end", "2025-01-01"]) == 0
            slices = 10
        else:
            catalog = {"streams": [{"stream": {"name": "surveys", "json_schema": {}, "supported_sync_modes": [
                "incremental"]}, "sync_mode": "incremental", "destination_sync_mode": "append"}]}
            (tmp_path / "catalog.json").write_text(json.dumps(catalog))
            (tmp_path / "config.json").write_text(json.dumps({"SYNC_ASSETS_DEMO_TOKEN": TOKEN,
                                                              "SYNC_ASSETS_DEMO_URL": api.url}))
            assert main(["airbyte", str(DEMO_SOURCE_PATH), "read", "--config", str(tmp_path / "config.json"),
                         "--catalog", str(tmp_path / "catalog.json")]) == 0
            slices = 10  # the read goes on to today: its later slices are one empty page each
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        ids = {(line["record"]["data"] if door == "airbyte" else line)["id"] for line in lines
               if door == "cli" or line["type"] == "RECORD"}
    assert ids == truth
    assert api.stats()["by_path"]["/v3/surveys"] <= -(-SPARSE // 100) + slices  # a range read's 19, one more a slice


def test_a_slice_that_runs_deep_while_threads_are_idle_is_cut_up_for_them(
    demo_api: Callable[..., DemoApi], tmp_path: Path, client_for: ClientFor
) -> None:
    """Half a year with no records, then ten busy days: the slice that holds them would be read a page at a
    time by one thread while nine are done; it is cut up, and every record still lands in its day."""
    api = demo_api(surveys=73_200, latency_ms=20)  # about 200 records a day in 2024, none before
    source = make_source(api, [_surveys()], concurrency=10)
    windows = _days(datetime(2023, 7, 1, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC))
    days = [(partition_key(w.start, "daily"), w) for w in windows]
    planned = plan_slices(windows, source.stream("surveys").incremental, 10)  # type: ignore[arg-type]
    busy = [s for s in planned if s.window.end > YEAR[0]]
    assert len(busy) == 1 and len(busy[0].windows) > 10  # as planned, one slice holds all ten busy days
    client, store = client_for(source), open_store(tmp_path / "store")
    results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, days, 10))
    assert all(r.error is None for r in results)
    read_as = {r.slice for r in results if r.window.start >= YEAR[0]}
    assert len(read_as) > 1  # the busy days were read by several slices
    assert sum(r.stats.requests for r in results) == api.stats()["requests"]  # the cut-up read's too
    truth = _by_day(data.surveys_modified_between(0, 73_200, windows[0].start, windows[-1].end))
    synced = _by_day(stored(store, "surveys", [k for k, _ in days]))
    assert synced == truth and len(truth) == 10
