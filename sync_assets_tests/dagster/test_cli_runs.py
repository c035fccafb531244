"""The real entry points: `dagster asset materialize` processes and the webserver, on a persistent instance."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from dagster import DagsterInstance

from sync_assets.demo_api import DemoApi, data
from sync_assets.home import home_under
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.layout import store_dir
from sync_assets_tests.helpers import TOKEN, stored

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _home(tmp_path: Path) -> Path:
    """A persistent instance with the project's dagster.yaml, its storage created up front (as a
    real deployment's is: several processes creating a fresh SQLite instance at once race)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    DagsterInstance.from_config(str(home)).dispose()
    return home


def _env(api: DemoApi, home: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_DEMO_URL": api.url,
            "SYNC_ASSETS_DEMO_TOKEN": TOKEN}


def _materialize(env: dict[str, str], *selection: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "sync_assets.definitions", *selection],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.slow
def test_range_and_single_partition_runs_share_one_rate_limit(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    """The demo source allows 50 requests/s; the API enforces exactly that, across three processes.

    40,000 surveys make the surveys range about 100 pages (requests follow the data, not the 90 windows),
    so the three runs together ask for over two seconds of budget."""
    surveys = 40_000
    api = demo_api(rate_limit=(50, 1.0), surveys=surveys)
    env = _env(api, _home(tmp_path))
    runs = [
        _materialize(env, "--select", "demo/surveys", "--partition-range", "2024-02-01...2024-04-30"),
        _materialize(env, "--select", "demo/surveys", "--partition", "2024-01-10"),
        _materialize(env, "--select", "demo/stock_prices", "--partition-range", "2024-01-01...2024-02-29"),
    ]
    for process in runs:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["responses_429"] == 0, stats
    assert stats["max_requests_in_window"] <= 50, stats
    assert stats["by_path"]["/v3/surveys"] >= 100 and stats["by_path"]["/v1/prices"] >= 1

    store = open_store(store_dir(home_under(Path(env["DAGSTER_HOME"]))))
    assert len(store.partition_states(TableSpec("demo", "surveys"))) == 90 + 1
    feb = [f"2024-02-{d:02d}" for d in range(1, 30)]
    synced = sorted(r["id"] for r in stored(store, "surveys", feb))
    truth = data.surveys_modified_between(0, surveys, datetime(2024, 2, 1, tzinfo=UTC),
                                          datetime(2024, 3, 1, tzinfo=UTC))
    assert synced == sorted(r["id"] for r in truth)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_webserver_loads_the_demo_assets(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(_home(tmp_path))}
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } isPartitioned groupName } }"}).encode()
    try:
        deadline, nodes = time.monotonic() + 90, None
        while time.monotonic() < deadline and nodes is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    nodes = json.load(response)["data"]["assetNodes"]
            except OSError:
                time.sleep(1)
        assert nodes is not None, "the webserver did not answer within 90 s"
        found = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert found["demo/surveys"]["isPartitioned"] and found["demo/surveys"]["groupName"] == "demo"
        assert "demo/stock_prices" in found
    finally:
        server.terminate()
        server.wait(timeout=30)
