"""The page loop (``StreamReader.pages``): every sync reads through it, so what it promises is tested here
against the demo API over loopback: a chain of page tokens a caller can checkpoint and resume from, the
window cut with what it drops counted, and pagination that cannot go on failing loudly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError, SyncError, SyncSystemError
from sync_assets.http import RequestStats
from sync_assets.reader import StreamReader
from sync_assets.windows import Window, parse_cursor
from sync_assets_tests.helpers import REFRESH_STREAMS, make_source

CUSTOMERS = REFRESH_STREAMS[0]  # an opaque cursor, 20 a page
SURVEYS = {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
           "paginator": {"type": "page_number", "size_param": "per_page", "size": 50, "total_path": "total"},
           "incremental": {"cursor_field": "date_modified", "start": "2024-01-01"}}
# The same surveys from an API asked for no range: every page holds every month, and the reader cuts the window.
SURVEYS_UNFILTERED = {**SURVEYS, "name": "surveys_unfiltered"}
Reader = Callable[..., StreamReader]


def test_pages_chain_their_tokens_from_the_first_page_to_the_last(api: DemoApi, open_reader: Reader) -> None:
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    pages = list(reader.pages(RequestStats()))
    assert [r for page in pages for r in page.records] == data.all_customers(0, 230)
    assert len(pages) == 12 and pages[0].token is None and pages[-1].is_last
    assert all(earlier.next_token == later.token for earlier, later in pairwise(pages))


def test_a_read_resumes_from_any_pages_token_with_exactly_the_records_after_it(
    api: DemoApi, open_reader: Reader
) -> None:
    """What a checkpoint relies on: the token a page was fetched with reads that page and the rest again."""
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    pages = list(reader.pages(RequestStats()))
    stats = RequestStats()
    resumed = list(reader.pages(stats, start_token=pages[5].token))
    assert [r for page in resumed for r in page.records] == [r for page in pages[5:] for r in page.records]
    assert stats.requests == len(pages) - 5  # nothing before the token is asked for again


def test_the_first_page_says_how_many_pages_the_read_has_when_the_api_gives_a_total(
    api: DemoApi, open_reader: Reader
) -> None:
    reader = open_reader(make_source(api, [{**SURVEYS, "incremental": None}]), "surveys")
    pages = list(reader.pages(RequestStats()))
    assert pages[0].total_pages == len(pages) == 8  # 400 surveys, 50 a page
    assert all(page.total_pages is None for page in pages[1:])


def test_a_window_keeps_its_records_and_counts_the_ones_it_cuts(api: DemoApi, open_reader: Reader) -> None:
    """An API that cannot filter answers with every record; the reader keeps the window's, with their cursors."""
    window = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    reader = open_reader(make_source(api, [SURVEYS_UNFILTERED]), "surveys_unfiltered")
    pages = list(reader.pages(RequestStats(), window=window))
    kept = [r for page in pages for r in page.records]
    assert sorted(r["id"] for r in kept) == sorted(
        r["id"] for r in data.surveys_modified_between(0, 400, window.start, window.end))
    assert sum(page.dropped for page in pages) == 400 - len(kept) > 0
    cursors = [c for page in pages for c in page.cursors or []]
    assert cursors == [parse_cursor(r["date_modified"]) for r in kept]
    assert all(window.start <= c < window.end for c in cursors if c is not None)


def test_a_window_is_asked_of_an_api_that_filters_and_nothing_is_cut(api: DemoApi, open_reader: Reader) -> None:
    window = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    stream = {**SURVEYS, "incremental": {**SURVEYS["incremental"], "start_param": "start_modified_at",
                                         "end_param": "end_modified_at"}}
    reader = open_reader(make_source(api, [stream]), "surveys")
    stats = RequestStats()
    pages = list(reader.pages(stats, window=window))
    assert [r for page in pages for r in page.records] == data.surveys_modified_between(0, 400, window.start,
                                                                                        window.end)
    assert sum(page.dropped for page in pages) == 0 and stats.requests == len(pages) == 1


def test_a_stream_without_a_cursor_refuses_a_window(api: DemoApi, open_reader: Reader) -> None:
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    window = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match="'customers' has no incremental settings"):
        next(reader.pages(RequestStats(), window=window))


def test_a_path_naming_a_parameter_nobody_sends_is_a_configuration_error(api: DemoApi, open_reader: Reader) -> None:
    stream = {**SURVEYS, "path": "/v1/reports/prices/{param[from]}/{param[until]}", "incremental": {
        **SURVEYS["incremental"], "start_param": "from", "end_param": "to"}}
    reader = open_reader(make_source(api, [stream]), "surveys")
    window = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match=r"names \{param\[until\]\}, but no parameter 'until' is sent"):
        next(reader.pages(RequestStats(), window=window))


def test_a_streams_own_retries_replace_the_sources(demo_api: Callable[..., DemoApi], open_reader: Reader) -> None:
    """About a third of the API's answers are 500s: the stream told to try once fails at its first, its sibling
    (the source's eight attempts) reads everything, retrying as it goes."""
    api = demo_api(customers=230, fail_rate=0.3)
    source = make_source(api, [{**CUSTOMERS, "retry": {"max_attempts": 1}}, {**CUSTOMERS, "name": "patient"}])
    hasty = RequestStats()
    with pytest.raises(SyncError, match="500"):
        list(open_reader(source, "customers").pages(hasty))
    assert hasty.retries == 0
    patient = RequestStats()
    records = [r for page in open_reader(source, "patient").pages(patient) for r in page.records]
    assert records == data.all_customers(0, 230) and patient.retries > 0


def test_cursors_that_go_round_in_a_cycle_stop_the_read_with_the_token_named(
    demo_api: Callable[..., DemoApi], open_reader: Reader
) -> None:
    """From its third page the API's next cursor points one page back: following it would never end."""
    api = demo_api(customers=230, cursor_cycle=3)
    reader = open_reader(make_source(api, [CUSTOMERS]), "customers")
    read: list[int] = []
    with pytest.raises(SyncSystemError, match="came back to page token .* cycle"):
        for page in reader.pages(RequestStats()):
            read.append(len(page.records))
    assert read == [20, 20]  # the pages before the cycle were yielded, for their caller to keep
