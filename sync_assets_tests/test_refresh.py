"""Resumable full refresh: checkpoint per page, killed anywhere and resumed, published as a snapshot."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import psycopg
import pytest
import requests

from sync_assets.demo_api import DemoApi, data
from sync_assets.reader import StreamReader
from sync_assets.refresh import ChunkResult, FullRefresh
from sync_assets.spec import ApiSource, source_from_dict
from sync_assets.storage import StageBusyError, Store, TableSpec, open_store
from sync_assets.storage.duckdb import DuckDBStore
from sync_assets.storage.layout import chunk_scope
from sync_assets.storage.postgres import PostgresStore
from sync_assets_tests.helpers import ClientFor, make_source_data, stored

SIZES = {"customers": 230, "orders": 310, "events": 170}
CUSTOMERS = TableSpec("demo", "customers", "snapshot", ("id",))


def truth(stream: str, seed: int = 0) -> list[dict[str, Any]]:
    if stream == "customers":
        return data.all_customers(seed, SIZES["customers"])
    if stream == "orders":
        return data.all_orders(seed, SIZES["orders"], SIZES["customers"])
    return data.all_events(seed, SIZES["events"])


@pytest.fixture
def refresh_api(demo_api: Callable[..., DemoApi]) -> DemoApi:
    return demo_api(**SIZES)


class RefreshRun(NamedTuple):
    refresh: int
    published: bool
    results: list[ChunkResult]


def refresh(source: ApiSource, stream: str, client_for: ClientFor, location: str, concurrency: int = 4) -> RefreshRun:
    """One run of a stream's refresh to the end of what it can do, in this process (a store of its own, as a
    run opens it)."""
    store = open_store(location)
    try:
        runner = FullRefresh(StreamReader(source, source.stream(stream), client_for(source)), store, concurrency)
        results = list(runner.run())
    finally:
        store.close()
    return RefreshRun(runner.refresh, runner.published is not None, results)


def refresh_data(store: Store, table: TableSpec) -> list[str]:
    """Where a backend keeps each refresh's published data: what a publish or an abandon must clean up."""
    if isinstance(store, DuckDBStore):
        return sorted(p.name for p in store.stream_dir(table).glob("refresh-*"))
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url) as db:
        rows = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                          "AND table_name LIKE %s", (table.source, f"{table.stream}%")).fetchall()
    return sorted(name for (name,) in rows)


@pytest.mark.parametrize(("stream", "chunks"), [("customers", 4), ("orders", 7), ("events", 3)])
def test_a_refresh_reads_every_record_once_in_chunks(
    refresh_api: DemoApi, client_for: ClientFor, store_location: str, store: Store, stream: str, chunks: int
) -> None:
    runner = refresh(source_from_dict(make_source_data(refresh_api.url)), stream, client_for, store_location)
    assert runner.published
    assert sorted(r.chunk for r in runner.results) == list(range(chunks))
    assert stored(store, stream) == truth(stream)


def test_random_access_chunks_are_all_registered_from_the_first_page(
    refresh_api: DemoApi, client_for: ClientFor, store: Store
) -> None:
    source = source_from_dict(make_source_data(refresh_api.url))
    runner = FullRefresh(StreamReader(source, source.stream("orders"), client_for(source)), store, concurrency=1)
    first = next(runner.run())  # chunk 0 done: 13 pages of 25 in chunks of 2 are all known by now
    assert first.chunk == 0
    state = store.refreshes(TableSpec("demo", "orders")).running()
    assert state is not None and state.chunks == {c: (None if c == 0 else c * 50) for c in range(7)}


def _run_driver(state_dir: Path, store: str, url: str, stream: str, *extra: str) -> subprocess.Popen[str]:
    source = state_dir / "source.json"
    source.write_text(json.dumps(make_source_data(url)))
    return subprocess.Popen(
        [sys.executable, "-m", "sync_assets_tests.sync_driver", str(source), str(state_dir), store, "refresh", stream,
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["customers", "orders"])
def test_killed_between_writing_a_page_and_its_checkpoint_then_resumed(
    refresh_api: DemoApi, tmp_path: Path, store_location: str, store: Store, stream: str
) -> None:
    for die_at in (1, 3, 6):  # the first page, inside a chunk, at a chunk boundary (3 pages a chunk)
        killed = _run_driver(tmp_path, store_location, refresh_api.url, stream, "--die-at-checkpoint", str(die_at))
        killed.communicate(timeout=60)
        assert killed.returncode == -signal.SIGKILL
    finished = _run_driver(tmp_path, store_location, refresh_api.url, stream)
    out, err = finished.communicate(timeout=60)
    assert finished.returncode == 0 and out.strip().endswith("published"), out + err
    assert stored(store, stream) == truth(stream)


def test_readers_see_the_last_complete_snapshot_until_the_next_is_published(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store_location: str, store: Store
) -> None:
    healthy = demo_api(**SIZES)
    assert refresh(source_from_dict(make_source_data(healthy.url)), "customers", client_for, store_location).published
    first = stored(store, "customers")
    # A refresh that fails half-way (the API breaks down after a few pages) publishes nothing.
    broken = demo_api(fail_rate=0.6, **SIZES)  # same seed, same data: only the faults differ
    source = source_from_dict(make_source_data(broken.url, retry={"max_attempts": 1}))
    failed = refresh(source, "customers", client_for, store_location)
    assert not failed.published and any(r.error for r in failed.results)
    assert stored(store, "customers") == first == truth("customers")
    # The next run finishes that refresh; the old snapshot is removed once the new one is published.
    resumed = refresh(source_from_dict(make_source_data(healthy.url)), "customers", client_for, store_location)
    assert resumed.published and resumed.refresh == failed.refresh == 2
    assert stored(store, "customers") == first
    assert refresh_data(store, CUSTOMERS) == (["refresh-2"] if isinstance(store, DuckDBStore) else ["customers"])
    # And the refresh after that starts from the first page again.
    requests.post(f"{healthy.url}/stats/reset", timeout=5)
    third = refresh(source_from_dict(make_source_data(healthy.url)), "customers", client_for, store_location)
    assert third.refresh == 3 and requests.get(f"{healthy.url}/stats", timeout=5).json()["requests"] == 12


def test_a_duckdb_query_that_listed_the_old_snapshot_never_reads_the_new_one_under_its_names(
    refresh_api: DemoApi, tmp_path: Path, client_for: ClientFor
) -> None:
    """A query expands ``snapshot/*.parquet`` when it starts and opens the files later; a publish in between
    repoints ``snapshot``. The files it listed must then be missing, not the next refresh's files."""
    location = str(tmp_path / "store")
    source = source_from_dict(make_source_data(refresh_api.url))
    assert refresh(source, "customers", client_for, location).published
    store = open_store(location)
    assert isinstance(store, DuckDBStore)
    listed = sorted(str(path) for path in (store.stream_dir(CUSTOMERS) / "snapshot").glob("*.parquet"))
    assert len(listed) > 1
    assert refresh(source, "customers", client_for, location).published
    assert not any(Path(path).exists() for path in listed)
    with pytest.raises(duckdb.IOException):
        duckdb.sql(f"SELECT count(*) FROM read_parquet({listed!r})").fetchall()


def test_files_left_in_a_refresh_folder_by_a_publish_that_died_are_not_published(
    refresh_api: DemoApi, tmp_path: Path, client_for: ClientFor
) -> None:
    """Chunk files were named chunk-<k>.parquet until this release: a publish killed then left them behind."""
    location = str(tmp_path / "store")
    source = source_from_dict(make_source_data(refresh_api.url))
    assert refresh(source, "customers", client_for, location).published
    store = open_store(location)
    assert isinstance(store, DuckDBStore)
    leftover = store.refresh_dir(CUSTOMERS, 2) / "chunk-000000.parquet"
    leftover.parent.mkdir()
    shutil.copy(next(store.refresh_dir(CUSTOMERS, 1).glob("*.parquet")), leftover)
    assert refresh(source, "customers", client_for, location).published
    assert not leftover.exists() and stored(store, "customers") == truth("customers")


def test_one_chunk_is_read_by_one_process_at_a_time(store: Store) -> None:
    scope = chunk_scope("demo", "customers", 1, 0)
    first = store.open_stage(CUSTOMERS, scope)
    assert store.locked(scope)
    with pytest.raises(StageBusyError):
        store.open_stage(CUSTOMERS, scope)
    first.append([{"id": 1}], requests=1, token="next")
    first.close()
    assert not store.locked(scope)
    again = store.open_stage(CUSTOMERS, scope)
    assert again.checkpoint.records == 1 and again.checkpoint.token == "next"
    again.close()


def test_asking_whether_a_chunk_is_busy_never_makes_its_reader_fail(store: Store) -> None:
    """The sensor probes chunks while runs open them; a probe holds the lock for a moment only."""
    scope = chunk_scope("demo", "customers", 1, 0)
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            store.locked(scope)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(200):
            store.open_stage(CUSTOMERS, scope).close()
    finally:
        stop.set()
        prober.join()


@pytest.mark.parametrize("paginator", [
    {"type": "offset", "limit_param": "lim", "limit": 50, "total_path": "total"},  # the API ignores "lim"
    {"type": "page_number", "page_param": "page", "size_param": "per", "size": 50, "total_path": "total"},
])
def test_pages_of_another_size_than_configured_fail_instead_of_skipping_records(
    refresh_api: DemoApi, client_for: ClientFor, store_location: str, store: Store, paginator: dict[str, Any]
) -> None:
    stream = {"name": "orders", "path": "/v1/orders", "records_path": "items", "chunk_pages": 2,
              "paginator": paginator}
    if paginator["type"] == "page_number":
        stream = {**stream, "path": "/v3/surveys", "records_path": "data", "name": "surveys"}
    source = source_from_dict(make_source_data(refresh_api.url, [stream]))
    runner = refresh(source, stream["name"], client_for, store_location)
    errors = [str(r.error) for r in runner.results if r.error]
    assert not runner.published and errors and "not the page size 50" in errors[0]
    assert stored(store, stream["name"]) == []


def test_an_abandoned_refresh_is_removed_and_the_next_one_starts_over(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store_location: str, store: Store
) -> None:
    flaky = demo_api(fail_rate=0.6, **SIZES)
    source = source_from_dict(make_source_data(flaky.url, retry={"max_attempts": 1}))
    failed = refresh(source, "customers", client_for, store_location)
    assert not failed.published and store.refreshes(CUSTOMERS).abandon() == failed.refresh
    assert refresh_data(store, CUSTOMERS) == []
    healthy = demo_api(**SIZES)
    again = refresh(source_from_dict(make_source_data(healthy.url)), "customers", client_for, store_location)
    assert again.published and again.refresh == failed.refresh + 1
    assert requests.get(f"{healthy.url}/stats", timeout=5).json()["requests"] == 12  # every page, from the first
    assert stored(store, "customers") == truth("customers")


def test_a_refresh_whose_cursors_cycle_fails_and_publishes_nothing(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store_location: str, store: Store
) -> None:
    api = demo_api(customers=230, cursor_cycle=5)
    runner = refresh(source_from_dict(make_source_data(api.url)), "customers", client_for, store_location)
    errors = [str(r.error) for r in runner.results if r.error]
    assert not runner.published and errors and "already followed" in errors[0]
    assert stored(store, "customers") == []


def test_a_cursor_pointing_back_into_an_earlier_chunk_or_run_is_a_cycle_too(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, store_location: str, store: Store
) -> None:
    """Chunk 1 starts a read of its own (in this run, or in a later one): the tokens chunk 0 followed must
    still count, or a cursor pointing back from page 4 to page 3 stores page 3 twice."""
    broken = demo_api(customers=230, cursor_cycle=4)  # page 4, chunk 1's first, points back to page 3
    failed = refresh(source_from_dict(make_source_data(broken.url)), "customers", client_for, store_location)
    assert not failed.published and "already followed" in str([r.error for r in failed.results if r.error])
    healthy = demo_api(customers=230)
    resumed = refresh(source_from_dict(make_source_data(healthy.url)), "customers", client_for, store_location)
    assert resumed.published and resumed.refresh == failed.refresh
    assert stored(store, "customers") == truth("customers")
