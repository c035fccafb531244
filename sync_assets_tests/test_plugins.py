"""A paginator, an auth and a record transform of one's own, by import path, against the demo API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets.reader import StreamReader
from sync_assets.spec import parse_source_yaml
from sync_assets.storage import open_store
from sync_assets.window_sync import sync_windows
from sync_assets.windows import Window
from sync_assets_tests.helpers import TOKEN, ClientFor, make_source, stored
from sync_assets_tests.plugins_for_tests import HeaderToken

JANUARY = ("2024-01", Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)))


def _surveys(**stream: Any) -> dict[str, Any]:
    return {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
            "incremental": {"cursor_field": "date_modified", "start": "2024-01-01",
                            "start_param": "start_modified_at", "end_param": "end_modified_at"}, **stream}


def _sync(api: DemoApi, client_for: ClientFor, tmp_path: Path, stream: dict[str, Any], **source: Any
          ) -> tuple[Any, list[dict[str, Any]]]:
    src = make_source(api, [stream], **source)
    client, store = client_for(src), open_store(tmp_path / "store")
    (result,) = sync_windows(StreamReader(src, src.stream("surveys"), client), store, [JANUARY], 1)
    return result, stored(store, "surveys", [JANUARY[0]]) if result.error is None else []


def _truth() -> list[dict[str, Any]]:
    return data.surveys_modified_between(0, 400, JANUARY[1].start, JANUARY[1].end)


def test_a_custom_paginator_auth_and_transform_read_the_stream(
    api: DemoApi, client_for: ClientFor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paginator = {"type": "custom", "class": "sync_assets_tests.plugins_for_tests:PagesOf", "options": {"size": 4}}
    auth = {"type": "custom", "class": "sync_assets_tests.plugins_for_tests:HeaderToken",
            "options": {"token": {"env": "PLUGIN_TEST_TOKEN"}}}
    monkeypatch.setenv("PLUGIN_TEST_TOKEN", TOKEN)
    stream = _surveys(paginator=paginator, transform="sync_assets_tests.plugins_for_tests:tidy")
    result, records = _sync(api, client_for, tmp_path, stream, auth=auth)
    truth = [s for s in _truth() if s["question_count"]]
    assert result.error is None and len(truth) > 4  # several pages of 4
    assert sorted(r["id"] for r in records) == sorted(s["id"] for s in truth)
    assert all(r["kind"] == "survey" and "title" not in r and r["name"] for r in records)


def test_a_custom_auth_is_asked_to_renew_after_a_401(demo_api: Any, client_for: ClientFor, tmp_path: Path) -> None:
    api = demo_api(revoke_after=2)
    auth = {"type": "custom", "class": "sync_assets_tests.plugins_for_tests:HeaderToken", "options": {"token": TOKEN}}
    before = HeaderToken.renewals
    stream = _surveys(paginator={"type": "page_number", "size": 3, "total_path": "total"})
    result, _ = _sync(api, client_for, tmp_path, stream, auth=auth)
    assert isinstance(result.error, ConfigurationError) and HeaderToken.renewals == before + 1


def test_a_wrong_import_path_is_a_config_error_with_its_line() -> None:
    text = """\
name: shop
base_url: https://shop.example
streams:
  - name: orders
    path: /orders
    paginator: {type: custom, class: "my_pkg.nowhere:Pages"}
"""
    with pytest.raises(ConfigurationError) as error:
        parse_source_yaml(text, "shop.yaml")
    assert "streams[0] (orders).paginator (line 6)" in str(error.value) and "cannot import my_pkg" in str(error.value)


def test_what_a_custom_part_raises_names_it_and_the_stream(
    api: DemoApi, client_for: ClientFor, tmp_path: Path
) -> None:
    paginator = {"type": "custom", "class": "sync_assets_tests.plugins_for_tests:Broken", "options": {"size": 4}}
    result, _ = _sync(api, client_for, tmp_path, _surveys(paginator=paginator))
    message = str(result.error)
    assert "stream 'surveys'" in message and "sync_assets_tests.plugins_for_tests:Broken raised KeyError" in message


def test_what_a_custom_part_raises_is_masked(api: DemoApi, client_for: ClientFor, tmp_path: Path) -> None:
    from sync_assets.redaction import register_secret

    register_secret("leaky-secret-value")  # as every resolved secret is
    paginator = {"type": "custom", "class": "sync_assets_tests.plugins_for_tests:Leaky", "options": {"size": 4}}
    result, _ = _sync(api, client_for, tmp_path, _surveys(paginator=paginator))
    message = str(result.error)
    assert "Leaky raised RuntimeError" in message and "leaky-secret-value" not in message and "***" in message


def test_threads_refused_together_renew_a_custom_auth_once() -> None:
    from sync_assets.auth import _PluginHeaders

    impl = HeaderToken("t0k3n-for-renewal")
    headers = _PluginHeaders("sync_assets_tests.plugins_for_tests:HeaderToken", impl)
    before = HeaderToken.renewals
    sent = headers.headers()  # what three requests went out with, all refused
    for _ in range(3):
        headers.renew({**sent, "Accept": "application/json"})
    assert HeaderToken.renewals == before + 1
    headers.renew(headers.headers())  # refused again with what was current since: renewed again
    assert HeaderToken.renewals == before + 2
