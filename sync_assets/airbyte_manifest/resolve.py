"""A manifest as Airbyte's CDK sees it before building components: references followed, types and
``$parameters`` filled in.

Manifests lean on three conveniences that must be undone before anything reads them, and each is
undone here exactly as the CDK does it (``ManifestReferenceResolver``, ``ManifestComponentTransformer``),
because a translation that resolved them differently would read a different API than Airbyte does:

- ``"#/definitions/x"`` as a value, and ``$ref: "#/definitions/x"`` as a key whose siblings override
  what it points to;
- components written without ``type``, which take the default type of the field that holds them
  (a ``retriever`` is a ``SimpleRetriever``);
- ``$parameters``, handed down to every component below and copied into each component's fields it
  does not set itself (a stream's ``$parameters: {path: /users}`` becomes its requester's ``path``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sync_assets.errors import ConfigurationError

REF = "$ref"
PARAMETERS = "$parameters"

# The CDK's DEFAULT_MODEL_TYPES, for the components this package reads (a missing type elsewhere is
# reported as unsupported, which is what the CDK would build there: a component we do not know).
DEFAULT_TYPES: dict[str, str] = {
    "CompositeErrorHandler.error_handlers": "DefaultErrorHandler",
    "CursorPagination.decoder": "JsonDecoder",
    "DatetimeBasedCursor.end_datetime": "MinMaxDatetime",
    "DatetimeBasedCursor.end_time_option": "RequestOption",
    "DatetimeBasedCursor.start_datetime": "MinMaxDatetime",
    "DatetimeBasedCursor.start_time_option": "RequestOption",
    "DeclarativeSource.check": "CheckStream",
    "DeclarativeSource.spec": "Spec",
    "DeclarativeSource.streams": "DeclarativeStream",
    "DeclarativeStream.retriever": "SimpleRetriever",
    "DeclarativeStream.schema_loader": "JsonFileSchemaLoader",
    "DefaultErrorHandler.response_filters": "HttpResponseFilter",
    "DefaultPaginator.decoder": "JsonDecoder",
    "DefaultPaginator.page_size_option": "RequestOption",
    "DpathExtractor.decoder": "JsonDecoder",
    "HttpRequester.error_handler": "DefaultErrorHandler",
    "ListPartitionRouter.request_option": "RequestOption",
    "ParentStreamConfig.request_option": "RequestOption",
    "ParentStreamConfig.stream": "DeclarativeStream",
    "RecordSelector.extractor": "DpathExtractor",
    "RecordSelector.record_filter": "RecordFilter",
    "SimpleRetriever.paginator": "NoPagination",
    "SimpleRetriever.record_selector": "RecordSelector",
    "SimpleRetriever.requester": "HttpRequester",
    "SubstreamPartitionRouter.parent_stream_configs": "ParentStreamConfig",
    "AddFields.fields": "AddedFieldDefinition",
}

# Values that are data, not components: a config's or a schema's own "type" must not be taken for one.
_DATA_FIELDS = {"connection_specification", "connectionSpecification", "schema", "schemas", "default_values",
                "definitions", "metadata"}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest at ``path``, resolved (see the module's docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"manifest {path} does not exist; give the path of a connector's manifest.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"manifest {path} is not valid YAML: {exc}") from None
    return resolve_manifest(data, origin=str(path))


def resolve_manifest(data: Any, origin: str = "<manifest>") -> dict[str, Any]:
    if not isinstance(data, dict) or "streams" not in data:
        raise ConfigurationError(f"{origin} is not an Airbyte declarative manifest: it has no top-level streams")
    if data.get("type", "DeclarativeSource") != "DeclarativeSource":
        raise ConfigurationError(f"{origin}: type {data.get('type')!r} is not supported; a manifest-only "
                                 "connector's manifest has type DeclarativeSource")
    try:
        resolved = _references(data, data, set())
    except _RefError as exc:
        raise ConfigurationError(f"{origin}: {exc}") from None
    resolved.setdefault("type", "DeclarativeSource")
    return _propagate("", resolved, {})


class _RefError(Exception):
    pass


def _references(node: Any, manifest: dict[str, Any], visiting: set[str]) -> Any:
    if isinstance(node, dict):
        own = {key: _references(value, manifest, visiting) for key, value in node.items() if key != REF}
        if REF not in node:
            return own
        target = _references(node[REF], manifest, visiting)
        return {**target, **own} if isinstance(target, dict) else target
    if isinstance(node, list):
        return [_references(item, manifest, visiting) for item in node]
    if isinstance(node, str) and node.startswith("#/"):
        if node in visiting:
            raise _RefError(f"reference {node} refers to itself")
        visiting.add(node)
        try:
            return _references(_lookup(node[2:], manifest, node), manifest, visiting)
        finally:
            visiting.discard(node)
    return node


def _lookup(ref: str, node: Any, whole: str) -> Any:
    """The CDK's reading of ``a/b/c``: the whole rest as a key first, then one segment at a time
    (a key may itself hold a ``/``)."""
    while ref:
        if isinstance(node, dict) and ref in node:
            return node[ref]
        head, _, ref = ref.partition("/")
        try:
            node = node[int(head)] if isinstance(node, list) else node[head]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _RefError(f"reference {whole} points to nothing in the manifest") from None
    return node


def _propagate(field: str, component: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(component)
    if "type" not in out and field in DEFAULT_TYPES:
        out["type"] = DEFAULT_TYPES[field]
    current = {**parameters, **(out.pop(PARAMETERS, None) or {})}
    if out.get("type") in ("object", ["null", "object"]) or not isinstance(out.get("type"), str):
        # a JSON schema or a plain mapping: only its nested components (if any) are visited
        return {key: _visit(f"{field}.{key}", value, current) if key not in _DATA_FIELDS else value
                for key, value in out.items()} if _holds_components(out) else out
    for key, value in current.items():
        out[key] = out.get(key) or value
    for key, value in list(out.items()):
        if key in _DATA_FIELDS or not isinstance(value, dict | list):
            continue
        inherited = {name: item for name, item in current.items() if name != key}  # no cycle through itself
        out[key] = _visit(f"{out['type']}.{key}", value, inherited)
    if current:
        out[PARAMETERS] = current
    return out


def _visit(field: str, value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return _propagate(field, value, parameters)
    if isinstance(value, list):
        return [_propagate(field, item, parameters) if isinstance(item, dict) else item for item in value]
    return value


def _holds_components(mapping: dict[str, Any]) -> bool:
    return any(isinstance(value, dict) and isinstance(value.get("type"), str) and re.match(r"^[A-Z]", value["type"])
               for value in mapping.values())
