"""Any source under Airbyte's protocol: ``sync-assets airbyte SOURCE.yaml spec|check|discover|read``.

One JSON message per line on stdout and nothing else (logs become LOG messages; anything a library
prints goes to stderr). The source is the same YAML the Dagster assets are built from:

- ``spec``: every ``{env: NAME}`` of the source becomes a config property named ``NAME`` (secrets are
  ``airbyte_secret``), plus ``start_date`` for incremental streams. ``--config`` values take the
  place of the environment.
- ``check``: one real request; refused credentials give ``FAILED`` with what to fix.
- ``discover``: every stream, with its declared JSON schema or one inferred from a first page.
- ``read``: the configured streams, with per-stream STATE messages in the format ``sync-assets
  state`` prints (``airbyte_state.py``), each emitted after the records it covers:

  - incremental streams read their windows through request slices (``slices``), concurrently, each
    slice spooled and emitted whole when it ends, then a date-range STATE that covers its windows: a
    read from that state syncs what no slice covers;
  - full refreshes emit a STATE with the next page token after every page, so a read killed half-way
    and restarted with its last STATE resumes at that page, and the completed marker at the end;
  - substreams emit a STATE after each parent's children, so a restarted read skips the parents done.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import BaseModel, SecretStr

from sync_assets.airbyte_state import FULL_REFRESH_COMPLETE, covered_windows, date_range_state, refresh_state
from sync_assets.concurrency import completed
from sync_assets.errors import ConfigurationError, CredentialsRefused, SyncError, TransientError
from sync_assets.http import HttpClient, RequestStats, open_client
from sync_assets.reader import PageSource, StreamReader
from sync_assets.redaction import mask, register_secret
from sync_assets.secrets import Env
from sync_assets.slices import plan_slices
from sync_assets.spec import ApiSource, Stream, StreamKind
from sync_assets.spooled import encode_record, spool_windows
from sync_assets.substream import Listing, parent_id, refresh_pages
from sync_assets.windows import (
    Window,
    as_utc,
    parse_cursor,
    record_instant,
    uncovered_windows,
    window_after,
    window_floor,
)

log = logging.getLogger(__name__)

START_DATE = "start_date"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Emitter:
    """Writes protocol messages, one per line, to the real stdout; threads may share it."""

    def __init__(self, out: IO[str]) -> None:
        self._out, self._lock = out, threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        self.lines([json.dumps(message, separators=(",", ":"), default=str)])

    def lines(self, lines: Iterable[str]) -> None:
        """Written a thousand at a time: a window spooled to disk is never held in memory whole."""
        with self._lock:
            batch: list[str] = []
            for line in lines:
                batch.append(line)
                if len(batch) >= 1000:
                    self._out.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                self._out.write("\n".join(batch) + "\n")
            self._out.flush()

    def records(self, namespace: str, stream: str, lines: Iterable[str]) -> None:
        """RECORD messages around records already encoded as JSON (from a spool), without decoding them."""
        head = (f'{{"type":"RECORD","record":{{"namespace":{json.dumps(namespace)},"stream":{json.dumps(stream)},'
                f'"emitted_at":{_now_ms()},"data":')
        self.lines(head + line + "}}" for line in lines)

    def state(self, namespace: str, stream: str, stream_state: dict[str, Any], records: int) -> None:
        self.send({"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream, "namespace": namespace}, "stream_state": stream_state},
            "sourceStats": {"recordCount": float(records)}}})

    def status(self, namespace: str, stream: str, status: str) -> None:
        self.send({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": _now_ms(), "stream_status": {
            "stream_descriptor": {"name": stream, "namespace": namespace}, "status": status}}})

    def error(self, error: BaseException, stream: tuple[str, str] | None = None) -> None:
        message = mask(str(error))
        trace: dict[str, Any] = {"message": message, "internal_message": f"{type(error).__name__}: {message}",
                                 "failure_type": failure_type(error)}
        if stream is not None:
            trace["stream_descriptor"] = {"namespace": stream[0], "name": stream[1]}
        self.send({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": _now_ms(), "error": trace}})

    def log(self, level: str, message: str) -> None:
        self.send({"type": "LOG", "log": {"level": level, "message": mask(message)}})


def failure_type(error: BaseException) -> str:
    if isinstance(error, ConfigurationError):
        return "config_error"
    return "transient_error" if isinstance(error, TransientError) else "system_error"


class _LogMessages(logging.Handler):
    """What the engine logs, as LOG messages (levels mapped onto the protocol's)."""

    def __init__(self, emitter: Emitter) -> None:
        super().__init__(logging.INFO)
        self._emitter = emitter

    def emit(self, record: logging.LogRecord) -> None:
        level = {"CRITICAL": "FATAL", "WARNING": "WARN"}.get(record.levelname, record.levelname)
        self._emitter.log(level, self.format(record))


# --- spec and config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvReference:
    name: str
    used_for: str
    secret: bool
    default: str | None


def env_references(model: BaseModel, path: str = "") -> list[EnvReference]:
    """Every ``{env: NAME}`` in the source, with the field it sets (a name used twice is one reference)."""
    found: dict[str, EnvReference] = {}

    def add(reference: EnvReference) -> None:  # the first use names it; any secret use makes it secret
        known = found.get(reference.name)
        found[reference.name] = reference if known is None else replace(known, secret=known.secret or reference.secret)

    for name, info in type(model).model_fields.items():
        value, where = getattr(model, name), f"{path}{name}"
        items: list[tuple[Any, Any]] = (list(enumerate(value)) if isinstance(value, list)
                                        else list(value.items()) if isinstance(value, dict) else [(None, value)])
        for index, item in items:
            at = where if index is None else f"{where}[{index}]" if isinstance(index, int) else f"{where}.{index}"
            if isinstance(item, Env):
                secret = "SecretStr" in str(info.annotation) or SecretStr in getattr(info.annotation, "__args__", ())
                add(EnvReference(item.env, at, secret, item.default))
            elif isinstance(item, BaseModel):
                for reference in env_references(item, f"{at}."):
                    add(reference)
    return list(found.values())


def spec(source: ApiSource) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    references = env_references(source)
    for reference in references:
        prop: dict[str, Any] = {"type": "string", "title": reference.name,
                                "description": f"Sets the source's {reference.used_for} (outside Airbyte: the "
                                               f"environment variable {reference.name}).",
                                "airbyte_secret": reference.secret}
        if reference.default is not None and not reference.secret:  # a secret's default is no one's to read
            prop["default"] = reference.default
        properties[reference.name] = prop
    if any(stream.incremental for stream in source.streams):
        properties[START_DATE] = {
            "type": "string", "format": "date-time", "title": "Start date", "examples": ["2024-01-01T00:00:00Z"],
            "description": "First instant synced by every incremental stream (default: each stream's start).",
        }
    required = [r.name for r in references if r.default is None]
    return {"type": "SPEC", "spec": {"connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#", "title": f"{source.name} (sync-assets)",
        "type": "object", "required": required, "properties": properties, "additionalProperties": True,
    }}}


def configure(source: ApiSource, config: dict[str, Any]) -> ApiSource:
    """``source`` with ``config`` in place of the environment (this process's), and its start date."""
    for reference in env_references(source):
        if reference.name in config:
            value = config[reference.name]
            if not isinstance(value, str):
                raise ConfigurationError(f"config property {reference.name} must be a string, got "
                                         f"{type(value).__name__}")
            if reference.secret:
                register_secret(value)
            os.environ[reference.name] = value
        elif reference.default is None and reference.name not in os.environ:
            raise ConfigurationError(f"the config lacks {reference.name} (it sets the source's {reference.used_for}); "
                                     "add it to the --config file")
    start = config.get(START_DATE)
    if start is None:
        return source
    try:
        first = as_utc(parse_cursor(start))
    except ValueError:
        raise ConfigurationError(f"config property {START_DATE} is not an ISO 8601 date or datetime: "
                                 f"{start!r}") from None
    streams = [s.model_copy(update={"incremental": s.incremental.model_copy(update={"start": first})})
               if s.incremental else s for s in source.streams]
    return source.model_copy(update={"streams": streams})


# --- check and discover -----------------------------------------------------------------------------


def _first_page(source: ApiSource, stream: Stream, client: HttpClient) -> list[dict[str, Any]]:
    """The records of a stream's first page (of its first window; for a substream, of its first parent)."""
    window = None
    if stream.incremental is not None:
        start = stream.incremental.start
        window = Window(start, window_after(window_floor(start, stream.incremental.window), stream.incremental.window))
    reader = StreamReader(source, stream, client)
    if stream.parent is None:
        return next(iter(reader.pages(RequestStats(), window=window))).records
    for parent in _first_page(source, source.stream(stream.parent.stream), client)[:10]:  # one with children
        records = next(iter(reader.pages(RequestStats(), window=window, parent=parent))).records
        if records:
            return records
    return []


def check(source: ApiSource) -> dict[str, Any]:
    try:
        client = open_client(source)
        try:
            stream = next(s for s in source.streams if not s.reads_from)
            _first_page(source, stream, client)
        finally:
            client.close()
    except Exception as exc:
        message = str(exc)
        if isinstance(exc, CredentialsRefused):
            secrets = [r.name for r in env_references(source) if r.secret]
            message += f" (in the config: {', '.join(secrets)})" if secrets else ""
        return {"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED", "message": mask(message)}}
    return {"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}


_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object",
                                list: "array"}


def inferred_schema(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema that every record of ``records`` fits: each field nullable, with the types seen."""
    types: dict[str, set[str]] = {}
    for record in records:
        for field, value in record.items():
            seen = types.setdefault(field, set())
            if value is not None:
                seen.add(_JSON_TYPES.get(type(value), "string"))
    if any("integer" in t and "number" in t for t in types.values()):
        types = {f: (t - {"integer"} if "number" in t else t) for f, t in types.items()}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": True,
            "properties": {field: {"type": ["null", *sorted(t)]} for field, t in types.items()}}


def _primary_key(stream: Stream) -> list[list[str]]:
    keys = [stream.primary_key] if isinstance(stream.primary_key, str) else list(stream.primary_key or [])
    return [key.split(".") for key in keys]


def catalog_stream(source: ApiSource, stream: Stream, schema: dict[str, Any]) -> dict[str, Any]:
    windowed = source.kind(stream) is not StreamKind.FULL_REFRESH
    entry: dict[str, Any] = {
        "name": stream.name, "namespace": source.name, "json_schema": schema,
        "supported_sync_modes": ["full_refresh", "incremental"] if windowed else ["full_refresh"],
        "source_defined_cursor": windowed, "is_resumable": True,
    }
    if stream.incremental is not None:
        entry["default_cursor_field"] = stream.incremental.cursor_field.split(".")
    if stream.primary_key:
        entry["source_defined_primary_key"] = _primary_key(stream)
    return entry


def discover(source: ApiSource) -> dict[str, Any]:
    client = open_client(source)
    try:
        streams = [catalog_stream(source, stream, stream.json_schema
                                  or inferred_schema(_first_page(source, stream, client)))
                   for stream in source.streams]
    finally:
        client.close()
    return {"type": "CATALOG", "catalog": {"streams": streams}}


# --- read ----------------------------------------------------------------------------------------------


class Read:
    """One ``read`` of the configured streams; ``failed`` says whether any stream ended incomplete."""

    def __init__(self, source: ApiSource, emitter: Emitter, states: dict[str, dict[str, Any]]) -> None:
        self.source, self.out, self.states = source, emitter, states
        self.namespace = source.name
        self.failed = False
        self._running_told: set[str] = set()

    def run(self, catalog: dict[str, Any]) -> None:
        client = open_client(self.source)
        try:
            for configured in catalog.get("streams", []):
                name, mode = configured["stream"]["name"], configured.get("sync_mode", "full_refresh")
                try:
                    stream = self.source.stream(name)
                except ConfigurationError as exc:
                    self.failed = True
                    self.out.error(exc, (self.namespace, name))
                    continue
                self.out.status(self.namespace, name, "STARTED")
                try:
                    done = self._stream(StreamReader(self.source, stream, client), mode == "incremental")
                except SyncError as exc:
                    self.out.error(exc, (self.namespace, name))
                    done = False
                self.failed |= not done
                self.out.status(self.namespace, name, "COMPLETE" if done else "INCOMPLETE")
        finally:
            client.close()

    def _stream(self, reader: StreamReader, incremental: bool) -> bool:
        stream = reader.stream
        state = self.states.get(stream.name) if incremental else None
        match self.source.kind(stream):
            case StreamKind.PARENT_WINDOWS | StreamKind.WINDOWS_OVER_PARENTS:
                return self._substream(reader, state)
            case StreamKind.WINDOWS:
                return self._windows(reader, state)
            case StreamKind.FULL_REFRESH:
                return self._refresh(refresh_pages(reader, lambda p: self._read_whole(p, reader.client)),
                                     self.states.get(stream.name))

    def _read_whole(self, parent: Stream, client: HttpClient) -> Listing:
        """A parent's records, read whole from the API: a full refresh (its own parents too, at any depth),
        every window of a windowed parent from its start, or a windowed substream's children of every record
        its own parent has, over all its windows at once."""
        reader = StreamReader(self.source, parent, client)
        kind = self.source.kind(parent)
        if kind is StreamKind.FULL_REFRESH:
            parents = refresh_pages(reader, lambda p: self._read_whole(p, client))
            return lambda: (record for page in parents.pages(RequestStats()) for record in page.records)
        incremental = self.source.windows_of(parent)
        assert incremental is not None
        windows = uncovered_windows(incremental, [], datetime.now(UTC))
        if kind is not StreamKind.WINDOWS:
            assert parent.parent is not None
            grand = self._read_whole(self.source.stream(parent.parent.stream), client)
            if parent.incremental is not None and not windows:
                return lambda: iter(())
            span = Window(windows[0].start, windows[-1].end) if parent.incremental is not None else None

            def children() -> Iterator[dict[str, Any]]:
                for record in grand():
                    for page in reader.pages(RequestStats(), window=span, parent=record):
                        yield from page.records

            return children

        def every_window() -> Iterator[dict[str, Any]]:
            for listed in spool_windows(reader, windows, self.source.concurrency):
                try:
                    if listed.error is not None:
                        raise listed.error
                    yield from map(json.loads, listed.sink.lines())
                finally:
                    listed.sink.close()

        return every_window

    def _failed(self, stream: Stream, error: Exception) -> None:
        """Report a slice's or a parent's error, and read on. A configuration error (refused credentials, a
        bad parameter) would come back from every other slice and parent alike: it stops the stream, and
        ``run`` tells it once."""
        if isinstance(error, ConfigurationError):
            raise error
        self.out.error(error, (self.namespace, stream.name))

    def _running(self, stream: Stream, records: int) -> None:
        """RUNNING, once, when the stream's first records go out."""
        if records and stream.name not in self._running_told:
            self._running_told.add(stream.name)
            self.out.status(self.namespace, stream.name, "RUNNING")

    def _windows(self, reader: StreamReader, state: dict[str, Any] | None) -> bool:
        stream, done = reader.stream, covered_windows(state)
        assert stream.incremental is not None
        windows = uncovered_windows(stream.incremental, [w for w, _ in done], datetime.now(UTC))
        ok = True
        for result in spool_windows(reader, windows, self.source.concurrency):
            try:
                if result.error is not None:
                    ok = False
                    self._failed(stream, result.error)
                    continue
                records = sum(window.records for window in result.windows)
                self._running(stream, records)
                self.out.records(self.namespace, stream.name, result.sink.lines())
                done.extend((window.window, window.max_cursor) for window in result.windows)
                self.out.state(self.namespace, stream.name, date_range_state(done), records)
            finally:
                result.sink.close()
        if not windows:  # nothing to read (a state in the future, say): say where the stream stands
            self.out.state(self.namespace, stream.name, date_range_state(done), 0)
        return ok

    def _refresh(self, reader: PageSource, state: dict[str, Any] | None) -> bool:
        stream, stats = reader.stream, RequestStats()
        token = state.get("next_page_token") if state and not state.get(FULL_REFRESH_COMPLETE) else None
        pages, last_page = int(state.get("pages_done", 0)) if state and token else 0, 0
        for page in reader.pages(stats, start_token=token):
            if page.total_pages:
                self.out.send({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": _now_ms(), "estimate": {
                    "name": stream.name, "namespace": self.namespace, "type": "STREAM",
                    "row_estimate": page.total_pages * len(page.records)}}})
            self._running(stream, len(page.records))
            self.out.records(self.namespace, stream.name, map(encode_record, page.records))
            pages += 1
            if page.is_last:  # counted in the STATE that says the refresh is complete
                last_page = len(page.records)
            else:
                self.out.state(self.namespace, stream.name, refresh_state(False, page.next_token, pages),
                               len(page.records))
        self.out.state(self.namespace, stream.name, refresh_state(True), last_page)
        return True

    def _substream(self, reader: StreamReader, state: dict[str, Any] | None) -> bool:
        """Window by window, each parent's children fetched concurrently, and a STATE after each so that a
        restarted read skips the parents done. The windows are the parent's, its records listed through
        request slices (concurrently, as an incremental stream's are); or, over a full-refresh parent, the
        child's own, each read for every parent (the parent read whole once)."""
        stream = reader.stream
        assert stream.parent is not None
        parent = self.source.stream(stream.parent.stream)
        done = covered_windows(state)
        partial = (state or {}).get("in_progress") or {}
        if self.source.kind(stream) is StreamKind.WINDOWS_OVER_PARENTS:
            assert stream.incremental is not None
            everyone = list(self._read_whole(parent, reader.client)())
            ok = True
            windows = uncovered_windows(stream.incremental, [w for w, _ in done], datetime.now(UTC))
            per_parent = -(-self.source.concurrency // max(1, len(everyone)))  # as in sync_substream
            for piece in plan_slices(windows, stream.incremental, per_parent):  # not a request per window
                ok &= self._children(reader, parent, piece.window, everyone, done, partial)
            return ok
        assert parent.incremental is not None
        windows = uncovered_windows(parent.incremental, [w for w, _ in done], datetime.now(UTC))
        ok = True
        parents_reader = StreamReader(self.source, parent, reader.client)
        # Listing and children share the client's connections: half each, so neither starves the other.
        listing = max(1, self.source.concurrency // 2)
        for listed in spool_windows(parents_reader, windows, listing):
            try:
                if listed.error is not None:
                    ok = False
                    self._failed(stream, listed.error)
                    continue
                in_slice = listed.slice.windows
                for window, lines in zip(in_slice, listed.sink.by_window(len(in_slice)), strict=True):
                    ok &= self._children(reader, parent, window, [json.loads(line) for line in lines], done, partial)
            finally:
                listed.sink.close()
        return ok

    def _children(self, reader: StreamReader, parent: Stream, window: Window, parents: list[dict[str, Any]],
                  done: list[tuple[Window, datetime | None]], partial: dict[str, Any]) -> bool:
        stream = reader.stream
        finished = _parents_done(partial, parent, parents, window, own_windows=stream.incremental is not None)
        todo = [record for record in parents if parent_id(parent, record) not in finished]

        def children(record: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | Exception]:
            try:
                own = window if stream.incremental is not None else None
                return parent_id(parent, record), [c for p in reader.pages(RequestStats(), window=own, parent=record)
                                                   for c in p.records]
            except SyncError as exc:
                return parent_id(parent, record), exc

        ok = True
        for ident, answer in completed(children, todo, max(1, self.source.concurrency // 2), "children"):
            if isinstance(answer, Exception):
                ok = False
                self._failed(stream, answer)
                continue
            self._running(stream, len(answer))
            self.out.records(self.namespace, stream.name, map(encode_record, answer))
            finished.add(ident)
            progress = {**date_range_state(done), "in_progress": {
                "start": window.start.isoformat(), "end": window.end.isoformat(), "parents_done": sorted(finished)}}
            self.out.state(self.namespace, stream.name, progress, len(answer))
        if ok:
            done.append((window, None))
            self.out.state(self.namespace, stream.name, date_range_state(done), 0)
        return ok


def _parents_done(partial: dict[str, Any], parent: Stream, parents: list[dict[str, Any]], window: Window, *,
                  own_windows: bool) -> set[str]:
    """Which of ``parents`` an interrupted read already emitted the children of, in ``window``.

    A windowed parent: those its ``in_progress`` names whose cursor value lies in the range it was
    reading. The range, not a slice: a resumed read may cut its slices differently. (A state of an older
    release names the start of one window.) A child with windows of its own: every window lists every
    parent, so the names hold only if it was reading this very window (slice)."""
    named = set(partial.get("parents_done", []))
    if not named:
        return set()
    if "start" in partial:
        reading = Window(parse_cursor(partial["start"]), parse_cursor(partial["end"]))
    elif parent.incremental is not None:
        start = parse_cursor(partial["window"])
        reading = Window(start, window_after(start, parent.incremental.window))
    else:
        return set()
    if own_windows:
        return {ident for record in parents if (ident := parent_id(parent, record)) in named} \
            if reading == window else set()
    assert parent.incremental is not None  # the parent's windows are the child's
    return {ident for record in parents if (ident := parent_id(parent, record)) in named
            and reading.contains(record_instant(record, parent.incremental))}


def stream_states(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each stream's state from a list of STATE messages (as a read emitted them, or ``sync-assets state``)."""
    states: dict[str, dict[str, Any]] = {}
    for message in messages:
        body = message.get("state", message)  # whole AirbyteMessages, or their state parts
        if body.get("type", "STREAM") != "STREAM":
            raise ConfigurationError(f"only per-stream STATE messages are understood, not {body.get('type')}")
        stream = body["stream"]
        states[stream["stream_descriptor"]["name"]] = stream.get("stream_state") or {}
    return states


def _load(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the {what} file {path}: {exc}") from None


def run(source_ref: str, command: str, config_path: str | None, catalog_path: str | None,
        state_path: str | None) -> int:
    """The ``airbyte`` command: protocol messages on stdout, nothing else; the exit code for the caller."""
    from sync_assets.spec import load_source

    emitter, stdout = Emitter(sys.stdout), sys.stdout
    sys.stdout = sys.stderr  # whatever else prints must not corrupt the message stream
    handler, engine_log = _LogMessages(emitter), logging.getLogger("sync_assets")
    engine_log.addHandler(handler)
    level, propagate = engine_log.level, engine_log.propagate
    engine_log.setLevel(logging.INFO)
    engine_log.propagate = False  # LOG messages instead of lines on stderr
    try:
        source = load_source(source_ref)
        if command == "spec":
            emitter.send(spec(source))
            return 0
        source = configure(source, _load(config_path, "config") or {})
        if command == "check":
            emitter.send(check(source))
            return 0
        if command == "discover":
            emitter.send(discover(source))
            return 0
        catalog = _load(catalog_path, "catalog")
        if catalog is None:
            raise ConfigurationError("read needs --catalog: the configured catalog of the streams to read")
        read = Read(source, emitter, stream_states(_load(state_path, "state") or []))
        read.run(catalog)
        return 1 if read.failed else 0
    except Exception as exc:
        emitter.error(exc)
        return 1
    finally:
        engine_log.removeHandler(handler)
        engine_log.setLevel(level)
        engine_log.propagate = propagate
        sys.stdout = stdout
