"""Date windows: how an incremental stream is cut into ``[start, end)`` slices, and what each fetches.

Every window is half-open and in UTC. A window's request asks the API for its range (with the
stream's parameter names, date or datetime format, inclusive or exclusive end), and the records that
come back are *also* filtered on the parsed, timezone-aware cursor field, because APIs round,
ignore parameters, or treat ends as inclusive. So a record stamped exactly at midnight belongs to
the window that starts then, whatever offset the API wrote it with, and no record lands in two
windows or falls between them.

Windows are aligned like Dagster's time partitions (hourly; daily; weekly from Sunday; monthly from
the 1st), so that a partition key and a window are the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from sync_assets.errors import SyncSystemError
from sync_assets.records import dig, dig_each
from sync_assets.secrets import resolve_at_load

WindowSize = Literal["hourly", "daily", "weekly", "monthly"]

_KEY_FORMATS: dict[str, str] = {"hourly": "%Y-%m-%d-%H:%M", "daily": "%Y-%m-%d", "weekly": "%Y-%m-%d",
                                "monthly": "%Y-%m-%d"}


def as_utc(value: datetime | date) -> datetime:
    """A timezone-aware UTC datetime; naive values and bare dates are taken as UTC."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Incremental(BaseModel):
    """How a stream reads by time: which field orders records, and how a window becomes a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cursor_field: str = Field(description="Dotted path of the record's timestamp, e.g. date_modified.")
    start: datetime = Field(description="First instant to sync (UTC if no offset given). May come from the "
                                        "environment, read when the source loads: {env: NAME, default: "
                                        "2024-01-01}, e.g. a short history in development, the whole in "
                                        "production.")
    window: WindowSize = "daily"
    end: datetime | None = Field(None, description="Where the stream ends (exclusive; UTC if no offset given): no "
                                                   "window reaches past it. For data that stops, e.g. a closed "
                                                   "project or a fixed report range; without it windows run to now.")
    start_param: str | None = Field(None, description="Query parameter for the window start.")
    end_param: str | None = Field(None, description="Query parameter for the window end.")
    end_inclusive: bool = Field(False, description="The API's end parameter includes its value.")
    param_format: Literal["date", "datetime", "epoch", "epoch_ms"] | str = Field(
        "datetime", description="date (2024-01-31), datetime (ISO 8601, Z), epoch (seconds), epoch_ms, or a "
                                "strftime pattern."
    )
    order: Literal["unordered", "ascending", "descending"] = Field(
        "unordered", description="How the API orders records by the cursor: ascending or descending lets a "
                                 "window's read stop at the first page past it (an API with a start parameter "
                                 "only, or newest first); unordered reads every page.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: Any, info: ValidationInfo) -> Any:
        value = resolve_at_load(value, f"the stream's incremental {info.field_name}")
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    missing_cursor: Literal["fail", "drop", "keep"] = Field(
        "fail", description="A record without the cursor field (or with null): fail the window, drop it "
                            "(counted in the metadata), or keep it in the window it was requested for "
                            "(which reads each window on its own: see slicing).")
    slicing: Literal["adaptive", "window"] = Field(
        "adaptive", description="adaptive: a run's adjacent windows are read through request slices that span "
                                "them, and records are split into their windows by cursor value; window: one "
                                "request sequence per window, for APIs whose range parameters cannot be "
                                "trusted over long ranges (docs/windows-and-state.md).")
    max_slice: timedelta | None = Field(
        None, gt=timedelta(0), description="The longest range one request slice may ask for (ISO 8601 "
                                           "duration, e.g. P30D), for APIs that refuse or slow down on long "
                                           "ranges. Never less than one window.")
    max_records_per_slice: int | None = Field(
        None, ge=1, description="The most records the API returns for one range (search endpoints often stop "
                                "at 1,000 or 10,000 hits): a slice that reaches it is split and read again, so "
                                "nothing past the cap is lost.")

    end_granularity: timedelta | None = Field(
        None, gt=timedelta(0), description="What an inclusive end parameter subtracts from the window's end "
                                           "(ISO 8601 duration, e.g. PT0.001S); by default the smallest step "
                                           "param_format can write (a day, a second, a millisecond).")
    lookback: timedelta | None = Field(
        None, gt=timedelta(0), description="How long after a window ends its records may still appear or change "
                                           "(ISO 8601 duration, e.g. P3D): the schedule re-syncs every window "
                                           "that ended within it, and an Airbyte read starts that far back "
                                           "from where its state ends.")
    cursor_formats: list[str] = Field(
        default_factory=list, description="strptime patterns the cursor field's values may be written in "
                                          "(e.g. %d/%m/%Y %H:%M), tried in order before ISO 8601 and epoch "
                                          "numbers; values without an offset are UTC.")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    def until(self, now: datetime) -> datetime:
        """Where windows stop today: now, or the stream's end if that comes first."""
        return now if self.end is None else min(as_utc(now), self.end)

    @property
    def spans_windows(self) -> bool:
        """Whether one request sequence may serve several windows. Not when records kept without a cursor
        belong to the window they were requested for: a slice of many windows could not say which."""
        return self.slicing == "adaptive" and self.missing_cursor != "keep"

    @property
    def filters_by_range(self) -> bool:
        """Whether the API is asked for a range at all; without parameters it answers every request with
        every record, and the windows are cut from that client side."""
        return bool(self.start_param or self.end_param)

    @property
    def granularity(self) -> timedelta:
        """The smallest step the API's parameters can express: what an inclusive end gives back."""
        if self.end_granularity is not None:
            return self.end_granularity
        if self.param_format == "date":
            return timedelta(days=1)
        return timedelta(milliseconds=1) if self.param_format == "epoch_ms" else timedelta(seconds=1)


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def window_floor(instant: datetime, size: WindowSize) -> datetime:
    """The start of the window of ``size`` that holds ``instant``."""
    instant = as_utc(instant)
    if size == "hourly":
        return instant.replace(minute=0, second=0, microsecond=0)
    day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    if size == "daily":
        return day
    if size == "weekly":
        return day - timedelta(days=(day.weekday() + 1) % 7)  # weeks start on Sunday, as in Dagster
    return day.replace(day=1)


def window_after(start: datetime, size: WindowSize) -> datetime:
    if size == "hourly":
        return start + timedelta(hours=1)
    if size == "daily":
        return start + timedelta(days=1)
    if size == "weekly":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def windows_between(start: datetime, end: datetime, size: WindowSize) -> Iterator[Window]:
    """The aligned windows covering ``[start, end)``, the first and last clipped to it."""
    start, end = as_utc(start), as_utc(end)
    cursor = window_floor(start, size)
    while cursor < end:
        following = window_after(cursor, size)
        yield Window(max(cursor, start), min(following, end))
        cursor = following


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Windows merged where they touch or overlap, in order; a gap starts a new one."""
    merged: list[Window] = []
    for window in sorted(windows):
        if merged and window.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def uncovered_windows(incremental: Incremental, covered: list[Window], end: datetime) -> list[Window]:
    """The windows from the stream's start up to ``end`` that no covered window holds: each gap between
    covered runs, cut at window boundaries as ``windows_between`` cuts any range.

    ``end`` (usually now) is first cut down to a step the API's parameters can say: with ``date``
    parameters a window ending at 04:31 would ask for nothing of its last day, yet count as covering
    it, and the next read would start at 04:31 and drop that morning's records. Windows that ended
    within the stream's ``lookback`` of ``end`` do not count as covered: their records may still change.
    """
    step = incremental.granularity
    end = incremental.until(end)
    end = _EPOCH + (as_utc(end) - _EPOCH) // step * step
    if incremental.lookback is not None:
        settled = window_floor(end - incremental.lookback, incremental.window)
        covered = [Window(w.start, min(w.end, settled)) for w in covered if w.start < settled]
    cursor = as_utc(incremental.start)
    todo: list[Window] = []
    for done in [*merge_windows(covered), Window(end, end)]:
        todo.extend(windows_between(cursor, min(done.start, end), incremental.window))
        cursor = max(cursor, done.end)
    return todo


def contiguous_end(start: datetime, windows: Iterable[Window]) -> datetime:
    """The end of the longest run of windows that covers ``[start, end)`` without a gap.

    This is the stream's state: everything before it is synced, whatever order windows finished
    in. A window that completes after a gap is kept, and extends the run once the gap is filled.
    """
    for run in merge_windows(windows):
        if run.start <= start < run.end:
            return run.end
    return start


def partition_key(window_start: datetime, size: WindowSize) -> str:
    return as_utc(window_start).strftime(_KEY_FORMATS[size])


def format_param(instant: datetime, fmt: str) -> str:
    if fmt == "date":
        return instant.date().isoformat()
    if fmt == "datetime":
        return instant.isoformat().replace("+00:00", "Z")
    if fmt == "epoch":
        return str(int(instant.timestamp()))
    if fmt == "epoch_ms":
        return str(int(instant.timestamp() * 1000))
    return instant.strftime(fmt)


def window_params(incremental: Incremental, window: Window) -> dict[str, str]:
    """The query parameters that ask the API for ``window``."""
    params: dict[str, str] = {}
    if incremental.start_param:
        params[incremental.start_param] = format_param(window.start, incremental.param_format)
    if incremental.end_param:
        end = window.end - incremental.granularity if incremental.end_inclusive else window.end
        params[incremental.end_param] = format_param(end, incremental.param_format)
    return params


def parse_cursor(value: Any) -> datetime:
    """A record's cursor value as an aware UTC datetime: ISO 8601 (any offset; naive = UTC), epoch, or a datetime."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, datetime):  # a typed column read back from storage
        return as_utc(value)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds are far past year 5000 in s
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        return as_utc(datetime.fromisoformat(value.strip()))  # Python 3.11 reads "Z" and any ISO 8601 offset
    raise ValueError(f"not a timestamp: {value!r}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_instants(values: list[Any], incremental: Incremental, allow_null: bool = False) -> list[datetime | None]:
    """Many cursor values, each as ``parse_cursor`` reads it (``None`` stays ``None`` where ``allow_null``).

    Plain Python on purpose: ``datetime.fromisoformat`` reads a page's ISO 8601 values faster than an
    Arrow cast does, and a read that only hands records on (``sync-assets read``) then never loads Arrow.
    """
    return [None if value is None and allow_null else _instant(value, incremental) for value in values]


def record_instant(record: dict[str, Any], incremental: Incremental) -> datetime:
    return _instant(dig(record, incremental.cursor_field), incremental)


def _instant(value: Any, incremental: Incremental) -> datetime:
    for pattern in incremental.cursor_formats:
        if isinstance(value, str):
            try:
                return as_utc(datetime.strptime(value, pattern))
            except ValueError:
                continue
    try:
        return parse_cursor(value)
    except ValueError:
        formats = f" or {', '.join(incremental.cursor_formats)}" if incremental.cursor_formats else ""
        raise SyncSystemError(
            f"record has cursor field {incremental.cursor_field!r} = {value!r}, which is not a timestamp "
            f"(ISO 8601, epoch{formats}); check the stream's incremental.cursor_field and cursor_formats"
        ) from None


@dataclass(frozen=True)
class WindowCut:
    """A page's records that belong to a window, with their parsed cursors, and what the cut saw."""

    records: list[dict[str, Any]]
    cursors: list[datetime | None]
    outside: int = 0
    """Records of the page whose cursor lies outside the window: left out, and counted."""
    without_cursor: int = 0
    """Records that lacked the cursor field: dropped, or kept (``incremental.missing_cursor``)."""
    past_window: bool = False
    """The API orders by the cursor and this page reached past the window: no later page can hold any of it."""


def cut_to_window(records: list[dict[str, Any]], incremental: Incremental, window: Window | None) -> WindowCut:
    """A page's records whose cursor lies in ``[window.start, window.end)`` (all of them without a window).

    APIs answer with records outside the window asked for (an inclusive end, a coarse filter, no filter
    at all), so every page is cut here: each record lands in exactly the partition of its cursor value.
    A record kept without a cursor (``missing_cursor: keep``) belongs to the window it was requested for.
    """
    values = dig_each(records, incremental.cursor_field)
    absent = 0
    if incremental.missing_cursor != "fail" and None in values:
        absent = values.count(None)
        if incremental.missing_cursor == "drop":
            records = [record for record, value in zip(records, values, strict=True) if value is not None]
            values = [value for value in values if value is not None]
    instants = parse_instants(values, incremental, allow_null=absent > 0)
    if window is None or not records:
        return WindowCut(records, instants, without_cursor=absent)
    start, end = window.start, window.end
    inside = [instant is None or start <= instant < end for instant in instants]
    kept = [record for record, keep in zip(records, inside, strict=True) if keep]
    past = False
    if incremental.order != "unordered":
        present = [instant for instant in instants if instant is not None]
        past = bool(present) and (max(present) >= end if incremental.order == "ascending" else min(present) < start)
    return WindowCut(kept, [instant for instant, keep in zip(instants, inside, strict=True) if keep],
                     len(records) - len(kept), absent, past)
