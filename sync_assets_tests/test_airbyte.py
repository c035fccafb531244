"""The Airbyte protocol commands against the demo API; every message is validated with Airbyte's own models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from airbyte_protocol.models import AirbyteMessage, ConfiguredAirbyteCatalog, ConnectorSpecification

from sync_assets.cli import main
from sync_assets.demo_api import DemoApi, data
from sync_assets_tests.helpers import TICKER_PRICES, TICKERS, TOKEN

BIN = Path(sys.executable).parent
START = "2024-01-01T00:00:00Z"
SOURCE: dict[str, Any] = {
    "name": "demo",
    "base_url": {"env": "SYNC_TEST_URL"},
    "auth": {"type": "bearer", "token": {"env": "SYNC_TEST_TOKEN"}},
    "retry": {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    "streams": [
        {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
         "paginator": {"type": "page_number", "size": 50, "total_path": "total"},
         "incremental": {"cursor_field": "date_modified", "start": "2023-01-01", "window": "monthly",
                         "start_param": "start_modified_at", "end_param": "end_modified_at"}},
        {"name": "survey_responses", "path": "/v3/surveys/{parent[id]}/responses", "records_path": "data",
         "primary_key": "id", "parent": {"stream": "surveys"},
         "paginator": {"type": "page_number", "size": 5, "total_path": "total"}},
        {"name": "customers", "path": "/v1/customers", "records_path": "data", "primary_key": "id",
         "paginator": {"type": "cursor", "size_param": "limit", "size": 20}},
    ],
}


@pytest.fixture
def files(tmp_path: Path, api: DemoApi, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The source file, and a config for ``api``; the environment does not hold what the config does."""
    monkeypatch.delenv("SYNC_TEST_URL", raising=False)
    monkeypatch.delenv("SYNC_TEST_TOKEN", raising=False)
    monkeypatch.setenv("SYNC_ASSETS_HOME", str(tmp_path / "home"))
    (tmp_path / "source.yaml").write_text(yaml.safe_dump(SOURCE))
    _write(tmp_path / "config.json", {"SYNC_TEST_URL": api.url, "SYNC_TEST_TOKEN": TOKEN, "start_date": START})
    return tmp_path


def _write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def _messages(text: str) -> list[dict[str, Any]]:
    """stdout as protocol messages: every line one valid AirbyteMessage, and nothing else."""
    lines = text.splitlines()
    for line in lines:
        AirbyteMessage.model_validate_json(line)
    return [json.loads(line) for line in lines]


def _airbyte(files: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["airbyte", str(files / "source.yaml"), *args])
    return code, _messages(capsys.readouterr().out)


def _catalog(files: Path, **modes: str) -> Path:
    catalog = {"streams": [{"stream": {"name": name, "json_schema": {}, "supported_sync_modes": [mode]},
                            "sync_mode": mode, "destination_sync_mode": "append"} for name, mode in modes.items()]}
    ConfiguredAirbyteCatalog.model_validate(catalog)
    return _write(files / "catalog.json", catalog)


def _records(messages: list[dict[str, Any]], stream: str) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD" and m["record"]["stream"] == stream]


def _last_states(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = {m["state"]["stream"]["stream_descriptor"]["name"]: m for m in messages if m["type"] == "STATE"}
    return list(last.values())


def _statuses(messages: list[dict[str, Any]], stream: str) -> list[str]:
    return [m["trace"]["stream_status"]["status"] for m in messages if m["type"] == "TRACE"
            and m["trace"]["type"] == "STREAM_STATUS" and m["trace"]["stream_status"]["stream_descriptor"]["name"]
            == stream]


def _surveys_between(start: datetime, end: datetime) -> list[int]:
    return sorted(s["id"] for s in data.surveys_modified_between(0, 400, start, end))


def test_spec_names_each_env_variable_and_marks_secrets(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, (message,) = _airbyte(files, capsys, "spec")
    assert code == 0 and message["type"] == "SPEC"
    spec = ConnectorSpecification.model_validate(message["spec"]).connectionSpecification
    assert set(spec["properties"]) == {"SYNC_TEST_URL", "SYNC_TEST_TOKEN", "start_date"}
    assert spec["properties"]["SYNC_TEST_TOKEN"]["airbyte_secret"] is True
    assert spec["properties"]["SYNC_TEST_URL"]["airbyte_secret"] is False
    assert sorted(spec["required"]) == ["SYNC_TEST_TOKEN", "SYNC_TEST_URL"]


def test_a_name_used_anywhere_as_a_secret_is_a_secret_and_its_default_is_not_shown() -> None:
    from sync_assets.airbyte import spec
    from sync_assets.spec import source_from_dict

    # the same variable, first where it is plain text (base_url), then inside the auth, where it is a secret
    source = source_from_dict({"name": "t", "base_url": {"env": "SHARED", "default": "dev-value"},
                               "auth": {"type": "bearer", "token": {"env": "SHARED", "default": "dev-value"}},
                               "streams": [{"name": "a", "path": "/a"}]})
    (shared,) = spec(source)["spec"]["connectionSpecification"]["properties"].values()
    assert shared["airbyte_secret"] is True and "default" not in shared and shared["title"] == "SHARED"


def test_check_makes_a_real_request_and_says_what_to_fix(
    files: Path, api: DemoApi, capsys: pytest.CaptureFixture[str]
) -> None:
    code, (ok,) = _airbyte(files, capsys, "check", "--config", str(files / "config.json"))
    assert code == 0 and ok["connectionStatus"] == {"status": "SUCCEEDED"}
    api.reset_stats()
    wrong = _write(files / "wrong.json", {"SYNC_TEST_URL": api.url, "SYNC_TEST_TOKEN": "not-the-token"})
    code, (failed,) = _airbyte(files, capsys, "check", "--config", str(wrong))
    status = failed["connectionStatus"]
    assert code == 0 and status["status"] == "FAILED"
    assert "refused our credentials" in status["message"] and "SYNC_TEST_TOKEN" in status["message"]
    assert "not-the-token" not in status["message"] and "Traceback" not in status["message"]
    assert api.stats()["requests"] == 1


def test_discover_describes_every_stream(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, (message,) = _airbyte(files, capsys, "discover", "--config", str(files / "config.json"))
    streams = {s["name"]: s for s in message["catalog"]["streams"]}
    assert code == 0 and set(streams) == {"surveys", "survey_responses", "customers"}
    assert streams["surveys"]["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert streams["surveys"]["default_cursor_field"] == ["date_modified"]
    assert streams["surveys"]["source_defined_primary_key"] == [["id"]]
    assert streams["customers"]["supported_sync_modes"] == ["full_refresh"] and streams["customers"]["is_resumable"]
    assert {"id", "email"} <= set(streams["customers"]["json_schema"]["properties"])  # inferred from a first page
    assert "survey_id" in streams["survey_responses"]["json_schema"]["properties"]


def test_two_full_reads_agree(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = _catalog(files, surveys="full_refresh", customers="full_refresh")
    reads = [_airbyte(files, capsys, "read", "--config", str(files / "config.json"), "--catalog", str(catalog))
             for _ in range(2)]
    assert [code for code, _ in reads] == [0, 0]
    (_, first), (_, second) = reads
    for stream in ("surveys", "customers"):
        assert sorted(map(json.dumps, _records(first, stream))) == sorted(map(json.dumps, _records(second, stream)))
        assert _statuses(first, stream) == ["STARTED", "RUNNING", "COMPLETE"]
        counted = sum(m["state"]["sourceStats"]["recordCount"] for m in first
                      if m["type"] == "STATE" and m["state"]["stream"]["stream_descriptor"]["name"] == stream)
        assert counted == len(_records(first, stream))  # the STATEs count every record once, the last page's too
    assert _records(first, "customers") == data.all_customers(0, 230)
    assert sorted(r["id"] for r in _records(first, "surveys")) == _surveys_between(
        datetime(2024, 1, 1, tzinfo=UTC), datetime.now(UTC))


def test_an_incremental_read_continues_from_its_state_with_no_gap_and_no_duplicate(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = _catalog(files, surveys="incremental")
    middle = datetime(2024, 2, 10, 13, 0, tzinfo=UTC)  # as if the last read had ended there
    state = _write(files / "state.json", [{"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "surveys", "namespace": "demo"},
        "stream_state": {"state_type": "date-range", "slices": [{"start": START, "end": middle.isoformat()}]}}}}])
    code, messages = _airbyte(files, capsys, "read", "--config", str(files / "config.json"), "--catalog",
                              str(catalog), "--state", str(state))
    assert code == 0
    assert sorted(r["id"] for r in _records(messages, "surveys")) == _surveys_between(middle, datetime.now(UTC))
    (final,) = _last_states(messages)
    slices = final["state"]["stream"]["stream_state"]["slices"]
    assert len(slices) == 1 and slices[0]["start"] == "2024-01-01T00:00:00+00:00"
    # every STATE comes after the records it covers: replaying up to any STATE loses nothing
    seen: set[int] = set()
    for message in messages:
        if message["type"] == "RECORD":
            seen.add(message["record"]["data"]["id"])
        elif message["type"] == "STATE":
            for slice_ in message["state"]["stream"]["stream_state"]["slices"]:
                start, end = datetime.fromisoformat(slice_["start"]), datetime.fromisoformat(slice_["end"])
                assert set(_surveys_between(max(start, middle), end)) <= seen if end > middle else True


def test_a_state_in_the_future_gives_no_records_a_state_and_no_error(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _write(files / "state.json", [{"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "surveys"},
        "stream_state": {"state_type": "date-range", "slices": [{"start": START, "end": "2999-01-01T00:00:00Z"}]}}}}])
    code, messages = _airbyte(files, capsys, "read", "--config", str(files / "config.json"), "--catalog",
                              str(_catalog(files, surveys="incremental")), "--state", str(state))
    assert code == 0 and not _records(messages, "surveys") and _last_states(messages)
    assert _statuses(messages, "surveys") == ["STARTED", "COMPLETE"]
    assert not [m for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]


@pytest.mark.parametrize("stream", ["customers", "surveys", "survey_responses"])
def test_refused_credentials_are_one_config_error_per_stream(
    files: Path, api: DemoApi, capsys: pytest.CaptureFixture[str], stream: str
) -> None:
    """Not one per request slice or parent: every other one would say the same, and the API would see each."""
    wrong = _write(files / "wrong.json", {"SYNC_TEST_URL": api.url, "SYNC_TEST_TOKEN": "nope", "start_date": START})
    code, messages = _airbyte(files, capsys, "read", "--config", str(wrong), "--catalog",
                              str(_catalog(files, **{stream: "full_refresh"})))
    errors = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert code == 1 and len(errors) == 1 and errors[0]["failure_type"] == "config_error", errors
    assert _statuses(messages, stream) == ["STARTED", "INCOMPLETE"]


def test_a_substream_resumes_by_parent(files: Path, api: DemoApi, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = _catalog(files, survey_responses="incremental")
    code, full = _airbyte(files, capsys, "read", "--config", str(files / "config.json"), "--catalog", str(catalog))
    assert code == 0

    def skipped_by(state: dict[str, Any]) -> set[str]:  # the children of the parents a state says are done
        done = state["state"]["stream"]["stream_state"].get("in_progress", {}).get("parents_done", [])
        return {r["id"] for p in done for r in data.survey_responses(0, *json.loads(p))}  # ids: JSON key values

    # the first state whose done parents have children (the first parent to finish may have none)
    progress = next(m for m in full if m["type"] == "STATE" and skipped_by(m))
    api.reset_stats()
    code, resumed = _airbyte(files, capsys, "read", "--config", str(files / "config.json"), "--catalog",
                             str(catalog), "--state", str(_write(files / "state.json", [progress])))
    assert code == 0
    children = sorted(r["id"] for r in _records(resumed, "survey_responses"))
    skipped = skipped_by(progress)
    expected = sorted(r["id"] for r in _records(full, "survey_responses") if r["id"] not in skipped)
    assert children == expected and skipped and api.stats()["by_path"].get("/v3/surveys/{id}/responses", 0) > 0


@pytest.mark.slow
def test_a_refresh_killed_mid_read_resumes_from_its_last_state(
    files: Path, demo_api: Callable[..., DemoApi]
) -> None:
    slow = demo_api(customers=600, latency_ms=40)
    config = _write(files / "slow.json", {"SYNC_TEST_URL": slow.url, "SYNC_TEST_TOKEN": TOKEN})
    catalog = _catalog(files, customers="full_refresh")
    command = [str(BIN / "sync-assets"), "airbyte", str(files / "source.yaml"), "read", "--config", str(config),
               "--catalog", str(catalog)]
    env = {**os.environ, "SYNC_ASSETS_HOME": str(files / "home")}
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert killed.stdout is not None
    lines, states = [], 0
    while states < 5:
        line = killed.stdout.readline()
        lines.append(line)
        states += '"type":"STATE"' in line
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    first = _messages("".join(lines))
    committed = [m for m in first[: max(i for i, m in enumerate(first) if m["type"] == "STATE") + 1]]
    state = _write(files / "state.json", _last_states(committed))
    resumed = subprocess.run([*command, "--state", str(state)], capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    ids = [r["id"] for r in _records(committed, "customers")] + [r["id"] for r in
                                                                 _records(_messages(resumed.stdout), "customers")]
    assert ids == [c["id"] for c in data.all_customers(0, 600)]  # no gap, no duplicate, in order


def test_engine_logs_become_log_messages_and_nothing_else_reaches_stdout(
    files: Path, demo_api: Callable[..., DemoApi], capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = demo_api(customers=230, fail_rate=0.3, seed=3)
    config = _write(files / "flaky.json", {"SYNC_TEST_URL": flaky.url, "SYNC_TEST_TOKEN": TOKEN})
    code, messages = _airbyte(files, capsys, "read", "--config", str(config), "--catalog",
                              str(_catalog(files, customers="full_refresh")))  # every line validated
    logs = [m["log"] for m in messages if m["type"] == "LOG"]
    assert code == 0 and _records(messages, "customers") == data.all_customers(3, 230)
    assert logs and all(log["level"] == "WARN" and "retrying in" in log["message"] for log in logs)
    assert TOKEN not in json.dumps(messages)


def test_a_substream_with_windows_of_its_own_reads_them_per_parent_and_resumes_by_parent(
    files: Path, api: DemoApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over a full-refresh parent (read whole first), the child's windows once per parent, in request slices
    (not a request per window); a state taken mid-slice skips the parents done in that slice, and only there."""
    source = {**SOURCE, "streams": [TICKERS, TICKER_PRICES]}
    (files / "source.yaml").write_text(yaml.safe_dump(source))
    today = datetime.now(UTC).date()
    first = today - timedelta(days=3)
    config = _write(files / "config.json", {"SYNC_TEST_URL": api.url, "SYNC_TEST_TOKEN": TOKEN,
                                            "start_date": f"{first.isoformat()}T00:00:00Z"})
    catalog = _catalog(files, ticker_prices="incremental")
    code, full = _airbyte(files, capsys, "read", "--config", str(config), "--catalog", str(catalog))
    assert code == 0
    truth = data.price_rows(0, first, today - timedelta(days=1))  # three whole days; today is not over
    assert sorted(map(str, _records(full, "ticker_prices"))) == sorted(map(str, truth))
    slices = {(s["in_progress"]["start"], s["in_progress"]["end"]) for m in full if m["type"] == "STATE"
              and "in_progress" in (s := m["state"]["stream"]["stream_state"])}
    assert len(slices) < 3 and api.stats()["by_path"]["/v1/prices"] == len(slices) * len(data.TICKERS)

    progress = next(m for m in full if m["type"] == "STATE"
                    and len(m["state"]["stream"]["stream_state"].get("in_progress", {}).get("parents_done", [])) == 2)
    reading = progress["state"]["stream"]["stream_state"]["in_progress"]
    done = {json.loads(p)[0] for p in reading["parents_done"]}
    api.reset_stats()
    code, resumed = _airbyte(files, capsys, "read", "--config", str(config), "--catalog", str(catalog), "--state",
                             str(_write(files / "state.json", [progress])))
    assert code == 0
    start, end = reading["start"][:10], reading["end"][:10]
    expected = [r for r in _records(full, "ticker_prices") if not (start <= r["date"] < end and r["ticker"] in done)]
    expected = [r for r in expected if r["date"] >= start]  # the state covers the days before the slice
    assert sorted(map(str, _records(resumed, "ticker_prices"))) == sorted(map(str, expected))

    code, again = _airbyte(files, capsys, "read", "--config", str(config), "--catalog", str(catalog), "--state",
                           str(_write(files / "state.json", _last_states(resumed))))
    assert code == 0 and _records(again, "ticker_prices") == []


def test_a_chain_of_windowed_substreams_reads_each_level_whole_from_the_api(
    tmp_path: Path, demo_api: Callable[..., DemoApi], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Airbyte's protocol there is no store to list parents from: a child of a windowed substream, and a
    list of a windowed stream's values, read their parents whole, level by level, from the API."""
    monkeypatch.setenv("SYNC_ASSETS_HOME", str(tmp_path / "home"))
    api = demo_api(surveys=20)
    own = {"incremental": {"cursor_field": "submitted_at", "start": "2023-01-01", "window": "monthly"}}
    responses = {**SOURCE["streams"][1], "name": "recent_responses", **own}
    siblings = {**SOURCE["streams"][1], "name": "siblings", "path": "/v3/surveys/{parent[survey_id]}/responses",
                "parent": {"stream": "recent_responses"}, **own}
    held = {**SOURCE["streams"][1], "name": "held_responses", "parent": None,
            "path": "/v3/surveys/{each[survey]}/responses",
            "for_each": [{"field": "survey", "values_of": {"stream": "surveys", "key": "id"}}]}
    (tmp_path / "source.yaml").write_text(yaml.safe_dump({**SOURCE, "streams": [
        SOURCE["streams"][0], responses, siblings, held]}))
    config = _write(tmp_path / "config.json", {"SYNC_TEST_URL": api.url, "SYNC_TEST_TOKEN": TOKEN})
    code, messages = _airbyte(tmp_path, capsys, "read", "--config", str(config), "--catalog",
                              str(_catalog(tmp_path, siblings="incremental", held_responses="full_refresh")))
    assert code == 0
    every = {r["id"] for survey in range(1, 21) for r in data.survey_responses(0, survey)}
    assert {r["id"] for r in _records(messages, "held_responses")} == every
    assert {r["id"] for r in _records(messages, "siblings")} == every  # each once per response of its survey
