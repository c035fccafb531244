"""References, default types and $parameters resolve as Airbyte's CDK resolves them."""

from __future__ import annotations

import pytest

from sync_assets.airbyte_manifest.resolve import resolve_manifest
from sync_assets.errors import ConfigurationError


def test_references_merge_with_their_siblings_and_parameters_fill_the_fields_a_component_leaves_out() -> None:
    manifest = resolve_manifest({
        "definitions": {"requester": {"url_base": "https://api.example.com", "http_method": "GET"},
                        "nested/key": "the whole key first", "nested": {"key": "then segments"}},
        "streams": [{
            "name": "users", "$parameters": {"path": "/users", "name": "ignored: the stream names itself"},
            "retriever": {"requester": {"$ref": "#/definitions/requester", "http_method": "POST"},
                          "record_selector": {"extractor": {"field_path": ["data"]}}},
            "primary_key": "#/definitions/nested/key",
        }],
    })
    stream = manifest["streams"][0]
    requester = stream["retriever"]["requester"]
    assert (stream["type"], stream["retriever"]["type"], requester["type"]) == (
        "DeclarativeStream", "SimpleRetriever", "HttpRequester")
    assert stream["retriever"]["record_selector"]["extractor"]["type"] == "DpathExtractor"
    assert requester["http_method"] == "POST" and requester["url_base"] == "https://api.example.com"
    assert requester["path"] == "/users"  # handed down from the stream's $parameters
    assert stream["name"] == "users" and requester["$parameters"]["path"] == "/users"
    assert stream["primary_key"] == "the whole key first"


def test_a_reference_to_nothing_or_to_itself_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="#/definitions/missing points to nothing"):
        resolve_manifest({"streams": ["#/definitions/missing"], "definitions": {}})
    with pytest.raises(ConfigurationError, match="refers to itself"):
        resolve_manifest({"streams": ["#/definitions/a"], "definitions": {"a": "#/definitions/a"}})
    with pytest.raises(ConfigurationError, match="not an Airbyte declarative manifest"):
        resolve_manifest({"name": "ours", "base_url": "x"})
