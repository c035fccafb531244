"""Steps, or whole runs, on Celery workers as a platform team deploys them: docs/examples/celery, run as tests.

Two workers (RabbitMQ broker, a vhost of the test's own), each in a working directory of its own with
its own HOME, TMPDIR and DAGSTER_HOME (sharing no file, as two pods), and a launcher in a third. The
Dagster instance, the store and the budget are one PostgreSQL database. A range run and a refresh run
at once, so each worker takes a step; the worker running the refresh is SIGKILLed mid-way (a lost pod),
RabbitMQ gives its step to the other worker, and the refresh finishes from its last committed page.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from sync_assets.demo_api import DemoApi, data
from sync_assets.storage import TableSpec, open_store
from sync_assets_tests.conftest import postgres_database
from sync_assets_tests.dagster.test_cli_runs import BIN, REPO
from sync_assets_tests.dagster.test_two_machines import INSTANCE_YAML, _pages_committed
from sync_assets_tests.helpers import TOKEN, stored

pytest.importorskip("dagster_celery", reason="dagster-celery is not installed: pip install 'sync-assets[celery]'")

EXAMPLE = REPO / "docs" / "examples" / "celery"
RABBITMQCTL = "/usr/sbin/rabbitmqctl"
CUSTOMERS = 4500  # 9 pages of 500


def _rabbitmq_is_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def broker() -> Iterator[str]:
    """A RabbitMQ vhost of this test's own (guest connects from localhost only), deleted after it."""
    if not _rabbitmq_is_up():
        pytest.skip("RabbitMQ is not running at 127.0.0.1:5672 (the Celery test needs a broker)")
    if not os.access(RABBITMQCTL, os.X_OK):
        pytest.skip(f"{RABBITMQCTL} is not here: the Celery test makes a vhost of its own with it")
    vhost = f"sync_assets_{uuid.uuid4().hex[:8]}"
    made = subprocess.run([RABBITMQCTL, "add_vhost", vhost], capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"rabbitmqctl could not add a vhost (run the tests as root or as rabbitmq): {made.stderr}")
    subprocess.run([RABBITMQCTL, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run([RABBITMQCTL, "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture
def database() -> Iterator[str]:
    yield from postgres_database()


def _machine(tmp_path: Path, name: str, database: str, broker: str, api: DemoApi,
             instance_yaml: str = INSTANCE_YAML) -> tuple[Path, dict[str, str]]:
    """A working directory, HOME, TMPDIR and DAGSTER_HOME of its own; the settings every machine needs."""
    root = tmp_path / name
    home, tmp, dagster_home = root / "home", root / "tmp", root / "dagster_home"
    for folder in (home, tmp, dagster_home):
        folder.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml)
    env = {
        **os.environ, "HOME": str(home), "TMPDIR": str(tmp), "DAGSTER_HOME": str(dagster_home),
        "PYTHONPATH": f"{EXAMPLE}{os.pathsep}{REPO}",
        "DAGSTER_POSTGRES_URL": database.replace("postgresql://", "postgresql+psycopg2://", 1),
        "SYNC_ASSETS_STORE_URL": database, "SYNC_ASSETS_RATE_LIMIT_URL": database,
        "SYNC_ASSETS_CELERY_BROKER": broker,
        "SYNC_ASSETS_DEMO_URL": api.url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN,
    }
    return root, env


def _start_worker(root: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = (root / "worker.log").open("wb")
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "dagster_celery.app", "worker", "--concurrency", "1", "-n", f"{name}@%h",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(root: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if b" ready." in (root / "worker.log").read_bytes():
            return
        time.sleep(0.2)
    raise AssertionError((root / "worker.log").read_text()[-3000:])


def _step_pids(instance: DagsterInstance, run_id: str) -> list[int]:
    events = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    return [e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.pid is not None]


def _worker_of(pid: int, workers: dict[str, tuple[Path, subprocess.Popen[bytes]]]) -> str:
    """The worker whose process group ``pid`` is in (a worker's pool processes are in its group)."""
    (name,) = [name for name, (_, worker) in workers.items() if os.getpgid(pid) == worker.pid]
    return name


def _runs_of(instance: DagsterInstance, asset: str) -> list[str]:
    return [r.run_id for r in instance.get_runs() if r.asset_selection and
            any(key.to_user_string() == asset for key in r.asset_selection)]


@pytest.mark.slow
def test_steps_run_on_two_celery_workers_and_a_killed_workers_refresh_finishes_on_the_other(
    demo_api: Callable[..., DemoApi], database: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = demo_api(customers=CUSTOMERS, surveys=3000, latency_ms=600, rate_limit=(50, 1.0))
    workers = {}
    for name in ("worker-a", "worker-b"):
        root, env = _machine(tmp_path, name, database, broker, api)
        workers[name] = (root, _start_worker(root, env, name))
    launcher_root, launcher = _machine(tmp_path, "launcher", database, broker, api)
    try:
        deadline = time.monotonic() + 90
        for root, _ in workers.values():
            _wait_ready(root, deadline)
        dagster = [str(BIN / "dagster"), "asset", "materialize", "-m", "celery_definitions"]
        ranged = subprocess.Popen([*dagster, "--select", "demo/surveys", "--partition-range",
                                   "2024-01-01...2024-03-31"], cwd=launcher_root, env=launcher,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        refresh = subprocess.Popen([str(BIN / "sync-assets-dagster"), "start-refresh", "-m", "celery_definitions",
                                    "--select", "demo/customers"], cwd=launcher_root, env=launcher,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        monkeypatch.setenv("DAGSTER_POSTGRES_URL", launcher["DAGSTER_POSTGRES_URL"])  # to look at the runs
        instance = DagsterInstance.from_config(launcher["DAGSTER_HOME"])
        # the refresh's step has started on a worker and committed some pages: kill that worker, as a lost pod
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _pages_committed(database) < 2:
            time.sleep(0.1)
        pages_at_kill = _pages_committed(database)
        (refresh_run,) = _runs_of(instance, "demo/customers")
        (first_pid,) = _step_pids(instance, refresh_run)
        killed = _worker_of(first_pid, workers)
        os.killpg(workers[killed][1].pid, signal.SIGKILL)
        workers[killed][1].wait(timeout=30)
        assert 2 <= pages_at_kill < 9, pages_at_kill
        customers_at_kill = int(api.stats()["by_path"].get("/v1/customers", 0))

        for process in (ranged, refresh):
            output, _ = process.communicate(timeout=300)
            assert process.returncode == 0, output[-4000:]

        # every row exactly once, the budget held, the refresh read after the kill only what was not committed
        store = open_store(database)
        assert stored(store, "customers") == data.all_customers(0, CUSTOMERS)
        assert len(store.partition_states(TableSpec("demo", "surveys"))) == 91
        store.close()
        stats = api.stats()
        assert stats["responses_429"] == 0, stats
        # pages after the kill: those not committed, and the one in flight when it came
        assert int(stats["by_path"]["/v1/customers"]) - customers_at_kill <= 9 - pages_at_kill + 1

        # the refresh's step ran on both workers: started on the killed one, finished on the other
        (ranged_run,) = _runs_of(instance, "demo/surveys")
        runs = {run_id: instance.get_run_by_id(run_id) for run_id in (ranged_run, refresh_run)}
        assert {run_id: run.status for run_id, run in runs.items() if run} == {
            ranged_run: DagsterRunStatus.SUCCESS, refresh_run: DagsterRunStatus.SUCCESS}
        survivor = next(name for name in workers if name != killed)
        refresh_pids = _step_pids(instance, refresh_run)
        assert refresh_pids[0] == first_pid and len(refresh_pids) == 2
        assert _worker_of(refresh_pids[1], workers) == survivor
        assert not instance.event_log_storage.get_concurrency_run_ids()  # no pool slot stays held
        instance.dispose()
    finally:
        for _, worker in workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_worker_missing_the_store_url_refuses_its_steps_and_names_the_setting(
    demo_api: Callable[..., DemoApi], database: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to itself it would keep the data and page checkpoints on its own disk, where nothing resumes them."""
    api = demo_api(surveys=300)
    root, env = _machine(tmp_path, "worker", database, broker, api)
    del env["SYNC_ASSETS_STORE_URL"]
    worker = _start_worker(root, env, "worker")
    launcher_root, launcher = _machine(tmp_path, "launcher", database, broker, api)
    try:
        _wait_ready(root, time.monotonic() + 90)
        run = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "celery_definitions", "--select",
                              "demo/surveys", "--partition", "2024-01-05"], cwd=launcher_root, env=launcher,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode != 0
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", launcher["DAGSTER_POSTGRES_URL"])
        instance = DagsterInstance.from_config(launcher["DAGSTER_HOME"])
        (run_id,) = _runs_of(instance, "demo/surveys")
        # the step's resources refused to start: the run's page shows it as the step's failure
        logged = str(instance.all_logs(run_id, of_type=DagsterEventType.RESOURCE_INIT_FAILURE))
        assert "set SYNC_ASSETS_STORE_URL (or the IO manager's url) to the same store on every machine" in logged
        assert api.stats()["requests"] == 0  # refused before its first request
        assert not list(root.rglob("sync_assets"))  # and nothing of a store of its own on its disk
        instance.dispose()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


@pytest.mark.slow
def test_a_backfill_launched_run_by_run_spreads_its_partitions_over_both_workers(
    demo_api: Callable[..., DemoApi], database: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other design: the instance's run launcher (CeleryRunLauncher) sends each run to a worker."""
    api = demo_api(surveys=3000, latency_ms=400, rate_limit=(50, 1.0))
    instance_yaml = (EXAMPLE / "run_launcher_dagster.yaml").read_text()
    workers = {}
    for name in ("worker-a", "worker-b"):
        root, env = _machine(tmp_path, name, database, broker, api, instance_yaml)
        workers[name] = (root, _start_worker(root, env, name))
    launcher_root, launcher = _machine(tmp_path, "launcher", database, broker, api, instance_yaml)
    # the launcher's daemon takes runs off the queue and hands them to the run launcher, as in a deployment
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "run_launcher_definitions"],
                              cwd=launcher_root, env=launcher, stdout=(launcher_root / "daemon.log").open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    days = [f"2024-01-{day:02d}" for day in range(1, 9)]
    try:
        deadline = time.monotonic() + 90
        for root, _ in workers.values():
            _wait_ready(root, deadline)
        backfill = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-m", "run_launcher_definitions", "-j", "surveys_job",
             "--from", days[0], "--to", days[-1], "--noprompt"],
            cwd=launcher_root, env=launcher, capture_output=True, text=True, timeout=300)
        assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]

        monkeypatch.setenv("DAGSTER_POSTGRES_URL", launcher["DAGSTER_POSTGRES_URL"])
        instance = DagsterInstance.from_config(launcher["DAGSTER_HOME"])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if len(runs) == len(days) and all(run.is_finished for run in runs):
                break
            time.sleep(0.5)
        runs = instance.get_runs()
        assert all(run.is_finished for run in runs), (launcher_root / "daemon.log").read_text()[-3000:]
        assert sorted(run.tags["dagster/partition"] for run in runs) == days
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        # each run ran whole on one worker (its orchestrating process is the worker's), and both had some
        ran_on = set()
        for run in runs:
            (start,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
            assert start.dagster_event is not None and start.dagster_event.pid is not None
            ran_on.add(_worker_of(start.dagster_event.pid, workers))
        assert ran_on == set(workers)
        # no partition synced twice, the budget shared, no pool slot left held
        materialized = instance.fetch_materializations(AssetKey(["demo", "surveys"]), limit=100).records
        assert sorted(record.partition_key or "" for record in materialized) == days
        assert api.stats()["responses_429"] == 0
        assert not instance.event_log_storage.get_concurrency_run_ids()
        store = open_store(database)
        assert sorted(store.partition_states(TableSpec("demo", "surveys"))) == days
        store.close()
        instance.dispose()
    finally:
        for process in [daemon, *(worker for _, worker in workers.values())]:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
