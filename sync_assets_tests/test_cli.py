"""`sync-assets read/check` end to end against the demo API, in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_assets.cli import main
from sync_assets.demo_api import DemoApi, data
from sync_assets.sources import DEMO_SOURCE_PATH
from sync_assets_tests.helpers import TOKEN


@pytest.fixture
def demo_env(api: DemoApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SYNC_ASSETS_DEMO_URL", api.url)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", TOKEN)
    monkeypatch.setenv("SYNC_ASSETS_HOME", str(tmp_path / "home"))
    return tmp_path


def test_read_windows_of_an_incremental_stream(demo_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = demo_env / "surveys.jsonl"
    code = main(["read", str(DEMO_SOURCE_PATH), "surveys", "--start", "2024-01-01", "--end", "2024-03-01",
                 "-o", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = data.surveys_modified_between(
        0, 400, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
    )
    # windows are written whole, in the order they finish: each window's records in the API's order
    assert sorted(records, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"]) and len(records) > 50
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["windows"] == 60 and summary["records"] == len(expected)
    # 60 windows read as 10 slices (the source's concurrency), each of them one page: requests follow the data
    assert summary["dropped_out_of_window"] == 0 and summary["slices"] == 10 and summary["requests"] == 10
    assert not out.with_name("surveys.jsonl.partial").exists()


def test_read_a_full_refresh_stream_to_stdout(demo_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", str(DEMO_SOURCE_PATH), "events"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == data.all_events(0, 170)


def test_configuration_errors_exit_2_with_a_masked_message(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", "not-the-right-token")
    assert main(["read", str(DEMO_SOURCE_PATH), "customers"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: 401" in err and "not-the-right-token" not in err
    assert main(["read", str(DEMO_SOURCE_PATH), "customers", "--start", "2024-01-01"]) == 2
    assert "not incremental" in capsys.readouterr().err


def test_check_lists_streams(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(DEMO_SOURCE_PATH)]) == 0
    out = capsys.readouterr().out
    assert "demo/surveys: /v3/surveys (incremental on date_modified, daily windows; page_number pagination)" in out
    assert "demo/customers: /v1/customers (resumable full refresh; cursor pagination)" in out
    assert "demo/survey_responses: /v3/surveys/{parent[id]}/responses (substream of surveys: " in out


def test_a_window_in_the_future_gives_no_records_and_no_error(
    demo_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["read", str(DEMO_SOURCE_PATH), "surveys", "--start", "2999-01-01", "--end", "2999-01-03"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.err.strip().splitlines()[-1])
    assert captured.out == "" and summary["records"] == 0 and summary["windows"] == 2


def test_reading_a_substream_alone_is_refused_with_the_way_to_read_it(
    demo_env: Path, api: DemoApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.reset_stats()
    assert main(["read", str(DEMO_SOURCE_PATH), "survey_responses"]) == 2
    error = capsys.readouterr().err
    assert "substream of 'surveys'" in error and "sync-assets airbyte" in error and "{parent[id]}" not in error
    assert api.stats()["requests"] == 0  # refused before any request, rather than a 404 that blames the path


def test_sql_queries_the_stores_views_and_loads_no_more_than_duckdb(tmp_path: Path) -> None:
    """A query should cost what DuckDB costs to load: not Arrow, HTTP, pydantic or the source models."""
    from sync_assets.storage.duckdb import DuckDBStore
    from sync_assets_tests.storage.test_stores import order, publish

    publish(DuckDBStore(tmp_path / "store"), "2024-01-01", [order(1), order(2)])
    probe = (
        "import sys\n"
        "from sync_assets.cli import main\n"
        "code = main(['sql', 'SELECT count(*) AS n, max(id) AS top FROM shop.orders', '--store', sys.argv[1]])\n"
        "heavy = ('pyarrow', 'requests', 'pydantic', 'sync_assets.spec', 'sync_assets.http', 'dagster')\n"
        "print('loaded:', [m for m in heavy if m in sys.modules], code)\n"
    )
    shown = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "store")], capture_output=True, text=True,
                           check=True).stdout
    assert re.search(r"│\s+2\s+│\s+2\s+│", shown), shown  # count 2, top id 2
    assert shown.strip().endswith("loaded: [] 0"), shown


def test_sql_names_what_to_do_when_there_is_no_store_to_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sql", "SELECT 1", "--store", str(tmp_path)]) == 2
    assert "holds no sync-assets store; sync something first, or pass --store" in capsys.readouterr().err
    assert main(["sql", "SELECT 1", "--store", "postgresql://127.0.0.1/test"]) == 2
    assert "query its tables with psql" in capsys.readouterr().err
