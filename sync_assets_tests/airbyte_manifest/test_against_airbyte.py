"""The demo manifest read by Airbyte's own runner (``source-declarative-manifest`` from airbyte-cdk) and by
sync-assets, against the same demo API with the same config: the same records, stream by stream.

The runner lives in its own virtualenv (``python3 scripts/dev.py test`` installs it and names it in
``SYNC_ASSETS_AIRBYTE_CDK``): airbyte-cdk pins a pyrate-limiter that ours cannot share a process with.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import EnvVar

from sync_assets.airbyte_manifest import load_manifest
from sync_assets.auth import OAuth2Auth
from sync_assets.cli import main as cli_main
from sync_assets.demo_api import DemoApi
from sync_assets.spec import ApiSource
from sync_assets.windows import Window
from sync_assets_tests.airbyte_manifest.test_translate import MANIFEST, _read
from sync_assets_tests.helpers import TOKEN

RUNNER = os.environ.get("SYNC_ASSETS_AIRBYTE_CDK", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(RUNNER).is_file(), reason="Airbyte's runner is not installed: run the suite through "
                       "`python3 scripts/dev.py test`, which installs airbyte-cdk into .venv-airbyte-cdk"),
]
# stock_prices is left out: without an end, Airbyte's daily steps from 2024 to today are a thousand requests;
# the other tests compare it with the bundled source.
STREAMS = {"surveys": "incremental", "survey_responses": "full_refresh", "customers": "full_refresh",
           "orders": "full_refresh", "events": "full_refresh", "all_surveys": "full_refresh",
           "all_survey_responses": "full_refresh", "chosen_survey_responses": "full_refresh",
           "chosen_siblings": "full_refresh", "searched_surveys": "full_refresh", "tickers": "full_refresh",
           "split_searched_surveys": "full_refresh", "form_searched_surveys": "full_refresh",
           "ticker_prices": "full_refresh", "price_reports": "full_refresh", "currencies": "full_refresh",
           "ticker_reports": "full_refresh", "recent_responses": "full_refresh",
           "nested_searched_surveys": "full_refresh"}
THROUGH_OUR_AIRBYTE_DOOR = {"all_survey_responses": "full_refresh", "chosen_survey_responses": "full_refresh",
                            "chosen_siblings": "full_refresh", "ticker_prices": "full_refresh",
                            "price_reports": "full_refresh",  # its windows through request slices of 30 days
                            "ticker_reports": "full_refresh",  # a read per ticker per currency
                            "recent_responses": "full_refresh"}  # windows over an incremental parent
START = "2024-01-01"


def _catalog(tmp_path: Path, streams: dict[str, str]) -> Path:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [
        {"stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
         "sync_mode": mode, "destination_sync_mode": "append" if mode == "incremental" else "overwrite",
         **({"cursor_field": ["date_modified"]} if mode == "incremental" else {})}
        for name, mode in streams.items()]}))
    return catalog


def _airbyte_records(api: DemoApi, tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    config = tmp_path / "config.json"
    # Airbyte's runner does not fill in the spec's defaults (its platform's form does): given in full here
    config.write_text(json.dumps({"base_url": api.url, "api_key": TOKEN, "start_date": START,
                                  "survey_ids": [3, 17, 42, 999]}))
    catalog = _catalog(tmp_path, STREAMS)
    env = {key: value for key, value in os.environ.items() if key != "DEPLOYMENT_MODE"}  # "cloud" refuses loopback
    done = subprocess.run([RUNNER, "read", "--config", str(config), "--catalog", str(catalog), "--manifest-path",
                           str(MANIFEST)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    errors = [m["trace"]["error"]["message"] for m in messages
              if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert done.returncode == 0 and not errors, (done.returncode, errors, done.stderr[-2000:])
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in STREAMS}
    for message in messages:
        if message["type"] == "RECORD":
            records[message["record"]["stream"]].append(message["record"]["data"])
    return records


def _ours(source: ApiSource, api: DemoApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
          ) -> dict[str, list[dict[str, Any]]]:
    everything = Window(datetime.fromisoformat(START).replace(tzinfo=UTC), datetime.now(UTC))
    surveys = _read(source, "surveys", tmp_path, window=everything)
    searched = {name: _read(source, name, tmp_path, window=everything)
                for name in ("searched_surveys", "split_searched_surveys", "form_searched_surveys",
                             "nested_searched_surveys")}
    responses = [r for survey in surveys for r in _read(source, "survey_responses", tmp_path, parent=survey)]
    # the substream of a full-refresh parent (its parents read whole, then one page of children each) and the
    # list-partitioned stream, through our own Airbyte front door
    (tmp_path / "ours.yaml").write_text(json.dumps({"name": "demo", "manifest": str(MANIFEST), "config": {
        "base_url": api.url, "api_key": {"env": "DEMO_KEY"}, "start_date": START}}))
    (tmp_path / "ours.json").write_text(json.dumps({"DEMO_KEY": TOKEN}))
    capsys.readouterr()
    assert cli_main(["airbyte", str(tmp_path / "ours.yaml"), "read", "--config", str(tmp_path / "ours.json"),
                     "--catalog", str(_catalog(tmp_path, THROUGH_OUR_AIRBYTE_DOOR))]) == 0
    read = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {"surveys": surveys, "survey_responses": responses, **searched,
            **{name: [m["record"]["data"] for m in read if m["type"] == "RECORD" and m["record"]["stream"] == name]
               for name in THROUGH_OUR_AIRBYTE_DOOR},
            **{name: _read(source, name, tmp_path) for name in ("customers", "orders", "events", "all_surveys",
                                                                "tickers", "currencies")}}


def _normalised(records: list[dict[str, Any]]) -> list[str]:
    """Records as sorted JSON: the same values, whatever order the two runners emit them in."""
    return sorted(json.dumps(record, sort_keys=True) for record in records)


def test_airbyte_and_sync_assets_read_the_same_records_from_the_demo_manifest(
    api: DemoApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_KEY", TOKEN)
    source = load_manifest(MANIFEST, {"base_url": api.url, "api_key": EnvVar("DEMO_KEY"), "start_date": START})
    theirs, ours = _airbyte_records(api, tmp_path), _ours(source, api, tmp_path, capsys)
    # Airbyte reads today's prices too, a day not over; we read whole days, each once (docs/airbyte-manifests.md)
    today = datetime.now(UTC).date().isoformat()
    for daily in ("ticker_prices", "price_reports"):
        theirs[daily] = [r for r in theirs[daily] if r["date"] < today]
    # the responses API cannot filter: Airbyte emits those submitted before the start too; we keep each window's
    theirs["recent_responses"] = [r for r in theirs["recent_responses"] if r["submitted_at"] >= START]
    for stream in STREAMS:
        assert theirs[stream], f"Airbyte read no {stream}"
        assert _normalised(ours[stream]) == _normalised(theirs[stream]), stream


OAUTH_MANIFEST = MANIFEST.parent.parent / "demo_oauth" / "manifest.yaml"


def test_refresh_tokens_that_rotate_read_the_same_records_through_airbyte_and_sync_assets(
    demo_api: Callable[..., DemoApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each runner against its own API (the same data): a refresh token works once, so they cannot share one.
    Airbyte writes the newest into its config (CONTROL messages); we keep it in the API's shared state, so
    a second read, a new client in effect a new run, starts from it."""
    rotating = {"token": TOKEN, "token_lifetime": 0.5, "latency_ms": 40, "rotate_refresh_tokens": True,
                "customers": 300}
    theirs_api, ours_api = demo_api(**rotating), demo_api(**rotating)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"base_url": theirs_api.url, "client_id": "demo-client", "client_secret": TOKEN,
                                  "credentials": {"refresh_token": TOKEN}}))
    env = {key: value for key, value in os.environ.items() if key != "DEPLOYMENT_MODE"}
    done = subprocess.run([RUNNER, "read", "--config", str(config), "--catalog", str(_catalog(tmp_path, {
        "customers": "full_refresh"})), "--manifest-path", str(OAUTH_MANIFEST)], capture_output=True, text=True,
        timeout=300, env=env, cwd=tmp_path)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert theirs_api.stats()["tokens_issued"] >= 2  # Airbyte rotated too

    monkeypatch.setenv("DEMO_SECRET", TOKEN)
    source = load_manifest(OAUTH_MANIFEST, {"base_url": ours_api.url, "client_id": "demo-client",
                                            "client_secret": EnvVar("DEMO_SECRET"),
                                            "credentials": {"refresh_token": EnvVar("DEMO_SECRET")}})
    assert isinstance(source.auth, OAuth2Auth) and source.auth.rotating
    first = _read(source, "customers", tmp_path)
    assert ours_api.stats()["tokens_issued"] >= 2
    assert _normalised(first) == _normalised(theirs) and len(first) == 300
    assert _normalised(_read(source, "customers", tmp_path)) == _normalised(theirs)  # the next run: the newest
    stats = ours_api.stats()
    assert stats["token_requests"] == stats["tokens_issued"]  # not one refresh refused
