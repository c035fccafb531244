"""What a user declares: a source (an API) and its streams, in Python or in YAML.

Both routes go through these pydantic models, so they accept the same things and reject the same
mistakes. Every model forbids unknown fields (a typo is an error, not a silently ignored
setting), and a failed load lists each bad field by its path (``streams[1] (surveys).paginator.size``)
with its YAML line and what to do about it.
"""

from __future__ import annotations

import importlib
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from sync_assets.auth import Auth
from sync_assets.errors import ConfigurationError
from sync_assets.http import RetryPolicy
from sync_assets.pagination import NoPagination, Paginator
from sync_assets.plugins import build, call, load
from sync_assets.rate_limit import Rate, RateLimitHeaders, RateLimitStore
from sync_assets.secrets import Text
from sync_assets.windows import Incremental

# Names become asset keys, file names and table names, so they are kept to a safe alphabet.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

# The only placeholders a request may hold: fields of the parent record (/surveys/{parent[id]}/responses), or
# the value of a for_each list (/quotes/{each[symbol]}).
PARENT_FIELD = re.compile(r"\{(parent|each)\[([A-Za-z0-9_]+)\]\}")
# A request parameter written where it is named instead: into the path (a report API's days:
# /daily/{param[start]}/{param[end]}), or into a JSON body's nested field ({"options": {"offset": "{param[offset]}"}}).
PARAM_PLACEHOLDER = re.compile(r"\{param\[([A-Za-z0-9_.\-]+)\]\}")


def _filled(value: Any, parent_record: dict[str, Any] | None) -> Any:
    if parent_record is None or not isinstance(value, str):
        return value
    return PARENT_FIELD.sub(lambda m: str(parent_record.get(m.group(2), "")), value)


def _param_names(value: Any) -> set[str]:
    """The parameters a JSON body names at any depth (``{param[name]}``)."""
    if isinstance(value, dict):
        return set().union(*map(_param_names, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_param_names, value)) if value else set()
    return set(PARAM_PLACEHOLDER.findall(value)) if isinstance(value, str) else set()


def _with_params(value: Any, params: dict[str, Any]) -> Any:
    """A JSON body with the parameters it names written in; a field naming one not sent is left out."""
    if isinstance(value, dict):
        filled = {key: _with_params(item, params) for key, item in value.items()}
        return {key: item for key, item in filled.items() if item is not _UNSENT}
    if isinstance(value, list):
        return [item for item in (_with_params(item, params) for item in value) if item is not _UNSENT]
    if not isinstance(value, str) or not PARAM_PLACEHOLDER.search(value):
        return value
    names = PARAM_PLACEHOLDER.findall(value)
    if any(name not in params for name in names):
        return _UNSENT
    whole = PARAM_PLACEHOLDER.fullmatch(value)
    if whole:  # the value itself, typed: a number stays a number
        return params[whole.group(1)]
    return PARAM_PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), value)


_UNSENT = object()


Place = Literal["query", "body", "header"]


class Parent(BaseModel):
    """Makes a stream a substream: one request (and its pages) per record of the parent stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stream: str = Field(pattern=NAME_PATTERN, description="The parent stream, in the same source.")


class CustomTransform(BaseModel):
    """A record transform of one's own that takes options: ``class`` (``package.module:Class``) built with
    ``options``; the instance is called with each record and the substream's parent record (``None`` for
    other streams) and returns the record to store, or ``None`` to leave it out."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_path: str = Field(alias="class", description="package.module:Class")
    options: dict[str, Any] = Field(default_factory=dict)
    _impl: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _built(self) -> CustomTransform:
        self._impl = build(self.class_path, "transform", self.options)
        return self

    def __call__(self, record: dict[str, Any], parent_record: dict[str, Any] | None) -> Any:
        return call(self.class_path, "transform", self._impl, record, parent_record)


class ValuesOf(BaseModel):
    """Where a ``for_each`` list's values come from when the API lists them: a field of every record of a
    stream of the same source (a full refresh's published snapshot, or every record a windowed stream holds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stream: str = Field(pattern=NAME_PATTERN, description="A stream of the same source.")
    key: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="The field of its records that gives the values.")


class ForEach(BaseModel):
    """A list the stream is read over: once per value (per combination, with several lists), the value filling
    ``{each[field]}`` in the path, parameters, headers or body. The values are fixed (one read per ticker
    symbol), or another stream's (``values_of``: one read per account, per inbox of every account).

    Several lists from streams are what one ``parent`` cannot say: a read per combination of two parents'
    records (Airbyte's several ``SubstreamPartitionRouter`` on one stream)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="The placeholder's name: {each[field]}.")
    values: list[str | int] | None = Field(None, min_length=1, description="The values, when they are fixed.")
    values_of: ValuesOf | None = Field(None, description="The values, when another stream's records hold them.")

    @model_validator(mode="after")
    def _one_origin(self) -> ForEach:
        if (self.values is None) == (self.values_of is None):
            raise ValueError(f"for_each {self.field!r}: give its values, or values_of: {{stream: ..., key: ...}} "
                             "to take them from another stream's records, one of the two")
        return self


class Stream(BaseModel):
    """One endpoint read as one table (and, in Dagster, one asset)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=NAME_PATTERN, description="Lowercase letters, digits and _.")
    path: str = Field(description="Path under the source's base_url, e.g. /v3/surveys.")
    records_path: str | None = Field(None, description="Dotted path to the list of records; empty = the root.")
    primary_key: str | list[str] | None = None
    paginator: Paginator = Field(default_factory=NoPagination)
    incremental: Incremental | None = Field(None, description="Omit for a resumable full refresh.")
    parent: Parent | None = Field(None, description="Read once per parent record; path uses {parent[field]}.")
    for_each: list[ForEach] = Field(
        default_factory=list, description="Read once per value of fixed lists (a full refresh over them); the "
                                          "request uses {each[field]}.")
    chunk_pages: int = Field(10, ge=1, description="Pages per partition (checkpoint chunk) of a full refresh.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters; a substream's may use {parent[field]}.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with this stream's requests (over the source's); may use {parent[field]}.")
    ignore_statuses: list[int] = Field(
        default_factory=list, description="HTTP error statuses read as an empty last page, not a failure (e.g. 404 "
                                          "for a child that went away between the parent's read and its own).")
    retry: RetryPolicy | None = Field(
        None, description="This stream's retries instead of the source's, for an endpoint that needs its own "
                          "(a slow report that wants a longer backoff, a search that should fail fast).")
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, Any] | None = Field(
        None, description="The request body; its strings may use {parent[field]}. Usually with POST; a GET "
                          "request carries it too, for the APIs that read one.")
    body_format: Literal["json", "form"] = Field(
        "json", description="How the body is sent: JSON, or a form (application/x-www-form-urlencoded).")
    params_in: Place = Field(
        "query", description="Where the stream's, the window's and the paginator's parameters go: the query "
                             "string, the body, or headers (one per parameter).")
    param_places: dict[str, Place] = Field(
        default_factory=dict, description="Where a parameter goes instead of params_in, by its name: e.g. "
                                          "{page: body, since: header}.")
    transform: str | CustomTransform | None = Field(
        None, description="package.module:function called on each record; it returns the record to store (fields "
                          "added, renamed or dropped), or None to leave the record out. Or {class, options}: "
                          "see CustomTransform.")
    include_from_parent: list[str] = Field(
        default_factory=list, description="Parent fields copied into each child record, as <parent>_<field>.")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")

    _transform: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _transform_loads(self) -> Stream:
        if isinstance(self.transform, str):
            function, path = load(self.transform, "transform"), self.transform
            self._transform = lambda record, parent: call(path, "transform", function, record)
        elif self.transform is not None:
            self._transform = self.transform
        return self

    def transformed(self, records: list[dict[str, Any]], parent_record: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
        """The page's records through the stream's ``transform`` (if any); ``None`` from it drops a record."""
        if self._transform is None:
            return records
        out = [self._transform(record, parent_record) for record in records]
        return [record for record in out if record is not None]

    @field_validator("ignore_statuses")
    @classmethod
    def _ignorable(cls, statuses: list[int]) -> list[int]:
        wrong = [status for status in statuses if not 400 <= status < 600 or status == 429]
        if wrong:
            raise ValueError(f"ignore_statuses takes HTTP error statuses (4xx, 5xx) but 429, which the budget "
                             f"handles; got {wrong}")
        return statuses

    @model_validator(mode="after")
    def _path_fits_parent(self) -> Stream:
        texts = {"path": self.path, **{f"param {k}": v for k, v in self.params.items() if isinstance(v, str)},
                 **{f"header {k}": v for k, v in self.headers.items()}}
        if self.body is not None:
            texts["body"] = json.dumps(self.body)
        used = {(kind, field) for text in texts.values() for kind, field in PARENT_FIELD.findall(text)}
        by_parent = [where for where, text in texts.items()
                     if any(kind == "parent" for kind, _ in PARENT_FIELD.findall(text))]
        if (by_parent or self.include_from_parent) and self.parent is None:
            what = ", ".join(by_parent) or "include_from_parent"
            raise ValueError(f"{what} uses the parent record, but the stream has no parent; "
                             "add parent: {stream: ...}")
        lists = {each.field for each in self.for_each}
        unknown = sorted(field for kind, field in used if kind == "each" and field not in lists)
        if unknown:
            raise ValueError(f"the request uses {{each[{unknown[0]}]}}, but no for_each list has field "
                             f"{unknown[0]!r}; add for_each: [{{field: {unknown[0]}, values: [...]}}]")
        if self.body_format == "form" and any(isinstance(v, dict | list) for v in (self.body or {}).values()):
            raise ValueError("a form body holds flat fields: nest values only in a JSON body (body_format: json)")
        bad = [p for p in re.findall(r"\{[^}]*\}", self.path) if not (PARENT_FIELD.fullmatch(p)
                                                                        or PARAM_PLACEHOLDER.fullmatch(p))]
        if bad:
            raise ValueError(f"path placeholders must look like {{parent[field]}}, {{each[field]}} or "
                             f"{{param[name]}}; found {', '.join(bad)}")
        if self.for_each and (self.incremental is not None or self.parent is not None):
            raise ValueError("for_each is supported on full-refresh streams without a parent (not yet on "
                             "incremental streams or substreams)")
        if self.parent is not None and self.incremental is not None and self.incremental.max_records_per_slice:
            # A substream's reads do not split at the cap yet: refused, rather than lose records past it.
            raise ValueError("incremental.max_records_per_slice is not applied to a substream's reads yet; "
                             "remove it and keep each read under the API's cap with a small incremental.max_slice")
        return self

    def path_for(self, parent_record: dict[str, Any] | None) -> str:
        """The request path, with the parent record's fields filled in (URL-quoted)."""
        if parent_record is None:
            return self.path
        return PARENT_FIELD.sub(lambda m: quote(str(parent_record.get(m.group(2), "")), safe=""), self.path)

    def params_for(self, parent_record: dict[str, Any] | None) -> dict[str, Any]:
        """The query parameters, with the parent record's fields filled in (requests encodes them)."""
        return {name: _filled(value, parent_record) for name, value in self.params.items()}

    def body_for(self, parent_record: dict[str, Any] | None) -> dict[str, Any] | None:
        """The JSON body (a copy), with the parent record's fields filled into its strings, at any depth."""
        def fill(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: fill(item) for key, item in value.items()}
            if isinstance(value, list):
                return [fill(item) for item in value]
            return _filled(value, parent_record)

        return None if self.body is None else fill(self.body)

    def placed(self, url: str, params: dict[str, Any], body: dict[str, Any] | None
               ) -> tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, str]]:
        """A request's parameters (the stream's, the window's, the paginator's) put where they go: where the
        path or the JSON body names them (``{param[name]}``: URL-quoted in the path; in the body the value
        itself, or its text within a longer string), else the query, the body's top level or the headers.
        Returns the URL, the query, the body and the headers.

        A body field naming a parameter this request does not send (the page token of a first page) is
        left out of the body; a path cannot leave one out, so there it is a configuration error."""
        in_path = set(PARAM_PLACEHOLDER.findall(url))
        missing = sorted(in_path - params.keys())
        if missing:
            raise ConfigurationError(
                f"stream {self.name!r}: its path names {{param[{missing[0]}]}}, but no parameter {missing[0]!r} "
                "is sent; name one the stream sends (its params, the paginator's, or the window's start_param "
                "and end_param)")
        if in_path:
            url = PARAM_PLACEHOLDER.sub(lambda m: quote(str(params[m.group(1)]), safe=""), url)
        in_body = _param_names(body)
        if in_body:
            body = _with_params(body, params)
        places: dict[str, dict[str, Any]] = {"query": {}, "body": {}, "header": {}}
        for name, value in params.items():
            if name not in in_path and name not in in_body:
                places[self.param_places.get(name, self.params_in)][name] = value
        if places["body"]:
            body = {**(body or {}), **places["body"]}
        return url, places["query"], body, {name: str(value) for name, value in places["header"].items()}

    def headers_for(self, parent_record: dict[str, Any] | None) -> dict[str, str]:
        return {name: str(_filled(value, parent_record)) for name, value in self.headers.items()}

    def with_parent_fields(self, records: list[dict[str, Any]], parent_record: dict[str, Any] | None) -> None:
        """Copy ``include_from_parent`` fields into each child record, so a child row knows its parent."""
        if parent_record is None or not self.include_from_parent or self.parent is None:
            return
        copied = {f"{self.parent.stream}_{field}": parent_record.get(field) for field in self.include_from_parent}
        for record in records:
            record.update(copied)

    @property
    def reads_from(self) -> list[str]:
        """The streams whose records this one is read over: its parent, and those its ``for_each`` lists take
        their values from. They are synced before it (its asset depends on theirs)."""
        named = [self.parent.stream] if self.parent is not None else []
        return named + [each.values_of.stream for each in self.for_each if each.values_of is not None]

    @property
    def primary_keys(self) -> list[str]:
        if self.primary_key is None:
            return []
        return [self.primary_key] if isinstance(self.primary_key, str) else list(self.primary_key)


class StreamDefaults(BaseModel):
    """What most streams of an API share, said once (dlt's ``resource_defaults``); a stream's own value wins,
    and ``params`` merge (the stream's override the defaults' of the same name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    records_path: str | None = None
    primary_key: str | list[str] | None = None
    paginator: Paginator | None = None
    chunk_pages: int | None = Field(None, ge=1)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def apply(self, stream: Any) -> Any:
        """``stream`` (a dict as written, or a ``Stream``) with the defaults it does not set itself."""
        given = stream.model_fields_set if isinstance(stream, Stream) else set(stream) if isinstance(stream, dict) \
            else None
        if given is None:
            return stream  # not a stream: left to validation to reject
        update: dict[str, Any] = {name: getattr(self, name) for name in self.model_fields_set - {"params"}
                                  if name not in given}
        if self.params:
            own = stream.params if isinstance(stream, Stream) else stream.get("params") or {}
            update["params"] = {**self.params, **own}
        if isinstance(stream, Stream):
            return stream.model_copy(update=update)
        return {**stream, **update}


class StreamKind(StrEnum):
    """The four ways a stream is synced. Each front door (the Dagster assets, ``sync-assets read`` and
    ``state``, the Airbyte read) dispatches on this, not on which of ``incremental`` and ``parent`` are set."""

    WINDOWS = "windows"
    """Incremental: a partition per date window, each read through request slices."""
    FULL_REFRESH = "full_refresh"
    """No cursor: a resumable full refresh in chunks of pages, published as a snapshot; a substream of a
    full-refresh parent too (its pages are the parent's published records)."""
    PARENT_WINDOWS = "parent_windows"
    """A substream of a windowed parent: the parent's windows, each read once per parent record in it."""
    WINDOWS_OVER_PARENTS = "windows_over_parents"
    """A substream with windows of its own over a full-refresh parent: each window read for every parent."""


class ApiSource(BaseModel):
    """An API: where it lives, how to authenticate, how fast it may be called, and its streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN, description="Lowercase letters, digits and _.")
    base_url: Text
    auth: Auth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    rate_limits: list[Rate] = Field(default_factory=list, description="Budgets shared by all workers.")
    rate_limit_key: str | None = Field(
        None, pattern=NAME_PATTERN, description="Sources with the same key share one budget (default: name)."
    )
    rate_limit_store: RateLimitStore = Field(default_factory=RateLimitStore)
    rate_limit_margin_seconds: float = Field(
        0.1, ge=0, description="Added to every rate window: network jitter bunches requests up at the API."
    )
    rate_limit_headers: RateLimitHeaders = Field(
        default_factory=RateLimitHeaders, description="Headers that announce the API's budget and its reset."
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    concurrency: int = Field(10, ge=1, le=256, description="Worker threads per run (windows, children).")
    verify_tls: bool = True
    stream_defaults: StreamDefaults | None = Field(None, description="Defaults shared by every stream.")
    streams: list[Stream] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_stream_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("stream_defaults") or not isinstance(data.get("streams"), list):
            return data
        defaults = data["stream_defaults"]
        if not isinstance(defaults, StreamDefaults):
            try:
                defaults = StreamDefaults.model_validate(defaults)
            except ValidationError:
                return data  # reported once, at stream_defaults (with its line), when the field is validated
        return {**data, "streams": [defaults.apply(stream) for stream in data["streams"]]}

    @field_validator("streams")
    @classmethod
    def _unique_names(cls, streams: list[Stream]) -> list[Stream]:
        names = [s.name for s in streams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stream names must be unique; repeated: {', '.join(duplicates)}")
        return streams

    @model_validator(mode="after")
    def _parents_exist(self) -> ApiSource:
        by_name = {s.name: s for s in self.streams}
        for stream in self.streams:
            for name in stream.reads_from:
                if name not in by_name:
                    role = "parent" if stream.parent is not None and name == stream.parent.stream else "values_of"
                    raise ValueError(f"stream {stream.name!r} names {role} {name!r}, which is not a stream of this "
                                     f"source; use one of: {', '.join(by_name)}")

        def visit(name: str, chain: list[str]) -> None:  # a substream of a substream...: no chain may loop
            if name in chain:
                raise ValueError(f"streams {', '.join(chain[chain.index(name):])} name each other as parents: a cycle")
            for upstream in by_name[name].reads_from:
                visit(upstream, [*chain, name])

        for stream in self.streams:
            visit(stream.name, [])
        for stream in self.streams:  # every parent exists and no chain loops: what kind each stream is, is known
            if stream.parent is None:
                continue
            direct = by_name[stream.parent.stream]
            if direct.parent is not None and not self.refreshes(direct) and stream.incremental is None:
                raise ValueError(f"parent {direct.name!r} of {stream.name!r} is a substream with windows: its child "
                                 "needs windows of its own (an incremental block), read for every record the parent "
                                 "holds; it cannot take the windows of a parent that takes them from its own")
        return self

    def refreshes(self, stream: Stream) -> bool:
        """Whether ``stream`` is synced by full refreshes: it has no cursor, and no parent that is not
        refreshed itself (a substream of a full-refresh parent is refreshed over its parents, at any depth,
        unless it has windows of its own)."""
        if stream.incremental is not None:
            return False
        return stream.parent is None or self.refreshes(self.stream(stream.parent.stream))

    def windows_of(self, stream: Stream) -> Incremental | None:
        """The windows ``stream`` is partitioned by: its own, or its parent's (a substream of a windowed parent)."""
        if stream.incremental is not None or stream.parent is None:
            return stream.incremental
        return self.windows_of(self.stream(stream.parent.stream))

    def kind(self, stream: Stream) -> StreamKind:
        """How ``stream`` is synced: what the Dagster assets, ``sync-assets`` and the Airbyte read dispatch on."""
        if self.refreshes(stream):
            return StreamKind.FULL_REFRESH
        if stream.parent is None:
            return StreamKind.WINDOWS
        return StreamKind.PARENT_WINDOWS if stream.incremental is None else StreamKind.WINDOWS_OVER_PARENTS

    def describe(self, stream: Stream) -> str:
        """How ``stream`` is synced, in words (asset descriptions, ``sync-assets check``)."""
        kind, parent, incremental = self.kind(stream), stream.parent, stream.incremental
        if stream.for_each:
            lists = " x ".join(each.field if each.values_of is None
                               else f"{each.field} (from {each.values_of.stream}.{each.values_of.key})"
                               for each in stream.for_each)
            return f"resumable full refresh for each {lists}: one read per value, checkpointed per value"
        if kind is StreamKind.FULL_REFRESH:
            return "resumable full refresh" if parent is None else (
                f"substream of {parent.stream}: a resumable full refresh over its published parents, "
                "checkpointed per parent")
        if kind is StreamKind.WINDOWS_OVER_PARENTS:
            assert parent is not None and incremental is not None
            over = "published parent" if self.refreshes(self.stream(parent.stream)) else f"record {parent.stream} holds"
            return (f"substream of {parent.stream} with {incremental.window} windows on "
                    f"{incremental.cursor_field}: each window read once per {over}")
        if kind is StreamKind.PARENT_WINDOWS:
            assert parent is not None
            return f"substream of {parent.stream}: one read per parent record, partitioned as its parent"
        assert incremental is not None
        return f"incremental on {incremental.cursor_field}, {incremental.window} windows"

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise ConfigurationError(
            f"source {self.name!r} has no stream {name!r}; its streams are: "
            + ", ".join(s.name for s in self.streams)
        )


# --- loading -------------------------------------------------------------------------------------


def load_source(ref: str | Path) -> ApiSource:
    """A source from a YAML file (``demo.yaml``) or a Python object (``package.module:attr``)."""
    text = str(ref)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise ConfigurationError(f"source file {path} does not exist")
        return parse_source_yaml(path.read_text(), origin=str(path))
    module_name, _, attr = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot load source {text!r}: {exc}; give a .yaml file or a module:attribute path"
        ) from None
    candidate = getattr(module, attr or "source", None)
    if not isinstance(candidate, ApiSource):
        raise ConfigurationError(
            f"{module_name}:{attr or 'source'} is {type(candidate).__name__}, not an ApiSource; "
            "name the attribute that holds the source, e.g. my_module:source"
        )
    return candidate


class _Loader(yaml.SafeLoader):
    """YAML without its own timestamps: an unquoted ``2024-02-30`` stays text, so that pydantic parses it
    (and reports it, with its field and line) like every other value, instead of PyYAML raising deep inside."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_source_yaml(text: str, origin: str = "<yaml>") -> ApiSource:
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader, without timestamps
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{origin} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{origin} must hold a mapping with name, base_url and streams")
    if "manifest" in data:
        return _manifest_source(data, origin)
    try:
        return ApiSource.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, data, origin, yaml.compose(text))) from None


def _manifest_source(data: dict[str, Any], origin: str) -> ApiSource:
    """A source YAML that names an Airbyte manifest (relative to the YAML's folder) instead of streams:
    ``manifest``, its ``config`` (secrets as ``{env: NAME}``), an optional ``name``, and any source setting
    of ours (rate_limits, concurrency, retry, ...) over what the manifest says."""
    from sync_assets.airbyte_manifest import load_manifest

    settings = {key: value for key, value in data.items() if key not in ("manifest", "config", "name")}
    clashing = sorted(set(settings) & {"streams", "base_url", "auth", "stream_defaults"})
    if clashing:
        raise ConfigurationError(f"{origin}: {', '.join(clashing)} come from the manifest; remove them (or write "
                                 "the source without a manifest)")
    if not isinstance(data["manifest"], str) or not isinstance(data.get("config") or {}, dict):
        raise ConfigurationError(f"{origin}: manifest must be a path and config a mapping of the manifest's "
                                 "spec fields")
    base = Path(origin).parent if Path(origin).is_file() else Path.cwd()
    return load_manifest(base / data["manifest"], data.get("config") or {}, name=data.get("name"),
                         settings=settings)


def source_from_dict(data: dict[str, Any], origin: str = "<dict>") -> ApiSource:
    try:
        return ApiSource.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, data, origin, None)) from None


def describe_errors(exc: ValidationError, data: Any, origin: str, root: yaml.Node | None) -> str:
    """One line per error: the field's path as the user wrote it, its YAML line, and the fix."""
    lines = [f"invalid source config in {origin}:"]
    for error in exc.errors():
        path, node = _user_path(error["loc"], data, root)
        where = f" (line {node.start_mark.line + 1})" if node is not None else ""
        lines.append(f"  {path or '(top level)'}{where}: {_advice(error)}")
    return "\n".join(lines)


def _user_path(loc: tuple[Any, ...], data: Any, node: yaml.Node | None) -> tuple[str, yaml.Node | None]:
    """Turn pydantic's loc into ``streams[1] (surveys).paginator.size``, skipping union tags."""
    parts: list[str] = []
    for step in loc:
        if isinstance(step, int) and isinstance(data, list) and step < len(data):
            data = data[step]
            name = data.get("name") if isinstance(data, dict) else None
            parts.append(f"[{step}]" + (f" ({name})" if name else ""))
            node = node.value[step] if isinstance(node, yaml.SequenceNode) else None
        elif isinstance(data, dict) and step in data:
            data = data[step]
            parts.append(("." if parts else "") + str(step))
            node = _mapping_value(node, str(step))
        elif not (isinstance(data, dict) and data.get("type") == step):  # a discriminated union's tag
            parts.append(("." if parts else "") + str(step))
    return "".join(parts), node


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _advice(error: Any) -> str:
    kind, message = str(error["type"]), str(error["msg"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against the docs, or remove it"
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "union_tag_invalid":
        return f"type {ctx.get('tag')!r} is not known; use one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing 'type'; add type: one of the kinds listed in the docs ({ctx.get('discriminator')})"
    if kind == "string_pattern_mismatch":
        return f"{message}; use lowercase letters, digits and underscores, starting with a letter"
    if {"auth", "rate_limit_store"} & {str(step) for step in error["loc"]}:
        return message  # the input may be a credential
    if kind in ("datetime_from_date_parsing", "datetime_parsing", "date_from_datetime_parsing", "datetime_type"):
        return f"{message}; got {error.get('input')!r}: write a real date or instant, e.g. 2024-02-29 or " \
               "2024-02-29T12:00:00Z"
    return f"{message}; got {error.get('input')!r}"
