"""Config errors name the field as the user wrote it, its YAML line, and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from sync_assets import ApiSource, BearerAuth, Env, PageNumber, Rate, Stream
from sync_assets.errors import ConfigurationError
from sync_assets.sources import DEMO_SOURCE_PATH, demo_source
from sync_assets.spec import load_source, parse_source_yaml

DEMO_START = "start: {env: SYNC_ASSETS_DEMO_START, default: 2024-01-01}"  # the demo source's, as written
GOOD = """\
name: shop
base_url: https://api.example.com
auth: {type: api_key, key: {env: SHOP_KEY}, location: query, name: api_key}
rate_limits:
  - {requests: 10, per: 1}
  - {requests: 1000, per: PT1H}
streams:
  - name: orders
    path: /orders
    records_path: data.items
    paginator: {type: offset, limit: 50}
  - name: surveys
    path: /surveys
    incremental: {cursor_field: updated_at, start: 2024-01-01, window: weekly}
"""


def test_yaml_source_parses_into_models() -> None:
    source = parse_source_yaml(GOOD)
    assert source.stream("orders").paginator.type == "offset"
    assert source.rate_limits[1].per == timedelta(hours=1)
    incremental = source.stream("surveys").incremental
    assert incremental is not None and incremental.start == datetime(2024, 1, 1, tzinfo=UTC)


def test_python_and_yaml_declare_the_same_source() -> None:
    python = ApiSource(
        name="shop",
        base_url="https://api.example.com",
        auth=BearerAuth(token=Env(env="SHOP_TOKEN")),
        rate_limits=[Rate(10, per=timedelta(seconds=1))],
        streams=[Stream(name="orders", path="/orders", paginator=PageNumber(size=50))],
    )
    yaml_text = """
name: shop
base_url: https://api.example.com
auth: {type: bearer, token: {env: SHOP_TOKEN}}
rate_limits: [{requests: 10, per: 1}]
streams: [{name: orders, path: /orders, paginator: {type: page_number, size: 50}}]
"""
    assert parse_source_yaml(yaml_text) == python


def test_unknown_field_names_its_path_line_and_fix() -> None:
    bad = GOOD.replace("paginator: {type: offset, limit: 50}", "paginator: {type: offset, limt: 50}")
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml(bad, origin="shop.yaml")
    message = str(info.value)
    assert "shop.yaml" in message
    assert "streams[0] (orders).paginator.limt (line 11): unknown field" in message


def test_unknown_paginator_type_lists_the_known_ones() -> None:
    bad = GOOD.replace("{type: offset, limit: 50}", "{type: pages}")
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml(bad)
    assert "streams[0] (orders).paginator (line 11): type 'pages' is not known" in str(info.value)
    assert "page_number" in str(info.value)


def test_missing_required_field_and_bad_name_are_both_reported() -> None:
    bad = GOOD.replace("  - name: orders\n    path: /orders\n", "  - name: Orders!\n")
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml(bad)
    message = str(info.value)
    assert "streams[0] (Orders!).path (line 8): required field is missing" in message
    assert "streams[0] (Orders!).name (line 8)" in message and "lowercase letters" in message


def test_duplicate_stream_names_are_rejected() -> None:
    bad = GOOD.replace("name: surveys", "name: orders")
    with pytest.raises(ConfigurationError, match="repeated: orders"):
        parse_source_yaml(bad)


def test_literal_secret_is_hidden_in_errors_and_repr() -> None:
    source = ApiSource(name="x", base_url="https://x", auth=BearerAuth(token="hunter2-token"),
                       streams=[Stream(name="s", path="/s")])
    assert "hunter2-token" not in repr(source)
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml("name: x\nbase_url: https://x\nauth: {type: bearer, token: [hunter2-token]}\n"
                          "streams: [{name: s, path: /s}]")
    assert "hunter2-token" not in str(info.value)


def test_dagster_env_var_is_read_as_an_env_reference() -> None:
    class EnvVar(str):  # the shape of dagster.EnvVar: a str holding the variable's *name*
        @property
        def env_var_name(self) -> str:
            return str(self)

    auth = BearerAuth(token=EnvVar("MY_TOKEN"))
    assert auth.token == Env(env="MY_TOKEN")


def test_missing_env_var_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_KEY", raising=False)
    source = parse_source_yaml(GOOD)
    assert source.auth is not None
    with pytest.raises(ConfigurationError, match="SHOP_KEY is not set"):
        source.auth.resolve()


def test_a_streams_start_may_come_from_the_environment_when_the_source_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A short history in development, the whole in production: the first day fixes the partitions, so it
    is read when the source loads (an unquoted YAML date is a fine default)."""
    text = GOOD.replace("start: 2024-01-01", "start: {env: SHOP_START, default: 2024-01-01}")
    monkeypatch.delenv("SHOP_START", raising=False)
    incremental = parse_source_yaml(text).stream("surveys").incremental
    assert incremental is not None and incremental.start == datetime(2024, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("SHOP_START", "2026-09-07")
    incremental = parse_source_yaml(text).stream("surveys").incremental
    assert incremental is not None and incremental.start == datetime(2026, 9, 7, tzinfo=UTC)
    monkeypatch.delenv("SHOP_START")
    with pytest.raises(ConfigurationError, match="SHOP_START is not set .*incremental start"):
        parse_source_yaml(text.replace(", default: 2024-01-01", ""))


def test_unknown_stream_lists_the_streams() -> None:
    with pytest.raises(ConfigurationError, match="its streams are: orders, surveys"):
        parse_source_yaml(GOOD).stream("order")


def test_load_source_from_module_and_file(tmp_path: Path) -> None:
    assert load_source(str(DEMO_SOURCE_PATH)) == demo_source()
    assert [s.name for s in demo_source().streams] == ["stock_prices", "surveys", "survey_responses",
                                                              "customers", "orders", "events"]
    with pytest.raises(ConfigurationError, match="not an ApiSource"):
        load_source("sync_assets.sources:DEMO_SOURCE_PATH")
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_source(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("start", ["2024-02-30", "2024-13-01", "'2024-02-30'"])
def test_an_impossible_date_names_its_field_line_and_fix_quoted_or_not(start: str) -> None:
    text = DEMO_SOURCE_PATH.read_text().replace(DEMO_START, f"start: {start}", 1)
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml(text, origin="demo.yaml")
    message = str(info.value)
    assert "streams[0] (stock_prices).incremental.start (line" in message and "write a real date" in message


def test_unquoted_dates_and_instants_still_parse() -> None:
    text = DEMO_SOURCE_PATH.read_text().replace(DEMO_START, "start: 2024-01-01T06:30:00+02:00", 1)
    prices = parse_source_yaml(text).stream("stock_prices").incremental
    assert prices is not None and prices.start == datetime(2024, 1, 1, 4, 30, tzinfo=UTC)
    assert demo_source().stream("surveys").incremental.start == datetime(2024, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]


SHARED = """\
name: shop
base_url: https://shop.example
stream_defaults:
  records_path: data
  primary_key: id
  paginator: {type: cursor, size_param: limit, size: 50}
  params: {expand: all, limit: 10}
streams:
  - {name: customers, path: /customers}
  - {name: orders, path: /orders, records_path: items, params: {limit: 99}}
  - {name: events, path: /events, paginator: {type: link_header}, primary_key: [type, id]}
"""


def test_stream_defaults_fill_what_a_stream_does_not_say() -> None:
    streams = {s.name: s for s in parse_source_yaml(SHARED).streams}
    assert [streams[n].records_path for n in ("customers", "orders", "events")] == ["data", "items", "data"]
    assert [streams[n].paginator.type for n in ("customers", "orders", "events")] == ["cursor", "cursor", "link_header"]
    assert streams["events"].primary_keys == ["type", "id"] and streams["customers"].primary_keys == ["id"]
    assert streams["orders"].params == {"expand": "all", "limit": 99} and streams["customers"].params["limit"] == 10


def test_stream_defaults_apply_to_python_streams_too() -> None:
    source = ApiSource(name="shop", base_url="https://shop.example",
                       stream_defaults={"records_path": "data", "paginator": {"type": "offset", "limit": 20}},
                       streams=[Stream(name="a", path="/a"), Stream(name="b", path="/b", records_path="rows")])
    assert [(s.records_path, s.paginator.type) for s in source.streams] == [("data", "offset"), ("rows", "offset")]


def test_a_bad_default_is_reported_once_at_its_own_line() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_source_yaml(SHARED.replace("{type: cursor, size_param: limit, size: 50}", "{type: pages}"), "shop.yaml")
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].startswith("  stream_defaults.paginator (line 6): type 'pages' is not known")


def test_a_post_body_takes_parent_values_at_any_depth() -> None:
    source = ApiSource(name="shop", base_url="https://shop.example", streams=[
        Stream(name="orders", path="/orders", incremental={"cursor_field": "at", "start": "2024-01-01"}),
        Stream(name="lines", path="/lines/search", method="POST", parent={"stream": "orders"},
               body={"filter": {"order": "{parent[id]}", "tags": ["x", "{parent[kind]}"]}, "limit": 5}),
    ])
    assert source.stream("lines").body_for({"id": 7, "kind": "gift"}) == {
        "filter": {"order": "7", "tags": ["x", "gift"]}, "limit": 5}
    assert source.stream("lines").body == {"filter": {"order": "{parent[id]}", "tags": ["x", "{parent[kind]}"]},
                                           "limit": 5}  # the declaration itself is left as written


def test_a_parent_value_in_the_body_of_a_stream_without_a_parent_is_refused() -> None:
    with pytest.raises(ValidationError, match="body uses the parent record, but the stream has no parent"):
        Stream(name="lines", path="/lines/search", method="POST", body={"filter": {"order": "{parent[id]}"}})


def _over(*streams: Stream) -> ApiSource:
    return ApiSource(name="shop", base_url="https://shop.example", streams=list(streams))


LISTED = Stream(name="accounts", path="/accounts")
WINDOWED = Stream(name="orders", path="/orders", incremental={"cursor_field": "at", "start": "2024-01-01"})


@pytest.mark.parametrize(("streams", "refusal"), [
    ([Stream(name="lines", path="/lines", parent={"stream": "nowhere"})],
     "'lines' names parent 'nowhere', which is not a stream of this source"),
    ([Stream(name="lines", path="/l/{each[a]}", for_each=[{"field": "a", "values_of": {"stream": "no", "key": "id"}}])],
     "'lines' names values_of 'no', which is not a stream of this source"),
    ([Stream(name="a", path="/a", parent={"stream": "b"}),
      Stream(name="b", path="/b/{each[x]}", for_each=[{"field": "x", "values_of": {"stream": "a", "key": "id"}}])],
     "streams a, b name each other as parents: a cycle"),
    ([WINDOWED, Stream(name="lines", path="/l/{parent[id]}", parent={"stream": "orders"}),
      Stream(name="notes", path="/n/{parent[id]}", parent={"stream": "lines"})],
     "parent 'lines' of 'notes' is a substream with windows: its child needs windows of its own"),
])
def test_streams_read_over_other_streams_name_existing_full_refresh_streams_without_a_cycle(
    streams: list[Stream], refusal: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        _over(LISTED, *streams)


def test_a_substream_that_sets_max_records_per_slice_is_refused_rather_than_read_past_the_cap() -> None:
    with pytest.raises(ValidationError, match="max_records_per_slice is not applied to a substream's reads yet"):
        Stream(name="lines", path="/l/{parent[id]}", parent={"stream": "accounts"},
               incremental={"cursor_field": "at", "start": "2024-01-01", "max_records_per_slice": 1000})
    Stream(name="lines", path="/l/{parent[id]}", parent={"stream": "accounts"},  # the way the message gives
           incremental={"cursor_field": "at", "start": "2024-01-01", "max_slice": "P7D"})


def test_a_for_each_list_has_values_or_values_of_never_both_nor_neither() -> None:
    for both_or_neither in ({"values": [1], "values_of": {"stream": "accounts", "key": "id"}}, {}):
        with pytest.raises(ValidationError, match="for_each 'a': give its values, or values_of"):
            Stream(name="lines", path="/l/{each[a]}", for_each=[{"field": "a", **both_or_neither}])
    lines = Stream(name="lines", path="/l/{each[a]}",
                   for_each=[{"field": "a", "values_of": {"stream": "accounts", "key": "id"}}])
    assert _over(LISTED, lines).stream("lines").reads_from == ["accounts"]


def test_a_json_body_names_where_request_parameters_go_at_any_depth() -> None:
    search = Stream(name="search", path="/search", method="POST", params_in="body",
                    body={"filter": {"from": "{param[start]}", "label": "since {param[start]}"},
                          "paging": ["{param[page]}"], "size": 50})
    url, query, body, headers = search.placed("https://x/search", {"start": "2024-01-01", "page": 3, "sort": "asc"},
                                              search.body_for(None))
    assert body == {"filter": {"from": "2024-01-01", "label": "since 2024-01-01"}, "paging": [3], "size": 50,
                    "sort": "asc"}  # named ones where named (a number stays one), the others at the top level
    assert (url, query, headers) == ("https://x/search", {}, {})
    _, _, first, _ = search.placed("https://x/search", {"start": "2024-01-01"}, search.body_for(None))
    assert first == {"filter": {"from": "2024-01-01", "label": "since 2024-01-01"}, "paging": [], "size": 50}
