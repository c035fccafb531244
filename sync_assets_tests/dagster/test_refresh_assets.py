"""Full-refresh and substream assets on a real (temporary) Dagster instance."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AllPartitionMapping,
    AssetIn,
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    ExecuteInProcessResult,
    asset,
    build_sensor_context,
    materialize,
)

from sync_assets.dagster import build_definitions, chunk_partitions_name
from sync_assets.demo_api import DemoApi, data
from sync_assets.home import home_under
from sync_assets.sources import demo_source
from sync_assets.storage import TableSpec
from sync_assets.storage.layout import chunk_key, chunk_scope, store_dir
from sync_assets_tests.dagster.helpers import SURVEYS, demo_defs, run, store_of
from sync_assets_tests.dagster.test_cli_runs import BIN, REPO, _env, _home
from sync_assets_tests.helpers import (
    CURRENCIES,
    TICKER_PRICES,
    TICKER_REPORTS,
    TICKERS,
    make_source,
    stored,
    typed,
)

CUSTOMERS = AssetKey(["demo", "customers"])
CUSTOMERS_TABLE = TableSpec("demo", "customers")
RESPONSES = AssetKey(["demo", "survey_responses"])
COUNT = 4500  # 9 pages of 500, 3 chunks of 4 pages


def refresh(defs: Definitions, instance: DagsterInstance, key: AssetKey = CUSTOMERS,
            partition: str | None = None) -> ExecuteInProcessResult:
    """A run of the refresh to work on (the running one, or the next), as start-refresh asks for it."""
    name = chunk_partitions_name(demo_source(), demo_source().stream(key.path[-1]))
    if partition is None:
        partition = chunk_key(store_of(instance).refreshes(TableSpec("demo", key.path[-1])).next_number(), 0)
    if not instance.has_dynamic_partition(name, partition):
        instance.add_dynamic_partitions(name, [partition])
    return run(defs, instance, key, partition=partition)


def downstream_load(defs: Definitions, instance: DagsterInstance) -> list[dict[str, Any]]:
    @asset(ins={"customers": AssetIn(key=CUSTOMERS)})
    def customer_list(customers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return customers

    result = materialize([defs.get_assets_def(CUSTOMERS).to_source_asset(), customer_list], instance=instance,
                         resources=defs.resources)
    return result.output_for_node("customer_list")  # type: ignore[no-any-return]


def test_a_refresh_registers_and_materializes_its_chunks_and_publishes_a_snapshot(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    api = demo_api(customers=COUNT)
    defs = demo_defs(api)
    result = refresh(defs, instance)
    assert result.success
    name = chunk_partitions_name(demo_source(), demo_source().stream("customers"))
    assert instance.get_dynamic_partitions(name) == [chunk_key(1, 0), chunk_key(1, 1), chunk_key(1, 2)]
    assert instance.get_materialized_partitions(CUSTOMERS) == set(instance.get_dynamic_partitions(name))
    # Each chunk's materialization counts its own pages and records, not the run's.
    metadata = {e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
    assert {key: (m["pages"], m["chunk_records"]) for key, m in metadata.items()} == {
        chunk_key(1, 0): (4, 2000), chunk_key(1, 1): (4, 2000), chunk_key(1, 2): (1, 500)}
    assert metadata[chunk_key(1, 0)]["snapshot_published"] is True  # the run's output: its chunk, at the end
    assert metadata[chunk_key(1, 0)]["dagster/row_count"] == COUNT  # the table's rows, not the chunk's
    assert "dagster/row_count" not in metadata[chunk_key(1, 1)]  # a chunk alone: only its own counts
    assert downstream_load(defs, instance) == typed(data.all_customers(0, COUNT), timestamps=("created_at",))


def test_a_chunk_read_by_an_earlier_run_reports_what_the_store_holds_of_it(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    broken = demo_api(customers=COUNT, cursor_cycle=6)  # page 6, in chunk 1, points back: chunk 0 is done
    assert not refresh(demo_defs(broken), instance).success
    resumed = refresh(demo_defs(demo_api(customers=COUNT)), instance)
    assert resumed.success
    (event,) = [e for e in resumed.get_asset_materialization_events() if e.partition == chunk_key(1, 0)]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (metadata["chunk_records"], metadata["pages"], metadata["requests"]) == (2000, 4, 0)


def test_downstream_loads_the_previous_snapshot_while_a_refresh_fails(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    healthy = demo_api(customers=COUNT)
    assert refresh(demo_defs(healthy), instance).success
    flaky = demo_api(customers=COUNT, fail_rate=0.4)  # same data; some pages fail, nothing retried
    failed = refresh(demo_defs(flaky, max_attempts=1), instance)
    assert not failed.success
    assert store_of(instance).refreshes(CUSTOMERS_TABLE).running() is not None
    assert downstream_load(demo_defs(healthy), instance) == typed(data.all_customers(0, COUNT),
                                                                        timestamps=("created_at",))
    assert refresh(demo_defs(healthy), instance).success  # resumes that refresh and publishes it
    assert store_of(instance).refreshes(CUSTOMERS_TABLE).running() is None
    assert downstream_load(demo_defs(healthy), instance) == typed(data.all_customers(0, COUNT),
                                                                        timestamps=("created_at",))


def test_materializing_any_chunk_continues_or_starts_the_current_refresh_and_never_fails_for_it(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    defs = demo_defs(demo_api(customers=COUNT))
    first = refresh(defs, instance, partition=chunk_key(1, 2))  # none runs: refresh 1 starts from its first chunk
    assert first.success
    store = store_of(instance)
    published = store.refreshes(CUSTOMERS_TABLE).published()
    assert published is not None and published.refresh == 1
    assert {chunk_key(1, c) for c in published.chunks} <= instance.get_materialized_partitions(CUSTOMERS)
    stale = refresh(defs, instance, partition=chunk_key(1, 0))  # a chunk of a refresh that is over
    assert stale.success  # not a failure: refresh 2 ran instead, and the asset is not marked failed
    published = store.refreshes(CUSTOMERS_TABLE).published()
    assert published is not None and published.refresh == 2
    assert {chunk_key(2, c) for c in published.chunks} <= instance.get_materialized_partitions(CUSTOMERS)
    assert stored(store, "customers") == data.all_customers(0, COUNT)


def test_each_refresh_has_partitions_of_its_own_so_the_ui_shows_how_far_the_running_one_got(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    healthy = demo_api(customers=COUNT)
    assert refresh(demo_defs(healthy), instance).success  # refresh 1, published
    name = chunk_partitions_name(demo_source(), demo_source().stream("customers"))
    first = set(instance.get_dynamic_partitions(name))
    flaky = demo_api(customers=COUNT, fail_rate=0.5)
    assert not refresh(demo_defs(flaky, max_attempts=1), instance).success  # refresh 2 stops part-way
    store = store_of(instance)
    running = store.refreshes(CUSTOMERS_TABLE).running()
    assert running is not None and running.refresh == 2
    checkpoints = store.refreshes(CUSTOMERS_TABLE).checkpoints(running)
    done = {chunk_key(2, c) for c, checkpoint in checkpoints.items() if checkpoint is not None and checkpoint.done}
    second = {chunk_key(2, c) for c in running.chunks}
    assert not first & second  # refresh 2's chunks are partitions of their own...
    assert instance.get_materialized_partitions(CUSTOMERS) & second == done  # ...materialized only once done
    assert refresh(demo_defs(healthy), instance).success  # refresh 2 resumed and published
    published = store.refreshes(CUSTOMERS_TABLE).published()
    assert published is not None and published.refresh == 2
    keys = {chunk_key(2, c) for c in published.chunks}
    assert set(instance.get_dynamic_partitions(name)) == keys  # refresh 1's partitions are gone
    assert keys <= instance.get_materialized_partitions(CUSTOMERS)


def test_a_substream_runs_with_its_parent_and_reads_it_from_the_store(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    api = demo_api(surveys=2000)
    defs = demo_defs(api)
    result = materialize([defs.get_assets_def(SURVEYS), defs.get_assets_def(RESPONSES)], instance=instance,
                         resources=defs.resources, tags={"dagster/asset_partition_range_start": "2024-01-03",
                                                          "dagster/asset_partition_range_end": "2024-01-05"})
    assert result.success
    store = store_of(instance)
    keys = ["2024-01-03", "2024-01-04", "2024-01-05"]
    parents = stored(store, "surveys", keys)
    expected = sorted(r["id"] for p in parents for r in data.survey_responses(0, p["id"]))
    assert sorted(r["id"] for r in stored(store, "survey_responses", keys)) == expected
    assert instance.get_materialized_partitions(RESPONSES) == set(keys)


def test_a_substream_with_windows_of_its_own_is_partitioned_by_them_and_reads_the_parents_snapshot(
    api: DemoApi, instance: DagsterInstance
) -> None:
    source = make_source(api, [TICKERS, TICKER_PRICES], rate_limits=[])
    defs = build_definitions(source)
    prices, tickers = AssetKey(["demo", "ticker_prices"]), AssetKey(["demo", "tickers"])
    prices_def = defs.get_assets_def(prices)
    assert prices_def.partitions_def == DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    assert tickers in prices_def.asset_deps[prices]
    name = chunk_partitions_name(source, source.stream("tickers"))
    instance.add_dynamic_partitions(name, [chunk_key(1, 0)])
    assert run(defs, instance, tickers, partition=chunk_key(1, 0)).success
    assert run(defs, instance, prices, partition_range=("2024-03-04", "2024-03-06")).success
    keys = ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert instance.get_materialized_partitions(prices) == set(keys)
    for key in keys:
        truth = typed(data.price_rows(0, date.fromisoformat(key), date.fromisoformat(key)), dates=("date",))
        assert sorted(map(str, stored(store_of(instance), "ticker_prices", [key]))) == sorted(map(str, truth))


def test_a_substream_with_windows_of_its_own_depends_on_every_partition_of_a_windowed_parent(
    api: DemoApi, instance: DagsterInstance
) -> None:
    own = {"name": "recent_responses", "path": "/v3/surveys/{parent[id]}/responses", "records_path": "data",
           "primary_key": "id", "parent": {"stream": "surveys"}, "paginator": {"type": "page_number", "size": 100},
           "incremental": {"cursor_field": "submitted_at", "start": "2023-01-01"}}
    source = make_source(api, [demo_source().stream("surveys").model_dump(by_alias=True, exclude_none=True), own],
                         rate_limits=[])
    defs = build_definitions(source)
    responses = AssetKey(["demo", "recent_responses"])
    child = defs.get_assets_def(responses)
    assert isinstance(child.get_partition_mapping(SURVEYS), AllPartitionMapping)  # not the day of the same key
    assert run(defs, instance, SURVEYS, partition_range=("2024-01-01", "2024-01-31")).success
    assert run(defs, instance, responses, partition_range=("2023-09-01", "2023-09-30")).success
    store = store_of(instance)
    parents = stored(store, "surveys", [f"2024-01-{d:02d}" for d in range(1, 32)])
    truth = [r["id"] for p in parents for r in data.survey_responses(0, p["id"]) if r["submitted_at"][:7] == "2023-09"]
    keys = [f"2023-09-{d:02d}" for d in range(1, 31)]
    assert truth and sorted(r["id"] for r in stored(store, "recent_responses", keys)) == sorted(truth)


def test_a_stream_read_over_two_parents_depends_on_both_and_reads_each_combination_of_their_snapshots(
    api: DemoApi, instance: DagsterInstance
) -> None:
    source = make_source(api, [TICKER_REPORTS, TICKERS, CURRENCIES], rate_limits=[])  # parents listed last
    defs = build_definitions(source)
    reports, tickers, currencies = (AssetKey(["demo", name]) for name in ("ticker_reports", "tickers", "currencies"))
    assert defs.get_assets_def(reports).asset_deps[reports] == {tickers, currencies}
    first = chunk_key(1, 0)
    for stream in ("ticker_reports", "tickers", "currencies"):
        instance.add_dynamic_partitions(chunk_partitions_name(source, source.stream(stream)), [first])
    refused = run(defs, instance, reports, partition=first)
    assert not refused.success
    assert "'tickers' has published none yet: refresh 'tickers' first" in str(refused.all_events)
    assert run(defs, instance, tickers, partition=first).success
    assert run(defs, instance, currencies, partition=first).success
    assert run(defs, instance, reports, partition=first).success
    days = (date(2024, 3, 1), date(2024, 3, 7))
    truth = [data.in_currency(row, code) for code in data.CURRENCIES for row in data.price_rows(0, *days)]
    assert len(truth) == 7 * len(data.TICKERS) * len(data.CURRENCIES)
    found = stored(store_of(instance), "ticker_reports")
    assert sorted(map(str, found)) == sorted(map(str, truth))


def test_the_refresh_sensor_starts_and_resumes_refreshes(
    demo_api: Callable[..., DemoApi], instance: DagsterInstance
) -> None:
    defs = demo_defs(demo_api(customers=COUNT))
    (sensor,) = [s for s in defs.sensors or [] if s.name == "demo_refresh_sensor"]
    with build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)  # resources by parameter name, as the daemon passes them
    requested = {(tuple(r.asset_selection or []), r.partition_key) for r in result.run_requests or []}
    assert (tuple([CUSTOMERS]), chunk_key(1, 0)) in requested and len(requested) == 3  # customers, orders, events
    assert result.dynamic_partitions_requests

    flaky = demo_api(customers=COUNT, fail_rate=0.4)
    assert not refresh(demo_defs(flaky, max_attempts=1), instance).success
    store = store_of(instance)
    state = store.refreshes(CUSTOMERS_TABLE).running()
    assert state is not None
    with build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)  # resources by parameter name, as the daemon passes them
    (resume,) = [r for r in result.run_requests or [] if r.asset_selection == [CUSTOMERS]]
    registered = {key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys}
    name = chunk_partitions_name(demo_source(), demo_source().stream("customers"))
    known = set(instance.get_dynamic_partitions(name))
    assert {chunk_key(state.refresh, c) for c in state.chunks} <= known | registered  # every chunk the store knows
    checkpoints = {c: store.checkpoint(chunk_scope("demo", "customers", state.refresh, c)) for c in state.chunks}
    first_unfinished = min(c for c, checkpoint in checkpoints.items() if checkpoint is None or not checkpoint.done)
    assert resume.partition_key == chunk_key(state.refresh, first_unfinished)


@pytest.mark.slow
def test_a_dagster_run_killed_mid_refresh_resumes_where_it_stopped(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    api = demo_api(customers=COUNT, latency_ms=250)
    env = _env(api, _home(tmp_path))
    command = [str(BIN / "sync-assets-dagster"), "start-refresh", "-m", "sync_assets.definitions",
               "--select", "demo/customers"]
    killed = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    state_db = store_dir(home_under(Path(env["DAGSTER_HOME"]))) / "state.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _pages_committed(state_db) < 2:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the CLI and its step process, mid-chunk
    killed.wait(timeout=30)
    pages_at_kill = _pages_committed(state_db)
    assert 2 <= pages_at_kill < 9
    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "Warning" not in finished.stderr, finished.stderr[-3000:]  # nothing a user did not cause
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert stored(store_of(instance), "customers") == data.all_customers(0, COUNT)
    instance.dispose()


def _pages_committed(state_db: Path) -> int:
    if not state_db.exists():
        return 0
    with sqlite3.connect(state_db) as db:
        try:
            return int(db.execute("SELECT COALESCE(SUM(pages), 0) FROM sync_stages "
                                  "WHERE scope LIKE 'demo/customers/%'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
