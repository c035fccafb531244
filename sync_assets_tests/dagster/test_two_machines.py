"""What a Kubernetes or Celery deployment does, on one machine: two working directories that share no file.

One Dagster instance whose storage is PostgreSQL (dagster-postgres), the sync-assets store and the
rate-limit budget in the same PostgreSQL, and each "pod" with its own empty DAGSTER_HOME holding only
the instance's dagster.yaml. A refresh killed in the first pod is finished, from its last committed
page, by the second. This is the example of docs/running-at-scale.md, run as a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from sync_assets.demo_api import DemoApi, data
from sync_assets.storage import TableSpec, open_store
from sync_assets_tests.conftest import postgres_database
from sync_assets_tests.dagster.test_cli_runs import BIN
from sync_assets_tests.helpers import TOKEN, stored

COUNT = 4500  # 9 pages of 500 (the demo source's page size), 3 chunks of 4 pages at most
INSTANCE_YAML = """
storage:
  postgres:
    postgres_url: {env: DAGSTER_POSTGRES_URL}
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 3
"""


@pytest.fixture
def database() -> Iterator[str]:
    yield from postgres_database()


def _pod(tmp_path: Path, name: str, url: str, api: DemoApi) -> dict[str, str]:
    """A working directory of its own: an empty DAGSTER_HOME with the instance's dagster.yaml, nothing else."""
    home = tmp_path / name / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    # dagster-postgres speaks psycopg2 (with psycopg 3, SQLAlchemy 2.1's default, its NOTIFY fails).
    instance_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    return {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": instance_url, "SYNC_ASSETS_STORE_URL": url,
            "SYNC_ASSETS_RATE_LIMIT_URL": url, "SYNC_ASSETS_DEMO_URL": api.url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN}


def _pages_committed(url: str) -> int:
    store = open_store(url)
    try:
        refreshes = store.refreshes(TableSpec("demo", "customers"))
        running = refreshes.running()
        return 0 if running is None else sum(c.pages for c in refreshes.checkpoints(running).values() if c)
    finally:
        store.close()


@pytest.mark.slow
def test_a_refresh_killed_in_one_pod_finishes_in_another_from_its_last_page(
    demo_api: Callable[..., DemoApi], database: str, tmp_path: Path
) -> None:
    api = demo_api(customers=COUNT, latency_ms=250)
    command = [str(BIN / "sync-assets-dagster"), "start-refresh", "-m", "sync_assets.definitions",
               "--select", "demo/customers"]
    first, second = _pod(tmp_path, "pod-a", database, api), _pod(tmp_path, "pod-b", database, api)
    killed = subprocess.Popen(command, env=first, cwd=tmp_path / "pod-a", stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _pages_committed(database) < 3:
        time.sleep(0.1)
    os.killpg(killed.pid, signal.SIGKILL)  # the CLI and its step process, mid-refresh: a lost pod
    killed.wait(timeout=30)
    pages_at_kill = _pages_committed(database)
    assert 3 <= pages_at_kill < 9
    requests.post(f"{api.url}/stats/reset", timeout=5)

    finished = subprocess.run(command, env=second, cwd=tmp_path / "pod-b", capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert stored(open_store(database), "customers") == data.all_customers(0, COUNT)
    # The second pod asked only for the pages the first had not committed (the kill may lose one in flight).
    assert requests.get(f"{api.url}/stats", timeout=5).json()["requests"] <= 9 - pages_at_kill + 1
    for pod in ("pod-a", "pod-b"):  # and neither pod kept anything of the store, or of the budget, on its disk
        assert not list((tmp_path / pod).rglob("sync_assets")), sorted((tmp_path / pod).rglob("*"))
