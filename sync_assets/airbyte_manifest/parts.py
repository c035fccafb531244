"""The manifest parts that stay Jinja at run time, behind the engine's plug-in protocols.

Most of a manifest is fixed once its config is known and becomes plain engine settings. Two kinds of
value are evaluated per response or per record, the way the CDK evaluates them, and are handed to the
engine as its ordinary plug-ins (``{type: custom}`` paginator, ``{class, options}`` transform):

- ``CursorPagination``: the next page's token from ``cursor_value``, unless ``stop_condition`` holds;
- a record's filter and transformations (``RecordFilter``, ``AddFields``, ``RemoveFields``,
  ``KeysToLower``), in the CDK's order: filter, then each transformation.

Their options are plain JSON (templates as text), so a translated source stays a model that can be
printed and compared; no secret is ever among them (the translation refuses templates that would need
one here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sync_assets.airbyte_manifest.interpolation import Template, literal
from sync_assets.errors import SyncSystemError
from sync_assets.pagination import next_page_url, rebased

if TYPE_CHECKING:
    from sync_assets.http import ApiResponse
    from sync_assets.pagination import Params, Token


class CursorPagination:
    """The CDK's ``CursorPaginationStrategy`` inside a ``DefaultPaginator``."""

    def __init__(self, cursor_value: str, stop_condition: str | None = None, token_param: str | None = None,
                 size_param: str | None = None, page_size: int | None = None, path_token: bool = False,
                 parameters: Mapping[str, Any] | None = None, stream: str = "") -> None:
        self.cursor_value = Template(cursor_value, f"stream {stream}: cursor_value")
        self.stop_condition = Template(stop_condition, f"stream {stream}: stop_condition") if stop_condition \
            else None
        self.token_param, self.size_param, self.page_size = token_param, size_param, page_size
        self.path_token = path_token
        self.parameters = dict(parameters or {})

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        params = dict(params)
        if self.size_param and self.page_size:
            params[self.size_param] = self.page_size
        if token is None:
            return url, params
        if self.path_token:  # RequestPath: the token is the next page's URL, which carries the first one's query
            return rebased(str(token), url), {}
        if self.token_param:
            params[self.token_param] = token
        return url, params

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        headers: dict[str, Any] = dict(response.headers)
        headers["link"] = response.links
        context = {"response": response.body, "headers": headers, "last_record": records[-1] if records else None,
                   "last_page_size": len(records), "last_page_token_value": token,
                   "parameters": self.parameters, "config": {}}
        if self.stop_condition is not None and self.stop_condition.eval(context) is True:
            return None
        value = self.cursor_value.eval(context)
        if value in (None, "", {}, []):
            return None
        if self.path_token:  # a path or URL: made absolute, on the source's host only, without our credentials
            return next_page_url(response, value)
        if isinstance(value, int | str):
            return value
        raise SyncSystemError(f"cursor_value {self.cursor_value.text!r} gave {type(value).__name__}, not a page token")


class RecordPipeline:
    """A record through the manifest's filter and transformations; ``None`` when the filter drops it."""

    def __init__(self, steps: list[dict[str, Any]], condition: str | None = None,
                 parameters: Mapping[str, Any] | None = None, partition: Mapping[str, str] | None = None,
                 config: Mapping[str, Any] | None = None, stream: str = "") -> None:
        self.condition = Template(condition, f"stream {stream}: record_filter") if condition else None
        self.steps = steps
        self.templates = {id(field): Template(field["value"], f"stream {stream}: AddFields {field['path']}")
                          for step in steps if step["type"] == "AddFields" for field in step["fields"]}
        self.step_conditions = {id(step): Template(step["condition"], f"stream {stream}: {step['type']}.condition")
                                for step in steps if step.get("condition")}
        self.parameters = dict(parameters or {})
        self.partition = dict(partition or {})  # partition field -> parent record field
        self.config = dict(config or {})

    def __call__(self, record: dict[str, Any], parent: dict[str, Any] | None) -> dict[str, Any] | None:
        context: dict[str, Any] = {"record": record, "parameters": self.parameters, "config": self.config,
                                   "stream_slice": {name: (parent or {}).get(key) for name, key in
                                                    self.partition.items()}}
        if self.condition is not None and not _truthy(self.condition.eval(context)):
            return None
        for step in self.steps:
            condition = self.step_conditions.get(id(step))
            if step["type"] == "KeysToLower":
                record = {str(key).lower(): value for key, value in record.items()}
            elif step["type"] == "RemoveFields":
                for pointer in step["field_pointers"]:
                    if condition is None or _truthy(condition.eval({**context, "property": _at(record, pointer)})):
                        _remove(record, pointer)
            else:  # AddFields
                record = dict(record)
                for field in step["fields"]:
                    value = _typed(self.templates[id(field)].render({**context, "record": record}),
                                   field.get("value_type"))
                    if condition is None or _truthy(condition.eval({**context, "record": record, "value": value,
                                                                    "path": field["path"]})):
                        _put(record, field["path"], value)
            context["record"] = record
        return record


_VALUE_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "integer": (int,),
                                             "boolean": (bool,)}


def _typed(text: str, value_type: str | None) -> Any:
    """The CDK's reading of a rendered value: a Python literal when it is one (of ``value_type``, if set)."""
    value = literal(text)
    if value_type is None:
        return value
    return value if isinstance(value, _VALUE_TYPES.get(value_type, (object,))) else text


def _truthy(value: Any) -> bool:
    return bool(value) and value != "False"


def _at(record: Any, path: list[str]) -> Any:
    for step in path:
        record = record.get(step) if isinstance(record, dict) else None
    return record


def _put(record: dict[str, Any], path: list[str], value: Any) -> None:
    for step in path[:-1]:
        record = record.setdefault(step, {})
    record[path[-1]] = value


def _remove(record: dict[str, Any], path: list[str]) -> None:
    *parents, last = path
    holder = _at(record, parents) if parents else record
    if isinstance(holder, dict):
        holder.pop(last, None)
