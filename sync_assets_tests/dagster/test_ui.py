"""The README's UI command: `python3 scripts/dev.py ui` serves the demo in Dagster's UI, and what its
Materialize button sends (the same GraphQL mutation) runs to success, with nothing else set by hand. In a
real browser (headless Chromium driven by playwright, where installed) a user's buttons each do what they
say: materialize a partition (the asset's page then shows it), backfill a range, re-execute a failed run,
start a full refresh. Screenshots are kept in .test-artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # a test dependency (the dev extra); without it the button tests skip, saying so
    sync_playwright = None

from sync_assets.home import home_under
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.layout import store_dir

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import dev  # noqa: E402 -- the UI command's own module: the demo's partitions follow today

FIRST_DAY = date.fromisoformat(dev.demo_days()[0])


def day(n: int) -> str:
    """The demo's ``n``-th partition key, counting from 0."""
    return (FIRST_DAY + timedelta(days=n)).isoformat()

LAUNCH = """mutation($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def _wait_for(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = check()
        except requests.RequestException:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {seconds} s")


ARTIFACTS = Path(os.environ.get("SYNC_ASSETS_TEST_ARTIFACTS") or REPO / ".test-artifacts")
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """The UI command running: (its URL, its code location's name, the demo's folder)."""
    port, demo = _free_port(), tmp_path_factory.mktemp("ui") / "demo"
    env = {**os.environ, "SYNC_ASSETS_DEMO_DIR": str(demo), "DAGSTER_UI_PORT": str(port)}
    env.pop("DAGSTER_HOME", None)  # the command sets everything itself
    process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "dev.py"), "ui"], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        location = _wait_for("the code location loading", lambda: next(iter(
            node["location"]["name"] for node in _graphql(url, "{ repositoriesOrError { ... on RepositoryConnection "
                                                               "{ nodes { name location { name } } } } }")
            ["repositoriesOrError"].get("nodes", []))), 120)
        yield url, location, demo
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a user stops it: dagster dev and the demo API end
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


def _materialize(url: str, location: str, partition: str) -> str:
    """What the Materialize button sends for one partition of demo/surveys; the run's final status."""
    launched = _graphql(url, LAUNCH, {"params": {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                     "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["demo", "surveys"]}]},
        "mode": "default", "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]}}})
    outcome = launched["launchPipelineExecution"]
    assert outcome["__typename"] == "LaunchRunSuccess", outcome
    run_id = outcome["run"]["runId"]
    return str(_wait_for("the run ending", lambda: (lambda s: s if s in ("SUCCESS", "FAILURE", "CANCELED") else None)(
        _graphql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                 {"id": run_id})["runOrError"].get("status")), 180))


@pytest.mark.slow
def test_the_ui_command_serves_the_demo_and_its_materialize_button_works(ui: tuple[str, str, Path]) -> None:
    url, location, demo = ui
    assert _materialize(url, location, day(4)) == "SUCCESS"
    store = open_store(store_dir(home_under(demo / "dagster_home")))
    assert list(store.records(TableSpec("demo", "surveys"), [day(4)]))


def _runs(url: str, **tags: str) -> list[dict[str, Any]]:
    """The runs carrying all of ``tags``: their ids and statuses."""
    found = _graphql(url, "query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) "
                          "{ ... on Runs { results { runId status } } } }",
                     {"tags": [{"key": k, "value": v} for k, v in tags.items()]})
    return found["runsOrError"]["results"]  # type: ignore[no-any-return]


def _succeeded(url: str, what: str, earlier: str = "", **tags: str) -> str:
    """The id of the run with ``tags`` (other than ``earlier``) once it succeeded; fails at once on one that
    failed."""
    def check() -> str | None:
        runs = [r for r in _runs(url, **tags) if r["runId"] != earlier]
        assert not [r for r in runs if r["status"] in ("FAILURE", "CANCELED")], (what, runs)
        return next((r["runId"] for r in runs if r["status"] == "SUCCESS"), None)
    return str(_wait_for(what, check, 240))


def _launch_from_dialog(page: Page, url: str, asset: str, selection: str, button: str) -> None:
    """On ``asset``'s page: Materialize…, all of time if the dialog offers less, type the partitions, press
    ``button``."""
    page.goto(f"{url}/assets/{asset}")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    show_all = dialog.get_by_role("button", name="Show all partitions")  # the dialog offers the last 90 days first
    if show_all.count():
        show_all.click()
    box = dialog.get_by_role("textbox").first
    box.fill(selection)
    box.press("Enter")
    dialog.get_by_role("button", name=button).click()
    dialog.wait_for(state="hidden", timeout=30_000)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to browse with: apt-get install chromium (Debian's package)")
@pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed: pip install -e '.[dev]'")
def test_every_button_a_user_presses_on_the_demo_assets_does_what_it_says(ui: tuple[str, str, Path]) -> None:
    url, location, demo = ui
    store = open_store(store_dir(home_under(demo / "dagster_home")))
    # a run that fails: a substream's partition whose parents are not synced yet (no automatic retry)
    failed = _graphql(url, LAUNCH, {"params": {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                     "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["demo", "survey_responses"]}]},
        "mode": "default", "runConfigData": {}, "executionMetadata": {"tags": [
            {"key": "dagster/partition", "value": day(19)}, {"key": "dagster/max_retries", "value": "0"}]}}})
    failed_id = failed["launchPipelineExecution"]["run"]["runId"]
    assert str(_wait_for("the run failing", lambda: (lambda s: s if s in ("SUCCESS", "FAILURE") else None)(
        _graphql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                 {"id": failed_id})["runOrError"].get("status")), 180)) == "FAILURE"
    ARTIFACTS.mkdir(exist_ok=True)
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(60_000)
        try:
            # Materialize one partition: the dialog's "Launch 1 run"
            _launch_from_dialog(page, url, "demo/surveys", day(19), "Launch 1 run")
            _succeeded(url, "the partition's run", failed_id, **{"dagster/partition": day(19)})
            assert list(store.records(TableSpec("demo", "surveys"), [day(19)]))
            # ... and the asset's page shows it as a user sees it
            page.goto(f"{url}/assets/demo/surveys")
            page.get_by_text("Latest materialization").wait_for()
            page.get_by_text(day(19)).first.wait_for()  # the latest materialization's partition, loaded
            shown = page.inner_text("body")
            assert "Never materialized" not in shown
            assert "api" in shown and "DuckDB" in shown  # kinds: where the data comes from, and where it lives
            assert "Join the Dagster community" not in shown  # no dialog over the assets (dagster.yaml's nux)
            page.screenshot(path=str(ARTIFACTS / "ui-demo-surveys.png"))
            # Backfill a range: one run of three partitions (the single-run backfill policy)
            _launch_from_dialog(page, url, "demo/surveys", f"[{day(20)}...{day(22)}]", "Launch backfill")
            _succeeded(url, "the backfill's run", **{"dagster/asset_partition_range_start": day(20),
                                                      "dagster/asset_partition_range_end": day(22)})
            assert {day(20), day(21), day(22)} <= set(store.partition_states(
                TableSpec("demo", "surveys")))
            # Re-execute the failed run, now that its parents are synced
            page.goto(f"{url}/runs/{failed_id}")
            page.get_by_role("button", name="Re-execute all (*)").click()
            _succeeded(url, "the re-execution", **{"dagster/parent_run_id": failed_id})
            assert list(store.records(TableSpec("demo", "survey_responses"), [day(19)]))
            # Start a full refresh, knowing no partition key: the refresh sensor's tick, previewed and applied
            page.goto(f"{url}/locations/{location}/sensors/demo_refresh_sensor")
            page.get_by_role("button", name="Preview tick result").click()
            page.get_by_role("dialog").get_by_role("button", name="Continue").click()
            page.get_by_role("button", name="Apply requests & commit tick result").click()
            _wait_for("the customers' snapshot", lambda: len(list(store.snapshot_records(
                TableSpec("demo", "customers", "snapshot")))) == 5000, 240)
            page.goto(f"{url}/assets/demo/customers")
            page.get_by_text("Latest materialization").wait_for()
            page.screenshot(path=str(ARTIFACTS / "ui-demo-customers-after-refresh.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "ui-last-page.png"))
            browser.close()
