"""The bundled example sources, each against the demo API mode that mimics the API style it models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize

from sync_assets.dagster import SyncApiResource, build_definitions
from sync_assets.demo_api import DemoApi, data
from sync_assets.home import home_under
from sync_assets.reader import StreamReader
from sync_assets.sources import github_style_source, stripe_style_source
from sync_assets.spec import ApiSource, Stream
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.layout import store_dir
from sync_assets.window_sync import WindowResult, sync_windows
from sync_assets.windows import Window, partition_key, windows_between
from sync_assets_tests.helpers import TOKEN, ClientFor


@pytest.fixture
def demo_env(api: DemoApi, monkeypatch: pytest.MonkeyPatch) -> DemoApi:
    monkeypatch.setenv("SYNC_ASSETS_DEMO_URL", api.url)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", TOKEN)
    return api


def _sync_days(source: ApiSource, stream: Stream, client_for: ClientFor, tmp_path: Path, start: datetime,
               end: datetime) -> tuple[list[WindowResult], list[Any]]:
    """Every day of ``[start, end)`` of ``stream`` (the source's only one, as given), 4 at a time: the results
    (none failed) and the ids stored."""
    source = source.model_copy(update={"streams": [stream]})
    client, store = client_for(source), open_store(tmp_path / "store")
    days = [(partition_key(w.start, "daily"), w) for w in windows_between(start, end, "daily")]
    results = list(sync_windows(StreamReader(source, stream, client), store, days, 4))
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    return results, sorted(r["id"] for r in store.records(TableSpec(source.name, stream.name), [k for k, _ in days]))


def test_the_stripe_style_source_reads_windows_by_created_and_pages_by_starting_after(
    demo_env: DemoApi, client_for: ClientFor, tmp_path: Path
) -> None:
    source = stripe_style_source().model_copy(update={"rate_limits": []})
    stream = source.stream("charges")
    stream = stream.model_copy(update={"paginator": stream.paginator.model_copy(update={"size": 3})})  # pages
    start, end = datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
    results, got = _sync_days(source, stream, client_for, tmp_path, start, end)
    truth = sorted(c["id"] for c in data.charges_created_between(0, 400, start, end))
    assert got == truth and len(truth) > 10
    assert any(r.state is not None and r.state.pages > 1 for r in results)  # starting_after was followed


def test_the_stripe_style_source_materializes_in_dagster(demo_env: DemoApi) -> None:
    with instance_for_test() as instance:
        _materialize_a_day(demo_env, instance)


def _materialize_a_day(demo_env: DemoApi, instance: DagsterInstance) -> None:
    defs = build_definitions(stripe_style_source(), api=SyncApiResource(base_url=demo_env.url, credential=TOKEN,
                                                                        rate_limits=[]))
    key = AssetKey(["stripe_style", "charges"])
    result = materialize([defs.get_assets_def(key)], instance=instance, resources=defs.resources,
                         partition_key="2024-02-05")
    assert result.success
    store = open_store(store_dir(home_under(Path(instance.root_directory))))
    day = Window(datetime(2024, 2, 5, tzinfo=UTC), datetime(2024, 2, 6, tzinfo=UTC))
    assert sorted(r["id"] for r in store.records(TableSpec("stripe_style", "charges"), ["2024-02-05"])) == sorted(
        c["id"] for c in data.charges_created_between(0, 400, day.start, day.end))


def test_the_github_style_source_paces_itself_by_the_headers_and_stops_past_the_window(
    demo_api: Callable[..., DemoApi], client_for: ClientFor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = demo_api(rate_limit=(8, 1.0), rate_limit_style="github", surveys=400)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_URL", api.url)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", TOKEN)
    source = github_style_source()
    stream = source.stream("issues").model_copy(update={"params": {**source.stream("issues").params, "per_page": 4}})
    start, end = datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 15, tzinfo=UTC)
    results, got = _sync_days(source, stream, client_for, tmp_path, start, end)
    truth = sorted(i["id"] for i in data.issues_updated_between(0, 400, start, end))
    assert got == truth and truth
    stats = api.stats()
    assert stats["responses_403"] == 0 and stats["responses_429"] == 0  # the headers alone kept it in budget
    # `since` has no end: each day stops at its first page past the day, not at the last page of the year
    assert stats["requests"] <= sum(-(-max(1, len(data.issues_updated_between(0, 400, w.start, w.end))) // 4) + 1
                                    for w in (r.window for r in results))
