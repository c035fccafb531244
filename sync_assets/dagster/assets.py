"""Stream -> asset: the thin map from the engine's three kinds of sync onto Dagster assets.

- An **incremental** stream is time-partitioned (``sync.sync_windows``).
- A **full refresh** is partitioned by chunks of pages, dynamic partitions (``refresh.FullRefresh``).
- A **substream** has its parent's partitions and depends on it (``substream.sync_substream``).

All three have a single-run backfill policy, so a range of partitions (a CLI ``--partition-range``,
a UI backfill) is one run that works on its partitions concurrently instead of one run per
partition at seconds of overhead each. The engine commits each partition as it finishes. If some
fail, the finished ones are reported as materialized before the step fails, so a re-run of the
failed or missing partitions fetches only those.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dagster import (
    AllPartitionMapping,
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DynamicPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    PreviewWarning,
    TimeWindowPartitionsDefinition,
    asset,
)
from dagster._core.execution.context.metadata_logging import (  # the one private import: see add_partition_metadata
    AssetMetadataHandle,
    OutputMetadataAccumulator,
)

from sync_assets.dagster.partitions import partitions_for, window_for
from sync_assets.dagster.translator import SyncAssetsTranslator, table_schema
from sync_assets.errors import ConfigurationError
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.refresh import ChunkResult, FullRefresh
from sync_assets.slices import Slice
from sync_assets.spec import ApiSource, Stream
from sync_assets.storage import Published, Store, TableSpec
from sync_assets.storage.layout import chunk_key, chunk_of, chunk_scope, refresh_of
from sync_assets.substream import PartitionResult, sync_substream
from sync_assets.window_sync import WindowResult, sync_windows
from sync_assets.windows import contiguous_end, window_floor

UNIQUE_KEY_CHECK = "unique_primary_key"
COLUMN_SCHEMA = "dagster/column_schema"
SCHEMA_DRIFT_CHECK = "schema_drift"
_PROGRESS_EVERY_SECONDS = 5.0


def _merged(published: Sequence[Published]) -> Published:
    """Several publishes as one, for checks that judge them together (a snapshot's, or a range run's)."""
    return Published({}, [d for p in published for d in p.drift], sum(p.duplicate_keys for p in published))


def _plain(metadata: dict[str, Any]) -> str:
    """A check's metadata as a log line shows it."""
    return ", ".join(f"{key}={getattr(value, 'value', value)}" for key, value in metadata.items())


def pool_name(source: ApiSource) -> str:
    """One Dagster pool per API, so concurrent runs cannot pile onto it (limits in dagster.yaml)."""
    return f"sync_assets_{source.rate_limit_key or source.name}"


def chunk_partitions_name(source: ApiSource, stream: Stream) -> str:
    return f"{source.name}__{stream.name}__chunks"


class _StreamAsset:
    """What every stream asset shares: its definition arguments, and opening its reader and store."""

    def __init__(
        self, source: ApiSource, stream: Stream, translator: SyncAssetsTranslator, api_key: str, store_key: str,
    ) -> None:
        self.source, self.stream, self.api_key, self.store_key = source, stream, api_key, store_key
        self.spec = translator.get_asset_spec(source, stream)
        self.key = self.spec.key
        self.checks_enabled = translator.get_asset_checks_enabled(source, stream)

    def checks(self, partitions_def: PartitionsDefinition | None) -> list[AssetCheckSpec]:
        """Every stream asset's checks, unless the translator turns them off: per partition for windows (each
        partition judged on its own rows), on the published table for full refreshes (``partitions_def``
        None)."""
        if not self.checks_enabled:
            return []
        checks = [AssetCheckSpec(SCHEMA_DRIFT_CHECK, asset=self.key, partitions_def=partitions_def,
                                 description="No column had to change type (the change is made; this says which).")]
        if self.stream.primary_keys:
            checks.append(AssetCheckSpec(UNIQUE_KEY_CHECK, asset=self.key, partitions_def=partitions_def,
                                         description="No primary key appears twice within a partition."))
        return checks

    def _evaluations(self, published: Published) -> list[tuple[str, bool, dict[str, Any]]]:
        """(check, passed, metadata) of what one publish (a partition, a snapshot, or a run's) stored."""
        drift = [str(change) for change in published.drift]
        results: list[tuple[str, bool, dict[str, Any]]] = [
            (SCHEMA_DRIFT_CHECK, not drift, {"changed_columns": MetadataValue.json(drift)})]
        if self.stream.primary_keys:
            results.append((UNIQUE_KEY_CHECK, published.duplicate_keys == 0,
                            {"duplicate_keys": published.duplicate_keys,
                             "primary_key": ", ".join(self.stream.primary_keys)}))
        return results

    def check_results(self, context: AssetExecutionContext,
                      published: Sequence[Published]) -> Iterator[AssetCheckResult]:
        """The checks of a full refresh: on what the run published (its snapshot), if anything."""
        for name, passed, metadata in self._evaluations(_merged(published)):
            if self.checks_enabled:
                yield AssetCheckResult(check_name=name, passed=passed, severity=AssetCheckSeverity.WARN,
                                       metadata=metadata)
            elif not passed:
                context.log.warning(f"{name} did not pass on the snapshot (asset checks are off): "
                                    f"{_plain(metadata)}")

    def partition_check_results(self, context: AssetExecutionContext,
                                published: Sequence[tuple[str, Published]]) -> Iterator[AssetCheckResult]:
        """Each partition's checks, judged on that partition's rows. A run of one partition reports them as
        its check results. A range run logs one evaluation per partition (Dagster attributes a check result
        to a run's single partition only), then a result for the run as a whole, which names the partitions
        that did not pass. With checks off, that run's verdict is one warning in its log, if any."""
        if context.has_partition_key and self.checks_enabled:
            for _, one in published[:1]:
                for name, passed, metadata in self._evaluations(one):
                    yield AssetCheckResult(check_name=name, passed=passed, severity=AssetCheckSeverity.WARN,
                                           metadata=metadata)
            return
        failing: dict[str, list[str]] = {}
        for key, one in published:
            for name, passed, metadata in self._evaluations(one):
                if self.checks_enabled:
                    context.log_event(AssetCheckEvaluation(asset_key=self.key, check_name=name, passed=passed,
                                                           partition=key, severity=AssetCheckSeverity.WARN,
                                                           metadata=metadata))
                if not passed:
                    failing.setdefault(name, []).append(key)
        for name, passed, metadata in self._evaluations(_merged([one for _, one in published])):
            keys = failing.get(name, [])
            if self.checks_enabled:
                yield AssetCheckResult(check_name=name, passed=passed, severity=AssetCheckSeverity.WARN,
                                       metadata={**metadata, "partitions_checked": len(published),
                                                 "partitions_not_passed": len(keys),
                                                 "first_not_passed": MetadataValue.json(keys[:20])})
            elif not passed:
                context.log.warning(f"{name} did not pass on {len(keys)} of {len(published)} partitions "
                                    f"(asset checks are off), first {keys[:20]}: {_plain(metadata)}")

    def define(
        self, partitions_def: PartitionsDefinition, extra_metadata: dict[str, Any], **more: Any
    ) -> Callable[[Callable[..., Any]], AssetsDefinition]:
        """The ``@asset`` decorator for this stream."""
        spec = self.spec
        identity = {"sync_assets/source": self.source.name, "sync_assets/stream": self.stream.name}
        with warnings.catch_warnings():
            # single_run backfills are what make a partition range one run; Dagster flags the parameter beta,
            # and partitioned checks a preview.
            warnings.simplefilter("ignore", BetaWarning)
            warnings.simplefilter("ignore", PreviewWarning)
            decorator: Callable[[Callable[..., Any]], AssetsDefinition] = asset(
                key=self.key,
                description=spec.description,
                group_name=spec.group_name,
                metadata={**spec.metadata, **identity, **extra_metadata},  # identity last: no override drops it
                tags=spec.tags,
                owners=spec.owners,
                kinds=spec.kinds,
                code_version=spec.code_version,
                pool=pool_name(self.source),
                partitions_def=partitions_def,
                backfill_policy=BackfillPolicy.single_run(),
                io_manager_key=self.store_key,
                required_resource_keys={self.api_key, self.store_key},
                check_specs=self.checks(None if isinstance(partitions_def, DynamicPartitionsDefinition)
                                        else partitions_def),
                **more,
            )
        return decorator

    def open(self, context: AssetExecutionContext) -> tuple[Any, Store, StreamReader]:
        """The API resource, the store, and a reader for this stream with the resource's settings."""
        api = getattr(context.resources, self.api_key)
        store = getattr(context.resources, self.store_key).store
        configured = api.configured_source(self.source)
        return api, store, StreamReader(configured, self.stream, api.client(configured))

    def output(self, context: AssetExecutionContext, partitions: Sequence[tuple[str, dict[str, Any]]],
               common: dict[str, Any]) -> Output[None]:
        """The run's output: each partition's own figures on its materialization, ``common`` on every one.

        Dagster copies a range run's output metadata onto each partition's event, so a 365-day run
        would say every day held the whole year's records; per-partition metadata says what each held.
        """
        order = {key: position for position, key in enumerate(context.partition_keys)}  # Dagster's event order
        partitions, common = _table_metadata_once(sorted(partitions, key=lambda p: order.get(p[0], -1)), common)
        add_partition_metadata(context, self.key, partitions)
        return Output(value=None, metadata=common)

    def fail_keeping(
        self, context: AssetExecutionContext, done: Sequence[tuple[str, dict[str, Any]]],
        failed: Sequence[tuple[str, Exception | None]], total: int, common: dict[str, Any],
    ) -> Failure:
        """Report the partitions that were stored as materialized, and the run's failure."""
        done, common = _table_metadata_once(done, common)
        for key, metadata in done:
            context.log_event(AssetMaterialization(asset_key=self.key, partition=key, metadata={**common, **metadata}))
        errors = [error for _, error in failed]
        return Failure(
            description=(
                f"{len(failed)} of {total} partitions of {self.source.name}/{self.stream.name} failed "
                f"({', '.join(key for key, _ in failed[:10])}); the others are stored. First error: {errors[0]}"
            ),
            metadata={"failed_partitions": [key for key, _ in failed],
                      "error_kinds": sorted({getattr(error, "kind", "error") for error in errors})},
            # Retrying cannot fix a configuration error; let Dagster's retry policy skip it.
            allow_retries=not all(isinstance(error, ConfigurationError) for error in errors),
        )


def _table_metadata_once(
    partitions: Sequence[tuple[str, dict[str, Any]]], common: dict[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Move the table's columns from every partition's event onto the last of ``partitions`` (in the order
    their events are logged).

    They describe the table, not a partition, and Dagster shows the columns of an asset's latest event;
    on each of a year's events they were most of what the run stored in its event log.
    """
    partitions = list(partitions)
    if COLUMN_SCHEMA not in common or not partitions:
        return partitions, common
    rest = {name: value for name, value in common.items() if name != COLUMN_SCHEMA}
    key, last = partitions[-1]
    return [*partitions[:-1], (key, {**last, COLUMN_SCHEMA: common[COLUMN_SCHEMA]})], rest


def add_partition_metadata(
    context: AssetExecutionContext, key: AssetKey, partitions: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """``context.add_asset_metadata(metadata, partition_key=...)`` for every partition, in linear time.

    Dagster's call lists the run's partitions again and copies every partition's metadata so far, each
    time: 8,760 hourly partitions took 15 s. Where the step context keeps its metadata as Dagster 1.13
    does, the same entries are added in one pass (``test_assets`` fails if that ever stops being so);
    otherwise the public call is made per partition.
    """
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not isinstance(accumulator, OutputMetadataAccumulator):
        for partition, metadata in partitions:
            context.add_asset_metadata(metadata, partition_key=partition)
        return
    merged = dict(accumulator.per_output_metadata)
    for partition, metadata in partitions:
        handle = AssetMetadataHandle(asset_key=key, partition_key=partition)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)


def sync_metadata(records: int, pages: int, stats: Sequence[RequestStats], seconds: float | None = None,
                  count: str = "dagster/row_count") -> dict[str, Any]:
    """What every stream asset reports of each partition: one meaning per key, whatever the kind of sync.

    ``pages`` are API pages read; ``received_kib`` the response bytes downloaded, in KiB; ``duration_seconds``
    how long the partition's reading took (a request slice's, for windows read together). ``count`` names
    the records: the partition's rows, or (a full refresh's chunk) the chunk's, which are not the table's.
    """
    metadata: dict[str, Any] = {
        count: records,
        "pages": pages,
        "requests": sum(s.requests for s in stats),
        "retries": sum(s.retries for s in stats),
        "rate_limited_429s": sum(s.rate_limited for s in stats),
        "seconds_waited": round(sum(s.seconds_waited for s in stats), 3),
        "received_kib": round(sum(s.bytes for s in stats) / 1024, 1),
    }
    if seconds is not None:
        metadata["duration_seconds"] = round(seconds, 3)
    return metadata


def run_metadata(published: Sequence[Published], started: float | None = None) -> dict[str, Any]:
    """What holds for every partition of a run, named as the run's: the stream's columns after its
    publishes, the run's duration (Dagster copies these onto each partition's materialization)."""
    metadata: dict[str, Any] = {}
    if published:
        metadata[COLUMN_SCHEMA] = table_schema(published[-1].columns)
    if started is not None:
        metadata["run_duration_seconds"] = round(time.monotonic() - started, 3)
    return metadata


# --- incremental streams -------------------------------------------------------------------------


def build_incremental_asset(
    source: ApiSource, stream: Stream, translator: SyncAssetsTranslator, api_key: str, store_key: str
) -> AssetsDefinition:
    incremental = stream.incremental
    if incremental is None:
        raise ValueError(f"stream {stream.name!r} is not incremental")
    partitions_def = partitions_for(incremental)
    base = _StreamAsset(source, stream, translator, api_key, store_key)

    @base.define(partitions_def, {})
    def _sync(context: AssetExecutionContext) -> Iterator[Any]:
        started = time.monotonic()
        api, store, reader = base.open(context)
        windows = [(key, window_for(partitions_def, key, incremental)) for key in context.partition_keys]
        context.log.info(f"syncing {len(windows)} window(s) of {source.name}/{stream.name} through request "
                         f"slices, {api.concurrency} at a time")
        results: list[WindowResult] = []
        told: set[tuple[Slice, str]] = set()
        last_report = time.monotonic()
        for result in sync_windows(reader, store, windows, api.concurrency):
            results.append(result)
            if result.error is not None and (result.slice, str(result.error)) not in told:  # once a slice's error
                told.add((result.slice, str(result.error)))
                context.log.error(f"request slice {result.slice} failed: {result.error}")
            if time.monotonic() - last_report >= _PROGRESS_EVERY_SECONDS or len(results) == len(windows):
                # Each log line is an event-log write; one per window would cost more than the window.
                records = sum(r.state.records for r in results if r.state)
                context.log.info(f"{len(results)}/{len(windows)} windows done, {records} records")
                last_report = time.monotonic()
        states = store.partition_states(TableSpec.of(source, stream))
        stream_state = contiguous_end(
            window_floor(incremental.start, incremental.window), [s.window for s in states.values() if s.window]
        )
        # The stream's state is the asset's, not a partition's: observed once per run.
        context.log_event(AssetObservation(asset_key=base.key,
                                           metadata={"stream_state": MetadataValue.timestamp(stream_state)}))
        published = [r.published for r in results if r.published]
        common = run_metadata(published)
        done = [(r.key, window_metadata(r)) for r in results if r.state is not None]
        failed = [(r.key, r.error) for r in results if r.error is not None]
        if failed:
            raise base.fail_keeping(context, done, failed, len(results), common)
        if done:
            yield base.output(context, done, {**common, **run_metadata([], started)})
        yield from base.partition_check_results(context, [(r.key, r.published) for r in results if r.published])

    return _sync


def window_metadata(result: WindowResult) -> dict[str, Any]:
    """What a user looks at after a window's sync: its volumes, its API cost, the window."""
    state = result.state
    assert state is not None
    metadata = sync_metadata(state.records, state.pages, [result.stats], result.seconds)
    metadata.update({
        "dropped_out_of_window": result.dropped,
        "records_without_cursor": result.without_cursor,
        "window_start": MetadataValue.timestamp(result.window.start),
        "window_end": MetadataValue.timestamp(result.window.end),
    })
    if len(result.slice.windows) > 1:  # its requests are counted on the slice's first window
        metadata.update({"request_slice_start": MetadataValue.timestamp(result.slice.window.start),
                         "request_slice_end": MetadataValue.timestamp(result.slice.window.end),
                         "request_slice_windows": len(result.slice.windows)})
    if state.max_cursor is not None:
        metadata["max_cursor"] = MetadataValue.timestamp(state.max_cursor)
    return metadata


# --- full refreshes ------------------------------------------------------------------------------


def build_refresh_asset(
    source: ApiSource, stream: Stream, translator: SyncAssetsTranslator, api_key: str, store_key: str,
    deps: Sequence[AssetKey | AssetDep] = (),
) -> AssetsDefinition:
    """A full-refresh stream: dynamic partitions, one per chunk of pages, in reading order.

    A run advances the stream's running refresh as far as it can (starting one when none runs,
    which takes that refresh's first chunk among the run's partitions), registers chunk partitions
    as they are discovered, and reports each chunk as materialized when it is done, so the UI shows
    how far a refresh got. Keys name their refresh, so each refresh's chunks are new partitions; a
    publish removes the partitions of older refreshes. The run's own partitions are reported by its
    output at the end.
    """
    partitions_def = DynamicPartitionsDefinition(name=chunk_partitions_name(source, stream))
    base = _StreamAsset(source, stream, translator, api_key, store_key)

    # A run for any chunk does the useful thing: it continues the running refresh, or starts the next one.
    # Chunks of a refresh that is over cannot be read again; such a run reports the chunks it did read, and
    # nothing for the key it was asked for (no output: not a failure, and nothing for run retries to repeat).
    @base.define(partitions_def, {"sync_assets/kind": "full_refresh"}, deps=list(deps), output_required=False)
    def _refresh(context: AssetExecutionContext) -> Iterator[Any]:
        started = time.monotonic()
        api, store, reader = base.open(context)
        targets = set(context.partition_keys)
        refreshes = store.refreshes(TableSpec.of(source, stream))
        current = refreshes.next_number()
        running = refreshes.running() is not None
        other = sorted(key for key in targets if refresh_of(key) != current)
        if other:
            context.log.info(f"{other[0]} is a chunk of refresh {refresh_of(other[0])}, which is over; this run "
                             f"{'continues' if running else 'starts'} refresh {current} instead, and reports its "
                             "chunks as they finish")
        elif not running and chunk_key(current, 0) not in targets:
            context.log.info(f"no refresh of {source.name}/{stream.name} is running: this run starts refresh "
                             f"{current} from its first chunk")
        earlier = _finished_earlier(store, source, stream, current, targets)  # before a publish drops the stages
        refresh = FullRefresh(reader, store, api.concurrency)
        results: list[ChunkResult] = []
        for result in refresh.run():
            results.append(result)
            if result.error is not None:
                context.log.error(f"{result.key} of refresh {result.refresh} failed: {result.error}")
                continue
            _register_chunks(context, store, source, stream, partitions_def)
            if result.key not in targets:  # the targets are reported by the output
                context.log_event(AssetMaterialization(asset_key=base.key, partition=result.key,
                                                       metadata=chunk_metadata(result)))
        _register_chunks(context, store, source, stream, partitions_def, prune=refresh.published is not None)
        published = [refresh.published] if refresh.published else []
        common = {**run_metadata(published), "refresh": refresh.refresh,
                  "snapshot_published": refresh.published is not None}
        if refresh.published is not None:  # the table's own figures, now that it is this refresh
            common.update({"dagster/row_count": refresh.rows,
                           "snapshot_published_at": MetadataValue.timestamp(time.time())})
        done = [(r.key, chunk_metadata(r)) for r in results if r.error is None and r.key in targets]
        done += [(key, metadata) for key, metadata in earlier if key not in {r.key for r in results}]
        failed = [(r.key, r.error) for r in results if r.error is not None]
        if failed:
            raise base.fail_keeping(context, done, failed, len(results), common)
        if done:
            yield base.output(context, done, {**common, **run_metadata([], started)})
        yield from base.check_results(context, published)

    return _refresh


def _register_chunks(
    context: AssetExecutionContext, store: Store, source: ApiSource, stream: Stream,
    partitions_def: DynamicPartitionsDefinition, prune: bool = False,
) -> None:
    """Mirror the store's chunks as dynamic partitions; after a publish, drop older refreshes' chunks and
    those past the end."""
    name = partitions_def.name or ""
    state = store.refreshes(TableSpec.of(source, stream)).latest()
    wanted = [chunk_key(state.refresh, c) for c in sorted(state.chunks)] if state else []
    existing = set(context.instance.get_dynamic_partitions(name))
    missing = [key for key in wanted if key not in existing]
    if missing:
        context.instance.add_dynamic_partitions(name, missing)
    if prune:
        for key in sorted(existing - set(wanted)):
            context.instance.delete_dynamic_partition(name, key)


def _finished_earlier(store: Store, source: ApiSource, stream: Stream, refresh: int,
                      keys: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The run's chunks that earlier runs finished: what the store holds of each (this run sends no request)."""
    metadata = []
    for key in sorted(keys):
        chunk = chunk_of(key)
        checkpoint = None if chunk is None else store.checkpoint(chunk_scope(source.name, stream.name, refresh, chunk))
        if checkpoint is not None and checkpoint.done:
            metadata.append((key, sync_metadata(checkpoint.records, checkpoint.pages, [], count="chunk_records")))
    return metadata


def chunk_metadata(result: ChunkResult) -> dict[str, Any]:
    done = result.checkpoint
    return sync_metadata(done.records if done else 0, done.pages if done else 0, [result.stats], result.seconds,
                         count="chunk_records")


# --- substreams ----------------------------------------------------------------------------------


def build_substream_asset(
    source: ApiSource, stream: Stream, parent: AssetsDefinition, translator: SyncAssetsTranslator, api_key: str,
    store_key: str,
) -> AssetsDefinition:
    """A child stream: depends on its parent asset, reads its parents from the store, and has its parent's
    windows, or its own (over a full-refresh parent's snapshot)."""
    assert stream.parent is not None
    parent_stream = source.stream(stream.parent.stream)
    windows = source.windows_of(stream)
    assert windows is not None  # a substream with no windows anywhere is a refresh asset
    partitions_def = partitions_for(stream.incremental) if stream.incremental else parent.partitions_def
    assert isinstance(partitions_def, TimeWindowPartitionsDefinition)
    base = _StreamAsset(source, stream, translator, api_key, store_key)

    # windows of its own read every parent (all of a windowed parent's partitions), not those of the same key
    dep = AssetDep(parent.key, partition_mapping=AllPartitionMapping()) if stream.incremental else parent.key

    @base.define(partitions_def, {"sync_assets/parent": parent_stream.name}, deps=[dep])
    def _children(context: AssetExecutionContext) -> Iterator[Any]:
        started = time.monotonic()
        api, store, reader = base.open(context)
        partitions = [(key, window_for(partitions_def, key, windows)) for key in context.partition_keys]
        results = list(sync_substream(reader, store, partitions, api.concurrency))
        published = [r.published for r in results if r.published]
        common = run_metadata(published)
        done = [(r.key, substream_metadata(r)) for r in results if r.state is not None]
        failed = [(r.key, r.error) for r in results if r.error is not None]
        if failed:
            raise base.fail_keeping(context, done, failed, len(results), common)
        if done:
            yield base.output(context, done, {**common, **run_metadata([], started)})
        yield from base.partition_check_results(context, [(r.key, r.published) for r in results if r.published])

    return _children


def substream_metadata(result: PartitionResult) -> dict[str, Any]:
    state = result.state
    assert state is not None
    metadata = sync_metadata(state.records, state.pages, [result.stats], result.seconds)
    metadata.update({"parents": result.parents, "parents_skipped_as_done": result.parents_skipped})
    return metadata

