"""Shared fixtures: real demo APIs on loopback, and real stores on every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from sync_assets.demo_api import DemoApi, DemoApiConfig
from sync_assets.http import HttpClient, open_client
from sync_assets.reader import StreamReader
from sync_assets.spec import ApiSource
from sync_assets.storage import Store, open_store
from sync_assets_tests.helpers import TOKEN, ClientFor, OpenReader

# The tests know the demo data of 2024 (the demo source's default start); `scripts/dev.py demo` moves the
# source to recent days through this variable, which a shell that ran the demo may still hold.
os.environ.pop("SYNC_ASSETS_DEMO_START", None)


@pytest.fixture
def demo_api() -> Iterator[Callable[..., DemoApi]]:
    """Start demo APIs with the given config; all are stopped at the end of the test."""
    started: list[DemoApi] = []

    def start(**config: Any) -> DemoApi:
        config.setdefault("token", TOKEN)
        api = DemoApi(DemoApiConfig(**config)).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[ClientFor]:
    """Clients opened as a user's code opens them (``open_client``, the budget's files under ``tmp_path``),
    each closed when the test ends, however it ends: a test that fails half-way must not leave a session
    or a rate-limit database open behind it, and a test says what it checks, not how it tidies up."""
    with ExitStack() as opened:

        def open_one(source: ApiSource) -> HttpClient:
            client = open_client(source, tmp_path)
            opened.callback(client.close)
            return client

        yield open_one


@pytest.fixture
def open_reader(client_for: ClientFor) -> OpenReader:
    """Readers of a source's streams, as a user's code opens them: a client each, closed with the others."""

    def open_one(source: ApiSource, stream: str) -> StreamReader:
        return StreamReader(source, source.stream(stream), client_for(source))

    return open_one


@pytest.fixture
def api(demo_api: Callable[..., DemoApi]) -> DemoApi:
    """A small demo API requiring the bearer token TOKEN."""
    return demo_api(customers=230, orders=310, events=170, surveys=400)


# --- stores: every storage guarantee is tested on every backend ---------------------------------

POSTGRES_URL = os.environ.get("SYNC_ASSETS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped after it); skips if there is no server."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'sync-assets[postgres]'): PostgreSQL-backed tests skipped")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_URL} (set SYNC_ASSETS_TEST_POSTGRES): {exc}")
    name = f"sync_assets_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["duckdb", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's store lives, once per backend: a folder (DuckDB and Parquet) or a PostgreSQL URL."""
    if request.param == "duckdb":
        yield str(tmp_path / "store")
    else:
        yield from postgres_database()


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:
    """The test's store, on every backend in turn, closed when the test ends: a store left open holds
    connections that the PostgreSQL database's drop has to force, and file handles under ``tmp_path``."""
    opened = open_store(store_location)
    yield opened
    opened.close()
