"""Incremental streams as date-window partitions, run for real on a temporary Dagster instance."""


import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import requests
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    asset,
    materialize,
)
from dagster._core.execution.context.metadata_logging import OutputMetadataAccumulator

from sync_assets.dagster import SyncApiResource, SyncAssetsTranslator, build_definitions
from sync_assets.dagster.assets import add_partition_metadata
from sync_assets.demo_api import DemoApi, data
from sync_assets.sources import demo_source
from sync_assets.spec import Stream
from sync_assets.storage import TableSpec
from sync_assets.windows import parse_cursor
from sync_assets_tests.conftest import postgres_database
from sync_assets_tests.dagster.helpers import SURVEYS, demo_defs, run, store_of
from sync_assets_tests.helpers import TOKEN, stored

SURVEY_COUNT = 2000


@pytest.fixture
def surveys_api(demo_api: Callable[..., DemoApi]) -> DemoApi:
    return demo_api(surveys=SURVEY_COUNT)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_range_run_puts_every_record_in_exactly_one_window(surveys_api: DemoApi, instance: DagsterInstance) -> None:
    result = run(demo_defs(surveys_api), instance, partition_range=("2024-01-01", "2024-02-29"))
    assert result.success
    assert len(result.get_asset_materialization_events()) == 60
    store = store_of(instance)
    synced = []
    for key in (f"{(day('2024-01-01') + timedelta(days=i)).date()}" for i in range(60)):
        records = stored(store, "surveys", [key])
        start = day(key)
        assert all(start <= parse_cursor(r["date_modified"]) < start + timedelta(days=1) for r in records)
        synced.extend(records)
    truth = data.surveys_modified_between(0, SURVEY_COUNT, day("2024-01-01"), day("2024-03-01"))
    assert sorted(r["id"] for r in synced) == sorted(r["id"] for r in truth)
    edge = [r for r in truth if parse_cursor(r["date_modified"]).time() == datetime.min.time()]
    offsets = {r["date_modified"][19:] for r in truth}
    assert edge and {"+02:00", "-05:00", "+05:30"} <= offsets  # the edges and offsets were really exercised


def test_materialization_metadata_describes_the_sync(surveys_api: DemoApi, instance: DagsterInstance) -> None:
    result = run(demo_defs(surveys_api), instance, partition="2024-01-05")
    (event,) = result.get_asset_materialization_events()
    metadata = {key: value.value for key, value in event.materialization.metadata.items()}
    truth = data.surveys_modified_between(0, SURVEY_COUNT, day("2024-01-05"), day("2024-01-06"))
    assert metadata["dagster/row_count"] == len(truth) and "records" not in metadata  # said once
    assert metadata["requests"] == metadata["pages"] == 1 and metadata["retries"] == 0
    assert metadata["received_kib"] > 0 and metadata["dropped_out_of_window"] == 0
    assert 0 < metadata["duration_seconds"] <= metadata["run_duration_seconds"]  # the partition's own, and the run's
    assert metadata["window_start"] == day("2024-01-05").timestamp()
    assert metadata["window_end"] == day("2024-01-06").timestamp()
    assert metadata["max_cursor"] == max(parse_cursor(r["date_modified"]) for r in truth).timestamp()
    (observed,) = result.get_asset_observation_events()  # the stream's state: the asset's, once per run
    assert observed.asset_observation_data.asset_observation.metadata["stream_state"].value == \
        day("2024-01-01").timestamp()  # 01-01 to 01-04 not synced yet
    assert "stream_state" not in metadata
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"unique_primary_key", "schema_drift"} and all(c.passed for c in checks.values())
    schema = event.materialization.metadata["dagster/column_schema"].value
    assert {c.name: c.type for c in schema.columns} == {  # type: ignore[attr-defined]
        "id": "integer", "title": "string", "date_created": "timestamp", "date_modified": "timestamp",
        "question_count": "integer", "_sync_extracted_at": "timestamp", "_sync_cursor": "timestamp"}


def test_each_partition_of_a_range_run_reports_its_own_figures(surveys_api: DemoApi, instance: DagsterInstance) -> None:
    result = run(demo_defs(surveys_api), instance, partition_range=("2024-01-05", "2024-01-08"))
    events = {e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
              for e in result.get_asset_materialization_events()}
    assert sorted(events) == ["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-08"]
    for key, metadata in events.items():
        truth = data.surveys_modified_between(0, SURVEY_COUNT, day(key), day(key) + timedelta(days=1))
        assert metadata["dagster/row_count"] == len(truth), key
        assert metadata["requests"] == metadata["pages"] == 1, key
        assert (metadata["window_start"], metadata["window_end"]) == (
            day(key).timestamp(), (day(key) + timedelta(days=1)).timestamp())
        assert "stream_state" not in metadata
        # the table's columns ride once, on the run's last event: the one Dagster shows an asset's columns from
        assert ("dagster/column_schema" in metadata) == (key == "2024-01-08"), key
    latest = instance.get_latest_materialization_event(AssetKey(["demo", "surveys"]))
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.partition == "2024-01-08"
    assert "dagster/column_schema" in latest.asset_materialization.metadata
    assert len({m["dagster/row_count"] for m in events.values()}) > 1  # the days differ: a copied total would show
    assert len(result.get_asset_observation_events()) == 1  # the stream's state, once for the run


def test_a_range_read_through_slices_counts_each_slices_requests_once(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    surveys_api.reset_stats()
    result = run(demo_defs(surveys_api), instance, partition_range=("2024-01-01", "2024-01-30"))
    events = {e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
              for e in result.get_asset_materialization_events()}
    assert len(events) == 30
    assert sum(m["requests"] for m in events.values()) == surveys_api.stats()["requests"] < 30
    firsts = {m["request_slice_start"] for m in events.values()}
    assert len(firsts) == 10 and all(m["request_slice_windows"] == 3 for m in events.values())
    for key, metadata in events.items():  # each partition still has its own records
        truth = data.surveys_modified_between(0, SURVEY_COUNT, day(key), day(key) + timedelta(days=1))
        assert metadata["dagster/row_count"] == len(truth), key


def test_partition_metadata_takes_one_pass_on_this_dagster(instance: DagsterInstance) -> None:
    """``add_partition_metadata`` adds a range's metadata in one pass where Dagster keeps it as 1.13 does; if an
    upgrade moves it, this fails instead of the runs silently turning quadratic again (15 s for 8,760 hours)."""
    seen: dict[str, bool] = {}

    @asset(partitions_def=DailyPartitionsDefinition(start_date="2024-01-01"))
    def days(context: AssetExecutionContext) -> None:
        accumulator = getattr(context.get_step_execution_context(), "_metadata_accumulator", None)
        seen["one_pass"] = isinstance(accumulator, OutputMetadataAccumulator)
        add_partition_metadata(context, context.assets_def.key, [(k, {"n": i}) for i, k in
                                                                 enumerate(context.partition_keys)])

    tags = {"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"}
    result = materialize([days], instance=instance, tags=tags)
    assert seen == {"one_pass": True}
    assert {e.partition: e.materialization.metadata["n"].value for e in result.get_asset_materialization_events()} \
        == {"2024-01-01": 0, "2024-01-02": 1, "2024-01-03": 2}


def test_rematerializing_a_partition_replaces_it(surveys_api: DemoApi, instance: DagsterInstance) -> None:
    defs = demo_defs(surveys_api)
    assert run(defs, instance, partition="2024-01-05").success
    first = stored(store_of(instance), "surveys", ["2024-01-05"])
    assert run(defs, instance, partition="2024-01-05").success
    again = stored(store_of(instance), "surveys", ["2024-01-05"])
    assert again == first and len({r["id"] for r in again}) == len(again) > 0


def test_out_of_order_windows_give_the_contiguous_stream_state(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    defs = demo_defs(surveys_api)

    def state_after(partition: str) -> float:
        (event,) = run(defs, instance, partition=partition).get_asset_observation_events()
        return float(event.asset_observation_data.asset_observation.metadata["stream_state"].value)  # type: ignore[arg-type]

    assert state_after("2024-01-03") == day("2024-01-01").timestamp()
    assert state_after("2024-01-01") == day("2024-01-02").timestamp()
    assert state_after("2024-01-02") == day("2024-01-04").timestamp()


def test_a_failed_partition_keeps_its_previous_data_and_state(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    assert run(demo_defs(surveys_api), instance, partition="2024-01-05").success
    store = store_of(instance)
    before = (stored(store, "surveys", ["2024-01-05"]),
              store.partition_states(TableSpec("demo", "surveys"))["2024-01-05"])
    result = run(demo_defs(surveys_api, credential="wrong-token"), instance, partition="2024-01-05")
    assert not result.success
    failure = result.failure_data_for_node("demo__surveys")
    assert failure is not None and "401" in str(failure.error) and "wrong-token" not in str(failure.error)
    after = (stored(store, "surveys", ["2024-01-05"]),
             store.partition_states(TableSpec("demo", "surveys"))["2024-01-05"])
    assert after == before
    assert not list(store.stream_dir(TableSpec("demo", "surveys")).glob(".*.tmp"))


def test_a_range_that_fails_part_way_keeps_and_reports_the_finished_windows(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    # Half the requests fail and nothing is retried: with one slice of two windows at a time the outcome is
    # fixed by the seed. A failed slice fails its two windows; the others are stored.
    flaky = demo_api(surveys=SURVEY_COUNT, fail_rate=0.5, seed=3)
    defs = demo_defs(flaky, concurrency=1, max_attempts=1, surveys={"max_slice": timedelta(days=2)})
    result = run(defs, instance, partition_range=("2024-01-01", "2024-01-10"))
    assert not result.success
    done = instance.get_materialized_partitions(SURVEYS)
    failed = {f"2024-01-{d:02d}" for d in range(1, 11)} - done
    assert done and failed
    assert set(store_of(instance).partition_states(TableSpec("demo", "surveys"))) == done

    healthy = demo_api(surveys=SURVEY_COUNT, seed=3)  # same data, no faults
    for key in sorted(failed):
        assert run(demo_defs(healthy), instance, partition=key).success
    stats = requests.get(f"{healthy.url}/stats", timeout=5).json()
    assert stats["requests"] == len(failed)  # the re-run fetched only what was missing
    truth = data.surveys_modified_between(3, SURVEY_COUNT, day("2024-01-01"), day("2024-01-11"))
    synced = stored(store_of(instance), "surveys", sorted(done | failed))
    assert sorted(r["id"] for r in synced) == sorted(r["id"] for r in truth)


def test_a_configuration_error_fails_fast_and_says_so(surveys_api: DemoApi, instance: DagsterInstance) -> None:
    defs = demo_defs(surveys_api, credential="wrong-token")
    result = run(defs, instance, partition_range=("2024-01-05", "2024-01-06"))
    failure = result.failure_data_for_node("demo__surveys")
    assert failure is not None and failure.user_failure_data is not None
    assert failure.user_failure_data.metadata["error_kinds"].value == ["config_error"]
    assert "check the source's auth settings" in str(failure.error)
    stats = requests.get(f"{surveys_api.url}/stats", timeout=5).json()
    # No retries, and once refused no thread sends again: one request, or two if both windows were in flight.
    assert stats["requests"] == stats["responses_401"] in (1, 2)


def test_downstream_assets_load_records_as_a_list_or_an_iterator(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    from dagster import AssetIn

    defs = demo_defs(surveys_api)
    assert run(defs, instance, partition_range=("2024-01-05", "2024-01-06")).success

    @asset(ins={"surveys": AssetIn(key=SURVEYS)}, partitions_def=defs.get_assets_def(SURVEYS).partitions_def)
    def survey_titles(surveys: list[dict[str, object]]) -> int:
        return len(surveys)

    @asset(ins={"surveys": AssetIn(key=SURVEYS, metadata={"sync_assets/load_as": "iterator"})},
           partitions_def=defs.get_assets_def(SURVEYS).partitions_def)
    def survey_count(surveys: object) -> int:
        assert not isinstance(surveys, list)
        return sum(1 for _ in surveys)  # type: ignore[attr-defined]

    result = materialize([defs.get_assets_def(SURVEYS).to_source_asset(), survey_titles, survey_count],
                         instance=instance, resources=defs.resources, partition_key="2024-01-05")
    assert result.success
    truth = data.surveys_modified_between(0, SURVEY_COUNT, day("2024-01-05"), day("2024-01-06"))
    assert result.output_for_node("survey_titles") == result.output_for_node("survey_count") == len(truth)


def test_downstream_assets_load_what_they_are_annotated_with_from_every_backend(
    surveys_api: DemoApi, instance: DagsterInstance, store_location: str
) -> None:
    from dagster import AssetIn

    defs = demo_defs(surveys_api, store_location)
    assert run(defs, instance, partition_range=("2024-01-05", "2024-01-07")).success
    partitions_def = defs.get_assets_def(SURVEYS).partitions_def
    seen: dict[str, object] = {}

    @asset(ins={"surveys": AssetIn(key=SURVEYS)}, partitions_def=partitions_def)
    def as_arrow(surveys: pa.Table) -> None:
        seen["arrow"] = surveys

    @asset(ins={"surveys": AssetIn(key=SURVEYS)}, partitions_def=partitions_def)
    def as_pandas(surveys: pd.DataFrame) -> None:
        seen["pandas"] = surveys

    @asset(ins={"surveys": AssetIn(key=SURVEYS)}, partitions_def=partitions_def)
    def as_polars(surveys: pl.DataFrame) -> None:
        seen["polars"] = surveys

    @asset(ins={"surveys": AssetIn(key=SURVEYS, metadata={"sync_assets/allow_missing_partitions": True})},
           partitions_def=partitions_def)
    def tolerant(surveys: list[dict[str, object]]) -> None:
        seen["tolerant"] = surveys

    source = defs.get_assets_def(SURVEYS).to_source_asset()
    assert materialize([source, as_arrow, as_pandas, as_polars], instance=instance, resources=defs.resources,
                       partition_key="2024-01-06").success
    truth = data.surveys_modified_between(0, SURVEY_COUNT, day("2024-01-06"), day("2024-01-07"))
    arrow, frame, polars_frame = seen["arrow"], seen["pandas"], seen["polars"]
    assert isinstance(arrow, pa.Table) and isinstance(frame, pd.DataFrame) and isinstance(polars_frame, pl.DataFrame)
    assert sorted(arrow["id"].to_pylist()) == sorted(frame["id"]) == sorted(polars_frame["id"]) == sorted(
        r["id"] for r in truth)  # only the partition asked for
    assert str(arrow.schema.field("date_modified").type) == "timestamp[us, tz=UTC]"
    assert set(arrow["_sync_partition"].to_pylist()) == {"2024-01-06"}
    # 2024-01-08 was never synced: an error that says so, unless the input allows it.
    missing = materialize([source, as_arrow], instance=instance, resources=defs.resources,
                          partition_key="2024-01-08", raise_on_error=False)
    assert not missing.success
    failure = next(e for e in missing.all_events if e.event_type_value == "STEP_FAILURE")
    assert "2024-01-08" in str(failure.event_specific_data)
    assert "materialize it first" in str(failure.event_specific_data)
    assert materialize([source, tolerant], instance=instance, resources=defs.resources,
                       partition_key="2024-01-08").success and seen["tolerant"] == []


def test_a_translator_renames_assets_and_cannot_drop_what_identifies_the_stream(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    from dagster import AssetSpec

    from sync_assets.dagster import SyncAssetsTranslator

    class Prefixed(SyncAssetsTranslator):
        def get_asset_spec(self, source, stream):  # type: ignore[no-untyped-def]
            spec: AssetSpec = super().get_asset_spec(source, stream)
            return spec.replace_attributes(key=AssetKey(["raw", source.name, stream.name]), metadata={})

    defs = build_definitions(demo_source(), translator=Prefixed())
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    renamed = specs[AssetKey(["raw", "demo", "surveys"])]
    assert SURVEYS not in specs and renamed.metadata["sync_assets/stream"] == "surveys"
    renamed_defs = demo_defs(surveys_api, translator=Prefixed())  # and it still syncs and stores
    assert run(renamed_defs, instance, AssetKey(["raw", "demo", "surveys"]), partition="2024-01-05").success


def test_code_versions_follow_the_stream_declaration() -> None:

    def versions(source):  # type: ignore[no-untyped-def]
        return {spec.key.path[-1]: spec.code_version for spec in build_definitions(source).resolve_all_asset_specs()}

    source = demo_source()
    before = versions(source)
    surveys = source.stream("surveys")
    filtered = surveys.model_copy(update={"params": {**surveys.params, "status": "open"}})
    edited = source.model_copy(update={"streams": [filtered if s is surveys else s for s in source.streams]})
    after = versions(edited)
    assert before == versions(demo_source()) and all(before.values())  # stable, and set on every asset
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"surveys", "survey_responses"}  # the substream reads the parents the edit changed


@pytest.fixture
def postgres_store() -> Iterator[str]:
    yield from postgres_database()


def test_a_process_that_runs_many_steps_keeps_no_store_connection_of_the_earlier_ones(
    surveys_api: DemoApi, instance: DagsterInstance, postgres_store: str
) -> None:
    """As a Celery worker does: one process, step after step, against a PostgreSQL store."""
    import psycopg

    def connections() -> int:
        database = postgres_store.rsplit("/", 1)[1]
        with psycopg.connect(postgres_store, autocommit=True) as admin:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                                (database,)).fetchone()
        return int(row[0]) if row else -1

    defs = demo_defs(surveys_api, postgres_store)
    for day in range(1, 21):
        assert run(defs, instance, partition=f"2024-01-{day:02d}").success
        assert connections() == 0  # every step's store connections released when the step ended


def _surveys_repeating_a_key_on_january_4(api: DemoApi, translator: SyncAssetsTranslator | None = None
                                          ) -> Definitions:
    """The demo's surveys alone, every survey of 2024-01-04 given the same id: a partition that fails
    ``unique_primary_key``."""
    source = demo_source()
    surveys = Stream.model_validate({**source.stream("surveys").model_dump(by_alias=True),
                                     "transform": "sync_assets_tests.plugins_for_tests:one_id_on_january_4"})
    return build_definitions(source.model_copy(update={"streams": [surveys]}), translator,
                             api=SyncApiResource(base_url=api.url, credential=TOKEN, rate_limits=[]))


def test_each_partition_of_a_range_run_gets_its_own_check_results(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    defs = _surveys_repeating_a_key_on_january_4(surveys_api)
    assert run(defs, instance, partition_range=("2024-01-03", "2024-01-05")).success
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(SURVEYS, "unique_primary_key"), limit=10)
    by_partition = {record.partition: record.status.value for record in history}
    assert by_partition == {"2024-01-03": "SUCCEEDED", "2024-01-04": "FAILED", "2024-01-05": "SUCCEEDED",
                            None: "FAILED"}  # and the run as a whole, naming 2024-01-04
    assert not any(record.status.value == "SKIPPED" for record in history)


def test_with_asset_checks_off_a_range_run_logs_one_warning_naming_the_partitions_a_check_would_fail(
    surveys_api: DemoApi, instance: DagsterInstance
) -> None:
    defs = _surveys_repeating_a_key_on_january_4(surveys_api, SyncAssetsTranslator(enable_asset_checks=False))
    assert not list(defs.resolve_assets_def(SURVEYS).check_specs)  # nothing planned, nothing to evaluate
    result = run(defs, instance, partition_range=("2024-01-03", "2024-01-05"))
    assert result.success
    assert not instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(SURVEYS, "unique_primary_key"), limit=10)
    logged = [record.user_message for record in instance.all_logs(result.run_id)
              if record.level >= logging.WARNING]
    assert [line for line in logged if line.startswith("unique_primary_key")] == [
        "unique_primary_key did not pass on 1 of 3 partitions (asset checks are off), first ['2024-01-04']: "
        "duplicate_keys=1, primary_key=id"]  # the day's second survey of id 1
