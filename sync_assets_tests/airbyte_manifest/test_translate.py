"""A manifest of our own for the demo API, translated and read: the same records as the bundled demo source
(with the manifest's own transformations), and clear refusals for what is not supported."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, EnvVar, instance_for_test, materialize

from sync_assets.airbyte_manifest import Unsupported, load_manifest
from sync_assets.cli import main as cli_main
from sync_assets.dagster import SyncApiResource, build_definitions, chunk_partitions_name
from sync_assets.demo_api import DemoApi
from sync_assets.errors import ConfigurationError
from sync_assets.home import home_under
from sync_assets.http import RequestStats, open_client
from sync_assets.reader import StreamReader
from sync_assets.spec import ApiSource, load_source
from sync_assets.storage import TableSpec, open_store
from sync_assets.storage.layout import chunk_key, store_dir
from sync_assets.windows import Window
from sync_assets_tests.helpers import TOKEN

MANIFEST = Path(__file__).parent / "manifests" / "demo" / "manifest.yaml"
DEMO_SOURCE = Path(__file__).parents[2] / "sync_assets" / "sources" / "demo.yaml"
JANUARY_WEEK = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
EVERYTHING = Window(datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC))


@pytest.fixture
def sources(api: DemoApi, monkeypatch: pytest.MonkeyPatch) -> tuple[ApiSource, ApiSource]:
    """The manifest (its key from the environment, as a Dagster EnvVar) and the bundled demo source."""
    monkeypatch.setenv("DEMO_KEY", TOKEN)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_URL", api.url)
    monkeypatch.setenv("SYNC_ASSETS_DEMO_TOKEN", TOKEN)
    manifest = load_manifest(MANIFEST, {"base_url": api.url, "api_key": EnvVar("DEMO_KEY"), "start_date": "2024-01-01"})
    return manifest, load_source(DEMO_SOURCE).model_copy(update={"rate_limits": []})


def _read(source: ApiSource, stream: str, tmp_path: Path, **pages: Any) -> list[dict[str, Any]]:
    client = open_client(source, tmp_path)
    try:
        reader = StreamReader(source, source.stream(stream), client)
        return [record for page in reader.pages(RequestStats(), **pages) for record in page.records]
    finally:
        client.close()


def _by_key(records: list[dict[str, Any]], *key: str) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: tuple(str(r[k]) for k in key))


def test_every_stream_reads_what_the_bundled_source_reads_with_the_manifests_transformations(
    sources: tuple[ApiSource, ApiSource], tmp_path: Path
) -> None:
    manifest, ours = sources
    customers = _read(manifest, "customers", tmp_path)  # opaque cursor pages; KeysToLower, RemoveFields
    assert customers == [{k: v for k, v in c.items() if k != "address"} for c in _read(ours, "customers", tmp_path)]
    assert len(customers) == 230
    orders = _read(manifest, "orders", tmp_path)  # offset pages; a RecordFilter with a $parameters threshold
    assert orders == [o for o in _read(ours, "orders", tmp_path) if o["amount"] > 1000] and 0 < len(orders) < 310
    assert _read(manifest, "events", tmp_path) == _read(ours, "events", tmp_path)  # Link header, through RequestPath
    surveys = _read(manifest, "surveys", tmp_path, window=JANUARY_WEEK)  # page numbers; AddFields
    assert surveys == [{**s, "title_length": len(s["title"])} for s in _read(ours, "surveys", tmp_path,
                                                                               window=JANUARY_WEEK)]
    assert surveys
    prices = _read(manifest, "stock_prices", tmp_path, window=JANUARY_WEEK)  # next URL; an inclusive end date
    assert _by_key(prices, "ticker", "date") == _by_key(_read(ours, "stock_prices", tmp_path, window=JANUARY_WEEK),
                                                        "ticker", "date")
    assert {p["date"] for p in prices} == {f"2024-01-0{d}" for d in range(1, 8)}  # the 7th: the inclusive end
    survey = surveys[0]
    assert _read(manifest, "survey_responses", tmp_path, parent=survey) == _read(ours, "survey_responses", tmp_path,
                                                                                 parent=survey)
    # window bounds and page numbers in a POST's JSON body (the page size of 100 makes several pages)
    searched = _read(manifest, "searched_surveys", tmp_path, window=EVERYTHING)
    assert searched == _read(ours, "surveys", tmp_path, window=EVERYTHING) and len(searched) > 100
    # the same with options in a GET's body, headers and the query; and in a form body with a fixed field
    for name in ("split_searched_surveys", "form_searched_surveys"):
        assert _read(manifest, name, tmp_path, window=EVERYTHING) == searched, name


def test_window_bounds_and_a_page_token_templated_into_a_nested_body_are_written_there_on_each_request(
    sources: tuple[ApiSource, ApiSource], api: DemoApi, tmp_path: Path
) -> None:
    manifest, ours = sources
    nested = manifest.stream("nested_searched_surveys")
    assert nested.body == {"filter": {"start_modified_at": "{param[window_start]}",
                                      "end_modified_at": "{param[window_end]}", "page": "{param[next_page_token]}"},
                           "per_page": 100}
    api.reset_stats()
    found = _read(manifest, "nested_searched_surveys", tmp_path, window=EVERYTHING)
    assert found == _read(ours, "surveys", tmp_path, window=EVERYTHING) and len(found) > 100  # several pages
    arrived = set(api.stats()["search_parameters"])
    assert {"start_modified_at in filter", "end_modified_at in filter", "page in filter", "per_page in body"} <= arrived
    assert not {p for p in arrived if p.endswith(("in query", "in header"))}  # nothing went anywhere else


def test_an_api_key_in_a_form_body_rides_with_each_request_of_a_form_stream_and_a_json_stream_is_refused(
    api: DemoApi, tmp_path: Path
) -> None:
    data = yaml.safe_load(MANIFEST.read_text())
    data["definitions"]["requester"]["authenticator"] = {  # as Canny takes its key
        "type": "ApiKeyAuthenticator", "api_token": "{{ config['api_key'] }}",
        "inject_into": {"type": "RequestOption", "inject_into": "body_data", "field_name": "api_key"}}
    changed = tmp_path / "manifest.yaml"
    changed.write_text(yaml.safe_dump(data))
    config = {"base_url": api.url, "api_key": TOKEN, "start_date": "2024-01-01"}
    with pytest.raises(ConfigurationError, match=r"stream searched_surveys: .*both in a JSON body .* and in a form "
                                                 r"body \(retriever.requester.authenticator.inject_into\)"):
        load_manifest(changed, config)
    data["streams"] = ["#/definitions/form_searched_surveys"]
    changed.write_text(yaml.safe_dump(data))
    source = load_manifest(changed, config)
    assert source.stream("form_searched_surveys").body_format == "form"
    found = _read(source, "form_searched_surveys", tmp_path, window=EVERYTHING)
    assert len(found) == 400 and api.stats()["responses_401"] == 0  # the key went in the form, nowhere else


def test_the_translation_says_what_each_stream_became(sources: tuple[ApiSource, ApiSource]) -> None:
    manifest, _ = sources
    kinds = {s.name: manifest.describe(s).split(":")[0] for s in manifest.streams}
    assert kinds == {"surveys": "incremental on date_modified, daily windows",
                     "survey_responses": "substream of surveys",
                     "recent_responses": "substream of surveys with daily windows on submitted_at",
                     "stock_prices": "incremental on date, daily windows", "customers": "resumable full refresh",
                     "price_reports": "incremental on date, daily windows",
                     "orders": "resumable full refresh", "events": "resumable full refresh",
                     "all_surveys": "resumable full refresh", "all_survey_responses": "substream of all_surveys",
                     "chosen_survey_responses": "resumable full refresh for each survey_id",
                     "chosen_siblings": "substream of chosen_survey_responses",
                     "searched_surveys": "incremental on date_modified, daily windows",
                     "split_searched_surveys": "incremental on date_modified, daily windows",
                     "form_searched_surveys": "incremental on date_modified, daily windows",
                     "nested_searched_surveys": "incremental on date_modified, daily windows",
                     "tickers": "resumable full refresh",
                     "ticker_prices": "substream of tickers with daily windows on date",
                     "currencies": "resumable full refresh",
                     "ticker_reports": "resumable full refresh for each ticker (from tickers.symbol) x currency "
                                       "(from currencies.code)"}
    chosen = manifest.stream("chosen_survey_responses")
    assert chosen.for_each[0].values == [3, 17, 42, 999] and chosen.ignore_statuses == [404]  # the spec's default
    assert "checkpointed per parent" in manifest.describe(manifest.stream("all_survey_responses"))
    prices = manifest.stream("stock_prices").incremental
    assert prices is not None and prices.end_inclusive and prices.param_format == "%Y-%m-%d"
    assert manifest.stream("survey_responses").path == "/v3/surveys/{parent[id]}/responses"
    reports = manifest.stream("price_reports")  # the window in the path, each request at most 30 days
    assert reports.path == "/v1/reports/prices/{param[window_start]}/{param[window_end]}"
    assert reports.incremental is not None and reports.incremental.max_slice == timedelta(days=30)
    searched = manifest.stream("searched_surveys")
    assert searched.method == "POST" and searched.body_format == "json"
    assert searched.param_places == dict.fromkeys(["start_modified_at", "end_modified_at", "page", "per_page"], "body")
    split = manifest.stream("split_searched_surveys")
    assert split.method == "GET" and split.param_places == {"start_modified_at": "header", "page": "body",
                                                            "per_page": "header"}  # the end: in the query
    form = manifest.stream("form_searched_surveys")
    assert (form.body_format, form.body) == ("form", {"sort": "asc"})
    assert form.param_places == dict.fromkeys(["start_modified_at", "end_modified_at", "per_page"], "body")
    assert searched.incremental is not None and searched.incremental.lookback == timedelta(days=3)
    assert manifest.retry.max_attempts == 8 and manifest.rate_limit_headers.reset[0] == "Retry-After"
    assert TOKEN not in repr(manifest) and "DEMO_KEY" in repr(manifest.auth)  # read when a client is built


def test_a_manifest_materializes_as_partitioned_dagster_assets(
    sources: tuple[ApiSource, ApiSource], tmp_path: Path
) -> None:
    manifest, _ = sources
    day = next(iter(_read(manifest, "surveys", tmp_path, window=JANUARY_WEEK)))["date_modified"]
    key = datetime.fromisoformat(day).astimezone(UTC).date().isoformat()  # a day that has surveys
    defs = build_definitions(manifest, api=SyncApiResource(base_url=manifest.base_url, rate_limits=[]))
    with instance_for_test() as instance:
        assets = [defs.get_assets_def(AssetKey(["demo", name])) for name in ("surveys", "survey_responses")]
        result = materialize(assets, instance=instance, resources=defs.resources, partition_key=key)
        assert result.success
        store = open_store(store_dir(home_under(Path(instance.root_directory))))
        surveys = list(store.records(TableSpec("demo", "surveys"), [key]))
        assert surveys and all(s["title_length"] == len(s["title"]) for s in surveys)
        responses = list(store.records(TableSpec("demo", "survey_responses"), [key]))
        assert responses and {r["survey_id"] for r in responses} <= {s["id"] for s in surveys}


def _manifest_with(tmp_path: Path, change: dict[str, Any]) -> Path:
    data = yaml.safe_load(MANIFEST.read_text())
    data["definitions"]["customers"]["retriever"].update(change)
    path = tmp_path / "source-changed" / "manifest.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    return path


CONFIG = {"base_url": "http://127.0.0.1:1", "api_key": "k", "start_date": "2024-01-01"}


@pytest.mark.parametrize(("change", "named"), [
    ({"paginator": {"type": "DefaultPaginator", "pagination_strategy": {"type": "CustomPaginationStrategy"}}},
     "stream customers.retriever.paginator.pagination_strategy: component 'CustomPaginationStrategy'"),
    ({"partition_router": {"type": "CartesianProductStreamSlicer", "stream_slicers": []}},
     "stream customers.retriever.partition_router: component 'CartesianProductStreamSlicer'"),
    ({"record_selector": {"type": "RecordSelector", "extractor": {"type": "DpathExtractor", "field_path": ["a.b"]}}},
     "stream customers.retriever.record_selector.extractor.field_path: a field_path with a '.' in a key"),
])
def test_anything_unsupported_is_refused_naming_the_stream_the_place_and_the_component(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    with pytest.raises(Unsupported) as refused:
        load_manifest(_manifest_with(tmp_path, change), CONFIG)
    assert named in str(refused.value) and "supported: DeclarativeSource" in str(refused.value)


def test_a_fixed_end_datetime_ends_the_stream_at_airbytes_last_instant(tmp_path: Path) -> None:
    data = yaml.safe_load(MANIFEST.read_text())
    cursor = data["definitions"]["stock_prices"]["incremental_sync"]  # dates, a day's granularity: whole days
    cursor["end_datetime"] = "{{ config.get('end_date') or now_utc().strftime('%Y-%m-%d') }}"
    path = tmp_path / "source-ends" / "manifest.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    ends = load_manifest(path, {**CONFIG, "end_date": "2024-03-31"}).stream("stock_prices").incremental
    assert ends is not None and ends.end == datetime(2024, 4, 1, tzinfo=UTC)  # March 31 included, as Airbyte reads
    runs_on = load_manifest(path, CONFIG).stream("stock_prices").incremental  # no end in the config: now
    assert runs_on is not None and runs_on.end is None


def test_a_config_missing_what_the_spec_requires_names_the_fields() -> None:
    with pytest.raises(ConfigurationError, match=r"lacks api_key \(API key\), start_date \(Start date\)"):
        load_manifest(MANIFEST, {"base_url": "http://127.0.0.1:1"})


def test_a_source_yaml_names_a_manifest_its_config_and_our_own_settings(
    api: DemoApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_KEY", TOKEN)
    monkeypatch.setenv("DEMO_URL", api.url)
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump({
        "name": "from_manifest", "manifest": os.path.relpath(MANIFEST, tmp_path),
        "config": {"base_url": {"env": "DEMO_URL"}, "api_key": {"env": "DEMO_KEY"}, "start_date": "2024-01-01"},
        "rate_limits": [{"requests": 40, "per": 1}], "concurrency": 3}))
    source = load_source(tmp_path / "demo.yaml")
    assert (source.name, source.concurrency, source.rate_limits[0].requests) == ("from_manifest", 3, 40)
    assert len(_read(source, "customers", tmp_path)) == 230
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"manifest": "x/manifest.yaml", "streams": []}))
    with pytest.raises(ConfigurationError, match="streams come from the manifest"):
        load_source(tmp_path / "bad.yaml")


def test_manifest_check_tells_which_manifests_translate_and_what_blocks_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = _manifest_with(tmp_path, {"partition_router": {"type": "GroupingPartitionRouter"}})
    assert cli_main(["manifest", "check", str(MANIFEST.parent), str(blocked)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("translates: 20 streams (7 incremental, 1 substream of surveys, "
                           "1 substream of surveys with daily windows, 6 resumable full refresh, "
                           "1 substream of all_surveys, 1 resumable full refresh for each survey_id, "
                           "1 substream of chosen_survey_responses, 1 substream of tickers with daily windows, "
                           "1 resumable full refresh for each ticker (from tickers.symbol) x currency (from "
                           "currencies.code))")
    assert "unsupported: stream customers.retriever.partition_router: component 'GroupingPartitionRouter'" in out[1]
    assert out[2] == "1 of 2 manifests translate"
    assert cli_main(["manifest", "check", str(MANIFEST)]) == 0


def test_a_stream_whose_error_handler_differs_gets_retries_of_its_own(tmp_path: Path) -> None:
    handler: dict[str, Any] = {"type": "DefaultErrorHandler", "max_retries": 2, "backoff_strategies": [
        {"type": "ConstantBackoffStrategy", "backoff_time_in_seconds": 1},
        {"type": "WaitTimeFromHeader", "header": "Retry-After"}]}
    requester = {"$ref": "#/definitions/requester", "path": "/v1/customers", "error_handler": handler}
    source = load_manifest(_manifest_with(tmp_path, {"requester": requester}), CONFIG)
    assert source.retry.max_attempts == 8  # the first stream's handler (max_retries: 7) is the source's
    own = source.stream("customers").retry
    assert own is not None and (own.max_attempts, own.backoff_seconds, own.max_backoff_seconds) == (3, 1, 1)
    assert all(s.retry is None for s in source.streams if s.name != "customers")
    handler["backoff_strategies"] = handler["backoff_strategies"][:1]  # its wait header would be its own
    (tmp_path / "again").mkdir()
    with pytest.raises(Unsupported, match="a WaitTimeFromHeader that differs from stream to stream"):
        load_manifest(_manifest_with(tmp_path / "again", {"requester": requester}), CONFIG)


def test_manifest_check_writes_a_stand_in_date_in_the_format_the_manifest_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec's example that is a placeholder ("dd/mm/YYYY") is no date; the check then writes its stand-in
    in the manifest's own format instead of calling the manifest broken."""
    text = MANIFEST.read_text().replace('datetime_format: "%Y-%m-%d"\n', 'datetime_format: "%d/%m/%Y"\n')
    text = text.replace('examples: ["2024-01-01"]', 'examples: ["dd/mm/YYYY"]')
    path = tmp_path / "source-day-first" / "manifest.yaml"
    path.parent.mkdir()
    path.write_text(text)
    assert cli_main(["manifest", "check", str(path)]) == 0, capsys.readouterr().out
    with pytest.raises(ConfigurationError, match="'dd/mm/YYYY' is not a date in the format '%d/%m/%Y'"):
        load_manifest(path, {**CONFIG, "start_date": "dd/mm/YYYY"})  # a real config's value is never replaced


def test_a_session_login_and_an_offset_without_a_page_size_read_as_airbyte_declares_them(
    demo_api: Callable[..., DemoApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = demo_api(token_lifetime=0.5, latency_ms=150, orders=130, customers=230)  # /login tokens live 0.5 s
    monkeypatch.setenv("DEMO_KEY", TOKEN)
    data = yaml.safe_load(MANIFEST.read_text())
    data["definitions"]["requester"]["authenticator"] = {
        "type": "SessionTokenAuthenticator",
        "login_requester": {"type": "HttpRequester", "url_base": "{{ config['base_url'] }}", "path": "/login",
                            "http_method": "POST",
                            "request_body_json": {"username": "demo", "password": "{{ config['api_key'] }}"}},
        "session_token_path": ["session", "token"], "expiration_duration": "PT0.4S",
        "request_authentication": {"type": "Bearer"}}
    orders = data["definitions"]["orders"]["retriever"]
    orders["paginator"] = {"type": "DefaultPaginator",  # no page size: the API's own, and stop at an empty page
                           "page_token_option": {"type": "RequestOption", "inject_into": "request_parameter",
                                                 "field_name": "offset"},
                           "pagination_strategy": {"type": "OffsetIncrement"}}
    orders["record_selector"].pop("record_filter")
    path = tmp_path / "source-session" / "manifest.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    source = load_manifest(path, {"base_url": api.url, "api_key": EnvVar("DEMO_KEY"), "start_date": "2024-01-01"})
    assert source.auth is not None and source.auth.type == "session"
    assert len({o["id"] for o in _read(source, "orders", tmp_path)}) == 130
    logins_before = api.stats()["token_requests"]
    assert len(_read(source, "customers", tmp_path)) == 230  # 5 pages: logs in again as tokens expire
    assert api.stats()["token_requests"] > logins_before


def test_a_substream_of_a_full_refresh_parent_is_a_refresh_asset_that_depends_on_its_parent(
    sources: tuple[ApiSource, ApiSource], tmp_path: Path
) -> None:
    manifest, _ = sources
    defs = build_definitions(manifest, api=SyncApiResource(base_url=manifest.base_url, rate_limits=[]))
    parent, child = (defs.get_assets_def(AssetKey(["demo", name])) for name in ("all_surveys", "all_survey_responses"))
    assert parent.key in child.asset_deps[child.key]
    with instance_for_test() as instance:
        for asset in (parent, child):
            stream = manifest.stream(asset.key.path[-1])
            instance.add_dynamic_partitions(chunk_partitions_name(manifest, stream), [chunk_key(1, 0)])
            result = materialize([asset], instance=instance, resources=defs.resources, partition_key=chunk_key(1, 0))
            assert result.success
        store = open_store(store_dir(home_under(Path(instance.root_directory))))
        surveys = list(store.snapshot_records(TableSpec("demo", "all_surveys", "snapshot")))
        responses = list(store.snapshot_records(TableSpec("demo", "all_survey_responses", "snapshot")))
        assert len(surveys) == 400
        assert sorted(r["id"] for r in responses) == sorted(
            r["id"] for s in surveys for r in _read(manifest, "all_survey_responses", tmp_path, parent=s))
