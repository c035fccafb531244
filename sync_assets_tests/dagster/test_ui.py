"""The README's UI command: `python3 scripts/dev.py ui` serves the demo in Dagster's UI, and what its
Materialize button sends (the same GraphQL mutation) runs to success, with nothing else set by hand."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_assets.home import home_under
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.layout import store_dir

REPO = Path(__file__).resolve().parents[2]
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


@pytest.mark.slow
def test_the_ui_command_serves_the_demo_and_its_materialize_button_works(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SYNC_ASSETS_DEMO_DIR": str(tmp_path / "demo"), "DAGSTER_UI_PORT": str(port)}
    env.pop("DAGSTER_HOME", None)  # the command sets everything itself
    ui = subprocess.Popen([sys.executable, str(REPO / "scripts" / "dev.py"), "ui"], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        location = _wait_for("the code location loading", lambda: next(iter(
            node["location"]["name"] for node in _graphql(url, "{ repositoriesOrError { ... on RepositoryConnection "
                                                               "{ nodes { name location { name } } } } }")
            ["repositoriesOrError"].get("nodes", []))), 120)
        launched = _graphql(url, LAUNCH, {"params": {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                         "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["demo", "surveys"]}]},
            "mode": "default", "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2024-01-05"}]}}})
        outcome = launched["launchPipelineExecution"]
        assert outcome["__typename"] == "LaunchRunSuccess", outcome
        run_id = outcome["run"]["runId"]
        status = _wait_for("the run ending", lambda: (lambda s: s if s in ("SUCCESS", "FAILURE", "CANCELED") else None)(
            _graphql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                     {"id": run_id})["runOrError"].get("status")), 180)
        assert status == "SUCCESS"
        store = open_store(store_dir(home_under(tmp_path / "demo" / "dagster_home")))
        assert list(store.records(TableSpec("demo", "surveys"), ["2024-01-05"]))
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # Ctrl-C, as a user stops it: dagster dev and the demo API end
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            raise
