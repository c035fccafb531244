"""Windows are half-open UTC slices aligned like Dagster's partitions; cursor values of any offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync_assets.errors import SyncSystemError
from sync_assets.windows import (
    Incremental,
    Window,
    cut_to_window,
    parse_cursor,
    partition_key,
    record_instant,
    uncovered_windows,
    window_params,
    windows_between,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_windows_cover_the_range_without_gaps_or_overlap() -> None:
    windows = list(windows_between(utc(2024, 1, 30, 12), utc(2024, 2, 2), "daily"))
    assert windows == [
        Window(utc(2024, 1, 30, 12), utc(2024, 1, 31)),
        Window(utc(2024, 1, 31), utc(2024, 2, 1)),
        Window(utc(2024, 2, 1), utc(2024, 2, 2)),
    ]


@pytest.mark.parametrize(
    ("size", "first_start", "second_start", "key"),
    [
        ("hourly", utc(2024, 3, 10, 5), utc(2024, 3, 10, 6), "2024-03-10-05:00"),
        ("weekly", utc(2024, 3, 10), utc(2024, 3, 17), "2024-03-10"),  # Sundays, as in Dagster
        ("monthly", utc(2024, 3, 1), utc(2024, 4, 1), "2024-03-01"),
    ],
)
def test_window_sizes_align_like_dagster(size: str, first_start: datetime, second_start: datetime, key: str) -> None:
    windows = list(windows_between(first_start, second_start + timedelta(minutes=1), size))  # type: ignore[arg-type]
    assert windows[0].start == first_start and windows[0].end == second_start
    assert partition_key(first_start, size) == key  # type: ignore[arg-type]


def test_monthly_windows_cross_year_and_leap_february() -> None:
    starts = [w.start for w in windows_between(utc(2023, 12, 1), utc(2024, 4, 1), "monthly")]
    assert starts == [utc(2023, 12, 1), utc(2024, 1, 1), utc(2024, 2, 1), utc(2024, 3, 1)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-05T00:00:00Z", utc(2024, 3, 5)),
        ("2024-03-05T02:00:00+02:00", utc(2024, 3, 5)),
        ("2024-03-04T19:00:00-05:00", utc(2024, 3, 5)),
        ("2024-03-05T05:30:00+05:30", utc(2024, 3, 5)),
        ("2024-03-05", utc(2024, 3, 5)),
        ("2024-03-05T00:00:00", utc(2024, 3, 5)),
        (1709596800, utc(2024, 3, 5)),
        (1709596800000, utc(2024, 3, 5)),
    ],
)
def test_cursor_values_parse_to_the_same_instant(value: object, expected: datetime) -> None:
    assert parse_cursor(value) == expected


def test_window_edges_are_start_inclusive_end_exclusive() -> None:
    window = Window(utc(2024, 3, 5), utc(2024, 3, 6))
    assert window.contains(parse_cursor("2024-03-05T02:00:00+02:00"))
    assert not window.contains(parse_cursor("2024-03-06T00:00:00Z"))
    assert not window.contains(parse_cursor("2024-03-05T01:59:59+02:00"))


def test_request_params_for_exclusive_and_inclusive_ends() -> None:
    window = Window(utc(2024, 1, 5), utc(2024, 1, 6))
    exclusive = Incremental(cursor_field="t", start=utc(2024, 1, 1), start_param="from", end_param="to")
    assert window_params(exclusive, window) == {"from": "2024-01-05T00:00:00Z", "to": "2024-01-06T00:00:00Z"}
    inclusive_dates = exclusive.model_copy(update={"end_inclusive": True, "param_format": "date"})
    assert window_params(inclusive_dates, window) == {"from": "2024-01-05", "to": "2024-01-05"}
    inclusive_times = exclusive.model_copy(update={"end_inclusive": True})
    assert window_params(inclusive_times, window)["to"] == "2024-01-05T23:59:59Z"
    epoch = exclusive.model_copy(update={"param_format": "epoch"})
    assert window_params(epoch, window) == {"from": "1704412800", "to": "1704499200"}


def test_uncovered_windows_fill_the_gaps_and_end_where_the_parameters_can_say() -> None:
    incremental = Incremental(cursor_field="t", start=utc(2024, 1, 1), start_param="from", end_param="to",
                              end_inclusive=True, param_format="date")
    now = datetime(2024, 1, 5, 4, 31, 54, 250_000, tzinfo=UTC)
    todo = uncovered_windows(incremental, [Window(utc(2024, 1, 2), utc(2024, 1, 3))], now)
    # January 5 cannot be asked for up to 04:31 in dates: it waits for a later read, whole
    assert todo == [Window(utc(2024, 1, 1), utc(2024, 1, 2)), Window(utc(2024, 1, 3), utc(2024, 1, 4)),
                    Window(utc(2024, 1, 4), utc(2024, 1, 5))]
    assert all(window_params(incremental, w)["from"] <= window_params(incremental, w)["to"] for w in todo)
    times = incremental.model_copy(update={"param_format": "datetime", "end_inclusive": False})
    assert uncovered_windows(times, [], now)[-1] == Window(utc(2024, 1, 5), datetime(2024, 1, 5, 4, 31, 54, tzinfo=UTC))


def test_windows_that_ended_within_the_lookback_are_read_again() -> None:
    """An Airbyte read from a state: records may still arrive for the last ``lookback`` of it."""
    incremental = Incremental(cursor_field="t", start=utc(2024, 1, 1), start_param="from", end_param="to",
                              lookback=timedelta(days=2))
    now = datetime(2024, 1, 10, 6, tzinfo=UTC)
    covered = [Window(utc(2024, 1, 1), datetime(2024, 1, 9, 23, tzinfo=UTC))]
    todo = uncovered_windows(incremental, covered, now)
    # the 8th ended within two days of now (06:00 on the 10th): read again from its start, whole
    assert todo[0] == Window(utc(2024, 1, 8), utc(2024, 1, 9)) and todo[-1].end == now and len(todo) == 3
    assert uncovered_windows(incremental.model_copy(update={"lookback": None}), covered, now)[0].start == covered[0].end


def test_a_record_without_a_timestamp_is_a_system_error() -> None:
    incremental = Incremental(cursor_field="meta.updated", start=utc(2024, 1, 1))
    with pytest.raises(SyncSystemError, match="cursor field 'meta.updated'"):
        record_instant({"meta": {"updated": "yesterday"}}, incremental)
    assert record_instant({"meta": {"updated": "2024-01-01"}}, incremental) == utc(2024, 1, 1)


def test_cursor_formats_read_values_that_are_not_iso_8601_and_leave_iso_to_the_default() -> None:
    incremental = Incremental(cursor_field="at", start=utc(2024, 1, 1), cursor_formats=["%d/%m/%Y %H:%M"])
    assert record_instant({"at": "31/01/2024 13:05"}, incremental) == datetime(2024, 1, 31, 13, 5, tzinfo=UTC)
    assert record_instant({"at": "2024-01-31T13:05:00+01:00"}, incremental) == datetime(2024, 1, 31, 12, 5,
                                                                                           tzinfo=UTC)
    with pytest.raises(SyncSystemError, match="%d/%m/%Y %H:%M"):
        record_instant({"at": "31.01.2024"}, incremental)


def test_an_inclusive_end_subtracts_the_granularity_the_stream_declares() -> None:
    incremental = Incremental(cursor_field="at", start=utc(2024, 1, 1), end_param="to", end_inclusive=True,
                              param_format="%Y-%m-%dT%H:%M:%S.%f", end_granularity=timedelta(microseconds=1))
    assert window_params(incremental, Window(utc(2024, 1, 1), utc(2024, 1, 2)))["to"] == "2024-01-01T23:59:59.999999"


def test_a_page_is_cut_to_its_window_and_what_the_cut_left_out_is_counted() -> None:
    day = Window(utc(2024, 1, 2), utc(2024, 1, 3))
    page = [{"id": 1, "t": "2024-01-01T23:59:59Z"}, {"id": 2, "t": "2024-01-02T00:00:00Z"},
            {"id": 3}, {"id": 4, "t": "2024-01-03T00:00:00+00:00"}]
    kept = cut_to_window(page, Incremental(cursor_field="t", start=utc(2024, 1, 1), missing_cursor="keep"), day)
    assert [r["id"] for r in kept.records] == [2, 3]  # the end is exclusive; no cursor: the window asked for
    assert (kept.outside, kept.without_cursor, kept.cursors) == (2, 1, [utc(2024, 1, 2), None])
    dropped = cut_to_window(page, Incremental(cursor_field="t", start=utc(2024, 1, 1), missing_cursor="drop",
                                              order="ascending"), day)
    assert [r["id"] for r in dropped.records] == [2] and dropped.without_cursor == 1
    assert dropped.past_window  # ascending, and a record at the window's end: no later page can hold any of it
    assert cut_to_window(page[:2], Incremental(cursor_field="t", start=utc(2024, 1, 1)), None).outside == 0
