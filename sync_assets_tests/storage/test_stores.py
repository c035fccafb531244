"""Every storage guarantee, once, on every backend (the ``store`` fixture: DuckDB and PostgreSQL).

Engine-level: stages and publishes are driven directly, with records chosen to exercise each
guarantee. The sync kinds that use them (windows, refreshes, substreams) are tested end to end, on
both backends too, in ``test_refresh``, ``test_substream`` and ``test_state``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import psycopg
import pytest

from sync_assets.schema import Drift
from sync_assets.storage import PartitionState, Published, Stage, StageBusyError, Store, TableSpec, open_store
from sync_assets.storage.duckdb import DuckDBStore
from sync_assets.storage.postgres import PostgresStore
from sync_assets.storage.store import PrivateStage
from sync_assets.windows import Window
from sync_assets_tests.conftest import postgres_database

ORDERS = TableSpec("shop", "orders", primary_key=("id",), declared={"id": "integer"}, cursor=True)
DAY = datetime(2024, 1, 1, tzinfo=UTC)


def publish(store: Store, key: str, records: list[dict[str, Any]], table: TableSpec = ORDERS) -> Published:
    """One partition, one page: staged, then published with a state row that counts it."""
    stage = store.private_stage(table, key)
    cursors = [r["updated"] for r in records] if table.cursor else None
    stage.append(records, requests=1, bytes_received=100, cursors=cursors)
    state = PartitionState(key, Window(DAY, DAY + timedelta(days=1)), len(records), 1, 1, 100, None,
                           datetime.now(UTC))
    return store.publish_partition(stage, state)


def order(n: int, updated: datetime = DAY, **more: Any) -> dict[str, Any]:
    return {"id": n, "amount": 10, "updated": updated, **more}


def query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """What a user querying the backend's tables sees (DuckDB's views, or PostgreSQL's tables)."""
    if isinstance(store, DuckDBStore):
        with duckdb.connect(str(store.catalog.path), read_only=True) as db:
            return [tuple(row) for row in db.sql(sql).fetchall()]
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url) as db:
        return [tuple(row) for row in db.execute(sql).fetchall()]


def test_a_partition_is_replaced_with_its_state(store: Store) -> None:
    publish(store, "2024-01-01", [order(1), order(2), order(3)])
    publish(store, "2024-01-01", [order(4), order(5)])
    assert [r["id"] for r in store.records(ORDERS, ["2024-01-01"])] == [4, 5]
    assert store.partition_states(ORDERS)["2024-01-01"].records == 2
    assert query(store, "SELECT count(*) FROM shop.orders") == [(2,)]


def test_two_writers_of_one_partition_leave_data_and_state_of_the_same_writer(store: Store) -> None:
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        stage = store.private_stage(ORDERS, "2024-01-01")
        stage.append([order(n * 100 + i, writer=n) for i in range(n + 1)], cursors=[DAY] * (n + 1))
        barrier.wait()  # every writer has staged; now all publish at once
        store.publish_partition(stage, PartitionState("2024-01-01", None, n + 1, 1, 1, 0, None, datetime.now(UTC)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = list(store.records(ORDERS, ["2024-01-01"]))
    writers = {r["writer"] for r in rows}
    assert len(writers) == 1  # one writer's rows, not a mix
    (winner,) = writers
    assert len(rows) == winner + 1 == store.partition_states(ORDERS)["2024-01-01"].records


@pytest.mark.parametrize(("spill_bytes", "spilled", "held"), [(PrivateStage.SPILL_BYTES, False, True), (1, True, False),
                                                              (1500, True, True)],  # a page here is 630 bytes
                         ids=["held in memory", "spilled to disk", "partly spilled"])
def test_a_window_of_many_pages_is_published_whole_and_in_order(
    store: Store, spill_bytes: int, spilled: bool, held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PrivateStage, "SPILL_BYTES", spill_bytes)
    stage = store.private_stage(ORDERS, "2024-01-01")
    for page in range(5):
        stage.append([order(page * 10 + i, DAY + timedelta(minutes=page)) for i in range(10)],
                     cursors=[DAY + timedelta(minutes=page)] * 10)
    assert isinstance(stage, PrivateStage) and (stage.spilled, stage.held_bytes > 0) == (spilled, held)
    assert stage.held_bytes <= spill_bytes  # the memory bound: what passes it goes to disk
    store.publish_partition(stage, PartitionState("2024-01-01", None, 50, 5, 5, 0, None, datetime.now(UTC)))
    assert [r["id"] for r in store.records(ORDERS, ["2024-01-01"])] == list(range(50))
    assert not stage.spilled and stage.held_bytes == 0  # the publish closed it: nothing held, nothing on disk


def test_a_publish_that_fails_keeps_the_previous_partition_and_its_state(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(store, "2024-01-01", [order(1), order(2)])
    before = store.partition_states(ORDERS)["2024-01-01"]

    def broken(self: Stage) -> Any:
        yield from []
        raise OSError("disk full")  # while the staged pages are being written out

    monkeypatch.setattr(PrivateStage, "batches", broken)
    with pytest.raises(OSError, match="disk full"):
        publish(store, "2024-01-01", [order(7)])
    monkeypatch.undo()
    assert [r["id"] for r in store.records(ORDERS, ["2024-01-01"])] == [1, 2]
    assert store.partition_states(ORDERS)["2024-01-01"] == before


def test_columns_are_typed_widened_as_data_arrives_and_each_change_is_reported(store: Store) -> None:
    first = publish(store, "2024-01-01", [order(1, meta={"tier": "gold"}, tags=["a"])])
    assert first.drift == [] and first.columns["amount"] == "integer" and first.columns["meta"] == "json"
    second = publish(store, "2024-01-02", [order(2, amount=12.5, note="late", tags=[])])
    assert second.drift == [Drift("amount", "integer", "number")]
    assert second.columns["note"] == "string"  # a new field: a new nullable column, not an error
    third = publish(store, "2024-01-03", [order(3, amount="n/a")])
    assert third.drift == [Drift("amount", "number", "string")]
    rows = {r["id"]: r for r in store.records(ORDERS, ["2024-01-01", "2024-01-02", "2024-01-03"])}
    assert rows[1]["meta"] == {"tier": "gold"} and rows[1]["tags"] == ["a"] and rows[1]["note"] is None
    assert rows[2]["note"] == "late" and rows[3]["amount"] == "n/a"
    # Nested values are JSON that the database itself can query.
    json_get = "meta->>'tier'"
    assert query(store, f"SELECT {json_get} FROM shop.orders WHERE id = 1") == [("gold",)]


def test_iso_dates_are_date_columns_the_database_compares_until_a_value_is_not_one(store: Store) -> None:
    first = publish(store, "2024-01-01", [order(1, due="2024-02-01", paid_at="2024-01-05T10:00:00+02:00")])
    assert (first.columns["due"], first.columns["paid_at"]) == ("date", "timestamp") and first.drift == []
    assert query(store, "SELECT id FROM shop.orders WHERE due < DATE '2024-03-01' "
                        "AND paid_at = TIMESTAMPTZ '2024-01-05 08:00:00+00'") == [(1,)]
    second = publish(store, "2024-01-02", [order(2, due="end of month")])
    assert second.drift == [Drift("due", "date", "string")]  # the check names it; nothing is lost
    rows = {r["id"]: r for r in store.records(ORDERS, ["2024-01-01", "2024-01-02"])}
    assert (rows[1]["due"], rows[2]["due"]) == ("2024-02-01", "end of month")


def test_the_current_view_holds_the_latest_version_of_each_key(store: Store) -> None:
    publish(store, "2024-01-01", [order(1, DAY + timedelta(hours=3), status="open"), order(2)])
    publish(store, "2024-01-02", [order(1, DAY + timedelta(days=1, hours=2), status="paid")])
    assert query(store, "SELECT count(*) FROM shop.orders WHERE id = 1") == [(2,)]  # history: one row a day
    assert query(store, "SELECT id, status FROM shop.orders_current ORDER BY id") == [(1, "paid"), (2, None)]


def test_duplicate_keys_are_counted_by_typed_value_and_nulls_never_count(store: Store) -> None:
    table = TableSpec("shop", "codes", primary_key=("code",))
    published = publish(store, "2024-01-01", [{"code": c} for c in ["1", "1", "None", None, None, "2"]], table)
    assert published.duplicate_keys == 1  # "1" twice; "None" is a string, and two nulls are no duplicate


def test_a_stage_lock_has_one_holder_at_a_time_and_leaves_nothing_behind(store: Store) -> None:
    scope, holders, most = "shop/orders/partition/2024-01-01", [0], [0]
    guard = threading.Lock()

    def contend() -> None:
        taken = 0
        while taken < 25:
            try:
                with store.lock(scope):
                    with guard:
                        holders[0] += 1
                        most[0] = max(most[0], holders[0])
                    time.sleep(0.001)
                    with guard:
                        holders[0] -= 1
                taken += 1
            except StageBusyError:
                pass  # another thread held it for the whole patience: ask again

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and not store.locked(scope)
    if isinstance(store, DuckDBStore):
        assert list((store.root / "locks").iterdir()) == []  # released locks are removed, probes create none


# --- DuckDB: the database file is only a catalog of views, so holding it open blocks no writer ----


HOLD_OPEN = """
import sys, time, duckdb
db = duckdb.connect(sys.argv[1])  # read-write, as a DuckDB shell opens it
print("open", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold_open(path: str, seconds: float) -> Any:
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


def test_a_database_held_open_elsewhere_delays_only_the_views_never_the_data(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DuckDBStore(tmp_path / "store")
    publish(store, "2024-01-01", [order(1)])  # the views exist now; later publishes need no lock at all
    monkeypatch.setattr("sync_assets.storage.catalog.CATALOG_PATIENCE_SECONDS", 0.5)
    holder = _hold_open(str(store.catalog.path), 30)
    try:
        publish(store, "2024-01-02", [order(2)])  # an existing stream: no catalog write, no wait
        refunds = TableSpec("shop", "refunds", primary_key=("id",), cursor=True)
        with caplog.at_level("WARNING"):
            publish(store, "2024-01-02", [order(3)], refunds)  # a new stream's view has to wait
        assert "open in another process" in caplog.text
        assert [r["id"] for r in store.records(refunds, ["2024-01-02"])] == [3]  # stored all the same
    finally:
        holder.kill()
        holder.wait()
    assert store.catalog.apply_views()  # what the next publish, or `sync-assets sql`, does
    assert query(store, "SELECT id FROM shop.refunds") == [(3,)]
    assert query(store, "SELECT count(*) FROM shop.orders") == [(2,)]


def test_a_publish_waits_for_the_database_and_says_so(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = DuckDBStore(tmp_path / "store")
    store.partition_states(ORDERS)  # the store exists before the database is held
    holder = _hold_open(str(store.catalog.path), 1.0)
    try:
        with caplog.at_level("WARNING"):
            publish(store, "2024-01-01", [order(1)])
    finally:
        holder.wait()
    assert "waiting for" in caplog.text and "PID" in caplog.text  # DuckDB names the holder
    assert query(store, "SELECT id FROM shop.orders") == [(1,)]


def test_a_store_of_release_0_1_is_never_read_as_empty(tmp_path: Any) -> None:
    """0.1 kept JSON lines in <home>/data; this release refuses, once and clearly, instead of re-syncing over it."""
    from sync_assets.errors import ConfigurationError
    from sync_assets.storage.layout import legacy_store_dir, store_dir

    legacy = legacy_store_dir(tmp_path)
    legacy.mkdir(parents=True)
    (legacy / "state.sqlite").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"synced by sync-assets 0\.1.*mv .*data .*data\.0\.1"):
        open_store(store_dir(tmp_path))
    assert (legacy / "state.sqlite").exists()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_database()


def test_a_postgresql_store_never_shows_its_password(postgres_url: str) -> None:
    from sync_assets.errors import ConfigurationError

    unreachable = "postgresql://sync:Pa55-w0rd-here@127.0.0.1:1/warehouse"  # nothing listens on port 1
    with pytest.raises(ConfigurationError) as error:
        open_store(unreachable)
    assert "Pa55-w0rd-here" not in str(error.value) and "SYNC_ASSETS_STORE_URL" in str(error.value)
    with_password = postgres_url.replace("postgresql://", "postgresql://root:An0ther-pw@", 1)
    assert "An0ther-pw" not in repr(open_store(with_password))


def test_a_lock_in_another_postgresql_database_is_not_this_stores(postgres_url: str) -> None:
    """Advisory locks belong to a database; two stores on one server sync the same stream names."""
    second = postgres_database()
    mine, other = open_store(postgres_url), open_store(next(second))
    try:
        with other.lock("demo/customers/refresh-1/chunk-000000"):
            assert other.locked("demo/customers/refresh-1/chunk-000000")
            assert not mine.locked("demo/customers/refresh-1/chunk-000000")
            with mine.lock("demo/customers/refresh-1/chunk-000000"):  # and it can be taken here
                assert mine.locked("demo/customers/refresh-1/chunk-000000")
    finally:
        mine.close()
        other.close()
        second.close()  # drops the second database


def _stage(store: Store, key: str, records: list[dict[str, Any]]) -> tuple[Stage, PartitionState]:
    stage = store.private_stage(ORDERS, key)
    stage.append(records, cursors=[r["updated"] for r in records])
    return stage, PartitionState(key, None, len(records), 1, 1, 0, None, datetime.now(UTC))


def _days(count: int, rows: int, first_id: int = 0) -> list[tuple[str, list[dict[str, Any]]]]:
    return [((DAY + timedelta(days=d)).date().isoformat(),
             [order(first_id + d * rows + i, DAY + timedelta(days=d)) for i in range(rows)]) for d in range(count)]


def test_partitions_published_together_stay_replaceable_one_by_one(store: Store) -> None:
    days = _days(3, 2)
    staged = [_stage(store, key, records) for key, records in days]
    published = store.publish_partitions([s for s, _ in staged], [p for _, p in staged])
    assert len(published) == 3 and all(p.duplicate_keys == 0 for p in published)
    assert set(store.partition_states(ORDERS)) == {key for key, _ in days}
    stage, state = _stage(store, days[1][0], [order(100)])
    store.publish_partitions([stage], [state])  # a re-sync of the middle day alone
    assert [r["id"] for r in store.records(ORDERS, [days[1][0]])] == [100]
    assert sorted(r["id"] for r in store.records(ORDERS, [days[0][0], days[2][0]])) == [0, 1, 4, 5]
    assert query(store, "SELECT count(*) FROM shop.orders") == [(5,)]


def test_files_follow_the_data_not_the_partition_count(tmp_path: Any) -> None:
    """A year of daily partitions of 5 rows, published slice by slice or one by one (a daily schedule),
    is one file; replacing a day rewrites that file with the day swapped and nothing else changed."""
    store = DuckDBStore(tmp_path)
    days = _days(365, 5)
    for first in range(0, 300, 30):  # ten slices of 30 days
        staged = [_stage(store, key, records) for key, records in days[first:first + 30]]
        store.publish_partitions([s for s, _ in staged], [p for _, p in staged])
    for key, records in days[300:]:  # then one day a run
        store.publish_partition(*_stage(store, key, records))
    files = list(store.stream_dir(ORDERS).glob("*.parquet"))
    assert len(files) == 1
    store.publish_partition(*_stage(store, days[10][0], [order(9_999, DAY + timedelta(days=10))]))
    assert list(store.stream_dir(ORDERS).glob("*.parquet")) == files
    assert query(store, "SELECT count(*) FROM shop.orders") == [(365 * 5 - 4,)]
    assert [r["id"] for r in store.records(ORDERS, [days[10][0]])] == [9_999]
    assert [r["id"] for r in store.records(ORDERS, [days[11][0]])] == [r["id"] for r in days[11][1]]


def test_a_partition_published_alone_by_an_earlier_release_is_replaced_in_its_own_file(tmp_path: Any) -> None:
    store = DuckDBStore(tmp_path)
    publish(store, "2024-01-01", [order(1), order(2)])
    (group,) = store.stream_dir(ORDERS).glob("*.parquet")
    group.rename(group.with_name("2024-01-01.parquet"))  # as release 0.2 left it: one file a partition
    with sqlite3.connect(tmp_path / "state.sqlite") as db:  # its bookkeeping knew no files
        db.execute("DELETE FROM sync_partition_files")
    assert [r["id"] for r in store.records(ORDERS, ["2024-01-01"])] == [1, 2]
    publish(store, "2024-01-01", [order(3)])
    publish(store, "2024-01-02", [order(4)])
    names = sorted(path.name for path in store.stream_dir(ORDERS).glob("*.parquet"))
    assert names[0] == "2024-01-01.parquet" and len(names) == 2 and names[1].startswith("group-")
    assert [r["id"] for r in store.records(ORDERS, ["2024-01-01"])] == [3]
    assert query(store, "SELECT count(*) FROM shop.orders") == [(2,)]


def _publish_days(location: str, first: int, count: int) -> None:
    store = open_store(location)
    for key, records in _days(first + count, 3)[first:]:
        store.publish_partition(*_stage(store, key, records))
    store.close()


def test_processes_publishing_other_partitions_of_one_stream_at_once_lose_none(store_location: str) -> None:
    """Partitions share files (DuckDB's groups) or a table (PostgreSQL): four processes, ten days each, at once."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        for done in [pool.submit(_publish_days, store_location, first, 10) for first in range(0, 40, 10)]:
            done.result()
    store = open_store(store_location)
    days = _days(40, 3)
    assert sorted(r["id"] for r in store.records(ORDERS, [key for key, _ in days])) == list(range(120))
    assert query(store, "SELECT count(*) FROM shop.orders") == [(120,)]


def _open_and_publish(location: str, worker: int, start: Any) -> None:
    """Open a store that may not exist yet and publish a day of one of two streams, as a step process does."""
    start.wait(60)  # every process started and imported: they open the store at the same moment
    store = open_store(location)
    table = ORDERS if worker % 2 else TableSpec("shop", "refunds", primary_key=("id",), cursor=True)
    records = [order(worker * 10 + i) for i in range(3)]
    stage = store.private_stage(table, f"2024-01-{worker + 1:02d}")
    stage.append(records, cursors=[r["updated"] for r in records])
    store.publish_partition(stage, PartitionState(f"2024-01-{worker + 1:02d}", None, 3, 1, 1, 0, None,
                                                  datetime.now(UTC)))
    store.close()


def test_eight_processes_opening_a_fresh_store_at_once_all_succeed(store_location: str) -> None:
    """A new store database (its state schema, tables, a source's schema, two streams' tables) created by
    whichever of eight processes gets there first, every one of them at the same moment."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(8)
    workers = [context.Process(target=_open_and_publish, args=(store_location, n, start)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * 8
    store = open_store(store_location)
    assert query(store, "SELECT count(*) FROM shop.orders") == [(12,)]
    assert query(store, "SELECT count(*) FROM shop.refunds") == [(12,)]


def test_a_stream_whose_first_partitions_are_empty_gets_its_views_with_its_first_rows(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing declares the columns: until rows come there is no key to take the latest version by, and no
    warning about a view that cannot be made yet."""
    events = TableSpec("shop", "events", primary_key=("id",), cursor=True)
    for key in ("2024-01-01", "2024-01-02"):
        publish(store, key, [], events)
    publish(store, "2024-01-03", [order(1), order(2, updated=DAY + timedelta(hours=1))], events)
    assert "could not be created" not in caplog.text
    assert query(store, "SELECT id FROM shop.events_current ORDER BY id") == [(1,), (2,)]
