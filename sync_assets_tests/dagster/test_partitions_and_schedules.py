"""Dagster's partitions and the engine's windows are the same thing; schedules ask for the newest windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey, build_schedule_context

from sync_assets.dagster import SyncStoreIOManager, build_definitions
from sync_assets.dagster.partitions import partitions_for, window_for
from sync_assets.sources import demo_source
from sync_assets.windows import Incremental, partition_key, windows_between


@pytest.mark.parametrize("size", ["hourly", "daily", "weekly", "monthly"])
def test_partition_keys_map_to_the_engine_windows(size: str) -> None:
    start = datetime(2024, 1, 3, 7, 30, tzinfo=UTC)
    incremental = Incremental(cursor_field="t", start=start, window=size)  # type: ignore[arg-type]
    partitions_def = partitions_for(incremental)
    now = datetime(2024, 4, 1, tzinfo=UTC)
    keys = partitions_def.get_partition_keys(current_time=now)[:5]
    engine = list(windows_between(datetime(2023, 12, 1, tzinfo=UTC), now, incremental.window))
    engine_by_key = {partition_key(w.start, incremental.window): w for w in engine}
    for key in keys[1:]:
        assert engine_by_key[key] == window_for(partitions_def, key, incremental), key
    first = window_for(partitions_def, keys[0], incremental)
    # The first partition is the window holding the start, read from the start on (as the CLI does).
    assert first.start == start and first.end == engine_by_key[keys[0]].end


def test_the_schedule_requests_the_newest_windows_as_one_range_run() -> None:
    defs = build_definitions(demo_source(), schedule_lookback=3)
    (schedule,) = defs.schedules
    assert schedule.name == "demo_schedule" and schedule.cron_schedule == "15 0 * * *"
    assert schedule.default_status.value == "STOPPED"
    tick = datetime(2024, 5, 10, 0, 15, tzinfo=UTC)
    result = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=tick))
    (request,) = result.run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == str((tick - timedelta(days=3)).date())
    assert request.tags["dagster/asset_partition_range_end"] == str((tick - timedelta(days=1)).date())
    job = defs.resolve_job_def(schedule.job_name)
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert keys == {"demo/stock_prices", "demo/surveys", "demo/survey_responses"}  # the substream goes with its parent


def test_the_schedule_also_re_syncs_every_window_that_ended_within_a_streams_lookback() -> None:
    source = demo_source()
    surveys = source.stream("surveys")
    assert surveys.incremental is not None
    late = surveys.model_copy(update={"incremental": surveys.incremental.model_copy(
        update={"lookback": timedelta(days=5, hours=1)})})
    source = source.model_copy(update={"streams": [late if s.name == "surveys" else s for s in source.streams]})
    (schedule,) = build_definitions(source, schedule_lookback=2).schedules
    tick = datetime(2024, 5, 10, 0, 15, tzinfo=UTC)
    (request,) = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=tick)).run_requests or []
    # the windows ending after 2024-05-04 23:15: the 4th (ends at midnight on the 5th) to the 9th
    assert request.tags["dagster/asset_partition_range_start"] == "2024-05-04"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-05-09"


def test_a_stream_starting_in_the_future_has_no_partitions_yet() -> None:
    incremental = Incremental(cursor_field="t", start=datetime(2999, 1, 1, tzinfo=UTC))
    assert partitions_for(incremental).get_partition_keys(current_time=datetime(2026, 11, 22, tzinfo=UTC)) == []


def test_definitions_of_several_sources_merge_and_share_one_store() -> None:
    from dagster import Definitions

    other = demo_source().model_copy(update={"name": "other"})
    merged = Definitions.merge(build_definitions(demo_source()), build_definitions(other))
    Definitions.validate_loadable(merged)
    assert sorted(merged.resources or {}) == ["demo_api", "other_api", "sync_store"]
    assert {s.name for s in merged.schedules or []} == {"demo_schedule", "other_schedule"}


def test_assets_carry_the_stream_description_keys_and_column_schema() -> None:
    from dagster import AssetKey

    specs = {spec.key: spec for spec in build_definitions(demo_source()).resolve_all_asset_specs()}
    surveys = specs[AssetKey(["demo", "surveys"])]
    assert surveys.metadata["sync_assets/primary_key"] == "id"
    assert surveys.metadata["sync_assets/cursor_field"] == "date_modified"
    columns = {c.name: c.type for c in surveys.metadata["dagster/column_schema"].columns}
    assert columns["date_modified"] == "string (date-time)" and columns["id"] == "integer"
    assert surveys.group_name == "demo" and "incremental on date_modified" in (surveys.description or "")
    # plain text: the catalog's rows show descriptions unrendered, so no Markdown marks
    described = surveys.description or ""
    assert described.startswith("GET /v3/surveys from the demo API") and "`" not in described
    responses = specs[AssetKey(["demo", "survey_responses"])]
    assert responses.metadata["sync_assets/parent"] == "surveys"
    description = responses.description or ""
    assert "substream of surveys" in description and "full refresh" not in description


def test_asset_kinds_say_where_the_data_comes_from_and_where_it_lives() -> None:
    for store, lives in ((SyncStoreIOManager(base_dir="/tmp/anywhere"), "duckdb"),
                         (SyncStoreIOManager(url="postgresql://db.internal/sync"), "postgres")):
        defs = build_definitions(demo_source(), store=store)
        for name in ("surveys", "customers", "survey_responses"):
            asset = defs.get_assets_def(AssetKey(["demo", name]))
            assert asset.specs_by_key[asset.key].kinds == {"api", lives}, name


def test_a_stream_that_ends_has_no_partition_and_no_window_past_its_end() -> None:
    from sync_assets.windows import uncovered_windows

    incremental = Incremental(cursor_field="t", start=datetime(2024, 1, 1, tzinfo=UTC), end="2024-01-03T12:00:00Z")
    partitions_def = partitions_for(incremental)
    keys = partitions_def.get_partition_keys(current_time=datetime(2026, 12, 6, tzinfo=UTC))
    assert keys == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert window_for(partitions_def, "2024-01-03", incremental).end == datetime(2024, 1, 3, 12, tzinfo=UTC)
    todo = uncovered_windows(incremental, [], datetime(2026, 12, 6, tzinfo=UTC))  # an Airbyte read, today
    assert todo[-1].end == datetime(2024, 1, 3, 12, tzinfo=UTC) and len(todo) == 3
