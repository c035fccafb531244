"""Reading a stream page by page: the one loop every sync runs, with or without Dagster.

``StreamReader.pages`` yields each page as soon as it arrives, with the token that fetched it and
the token of the next page, so a caller can persist records and checkpoint after every page and
nothing accumulates in memory. For an incremental stream the page's records are already filtered
to the window (see ``windows``), with the number dropped reported alongside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sync_assets.concurrency import page_work
from sync_assets.errors import ConfigurationError, SyncSystemError
from sync_assets.http import FormBody, HttpClient, RequestStats
from sync_assets.pagination import Token, token_fingerprint
from sync_assets.plugins import PluginError
from sync_assets.records import select_records
from sync_assets.redaction import get_logger, mask
from sync_assets.spec import ApiSource, Stream
from sync_assets.windows import Window, cut_to_window, window_params

log = get_logger(__name__)


@dataclass(frozen=True)
class Page:
    """One response's worth of records, and where the read stands after it."""

    records: list[dict[str, Any]]
    token: Token | None
    next_token: Token | None
    dropped: int = 0
    cursors: list[datetime | None] | None = None
    """The parsed cursor value of each record (incremental streams, UTC; ``None`` for a record kept
    without one), stored beside it."""
    total_pages: int | None = None
    """How many pages the whole read has, when the API says (page number or offset with a total)."""
    without_cursor: int = 0
    """Records that lacked the cursor field: dropped, or kept (``incremental.missing_cursor``)."""
    past_window: bool = False
    """The API orders by the cursor and this page reached past the window: no later page can hold any of it."""

    @property
    def is_last(self) -> bool:
        return self.next_token is None

    @property
    def max_cursor(self) -> datetime | None:
        return latest_instant(self.cursors)


def latest_instant(cursors: list[datetime | None] | None) -> datetime | None:
    """The largest of some cursor values (``None``: there are none)."""
    return max((instant for instant in cursors or () if instant is not None), default=None)


class PageSource(Protocol):
    """What a read takes its pages from, page token by page token: a stream's API (``StreamReader``), or a
    substream's parents (``substream.ParentPages``)."""

    @property
    def stream(self) -> Stream: ...

    @property
    def random_access(self) -> bool: ...

    def token_for_page(self, index: int) -> Token | None: ...

    def pages(self, stats: RequestStats, *, start_token: Token | None = None, followed: set[int] | None = None
              ) -> Iterator[Page]: ...


class StreamReader:
    """Reads one stream of a source through a shared client."""

    def __init__(self, source: ApiSource, stream: Stream, client: HttpClient) -> None:
        self.source, self.stream, self.client = source, stream, client

    @property
    def random_access(self) -> bool:
        """Whether any page's token can be computed up front (``token_for_page``)."""
        return self.stream.paginator.random_access

    def token_for_page(self, index: int) -> Token | None:
        return self.stream.paginator.token_for_page(index)

    def pages(
        self,
        stats: RequestStats,
        window: Window | None = None,
        start_token: Token | None = None,
        parent: dict[str, Any] | None = None,
        followed: set[int] | None = None,
    ) -> Iterator[Page]:
        """Pages from ``start_token`` (``None`` = the first page) to the end, filtered to ``window``.

        ``parent`` is the parent record of a substream; its fields fill the path's placeholders.
        ``followed`` holds the fingerprints of tokens that earlier reads of the same pages followed (the
        chunks and runs of one refresh read one sequence of pages); this read adds the tokens it reaches.
        Not its start: that is where the read before it ends (a chunk hands its last token to the next),
        and the two run at once after a kill, so the earlier one reaching it is no cycle.
        """
        stream = self.stream
        if window is not None and stream.incremental is None:
            raise ConfigurationError(f"stream {stream.name!r} has no incremental settings, so it has no windows")
        url = self.client.url_for(stream.path_for(parent))
        params: dict[str, Any] = stream.params_for(parent)
        headers = stream.headers_for(parent)
        if window is not None and stream.incremental is not None:
            params.update(window_params(stream.incremental, window))
        stream_body = stream.body_for(parent)
        token = start_token
        followed = set() if followed is None else followed  # a fingerprint per page, not the tokens
        own = {token_fingerprint(token)}  # this read's tokens, its start included
        while True:
            try:
                request_url, request_params = stream.paginator.apply(url, params, token)
            except PluginError as exc:
                raise SyncSystemError(f"stream {stream.name!r}: {exc}") from exc
            request_url, query, body, in_headers = stream.placed(request_url, request_params, stream_body)
            response = self.client.request(
                request_url, query, stats, {**headers, **in_headers} if in_headers else headers, stream.method,
                FormBody(body or {}) if stream.body_format == "form" else body,
                stream.ignore_statuses, stream.retry)
            if response.ignored is not None:  # an answer the stream reads as empty, and the last of its pages
                yield Page([], token, None)
                return
            records = select_records(response, stream.records_path)
            try:
                next_token = stream.paginator.next_token(response, records, token)
                records = stream.transformed(records, parent)
            except PluginError as exc:
                raise SyncSystemError(f"stream {stream.name!r}: {exc}") from exc
            stream.with_parent_fields(records, parent)
            if next_token is not None and next_token == token:
                raise SyncSystemError(
                    f"pagination of stream {stream.name!r} did not advance past token {mask(repr(token))} "
                    f"({response.where}); check the paginator settings"
                )
            reached = token_fingerprint(next_token)
            if next_token is not None and (reached in followed or reached in own):
                raise SyncSystemError(
                    f"pagination of stream {stream.name!r} came back to page token {mask(repr(next_token))}, "
                    f"which this read already followed ({response.where}): the API's cursors go round in a "
                    "cycle, and following them would read the same pages forever. The partition keeps what it "
                    "had; check the paginator settings, or report the API's cursors"
                )
            followed.add(reached)
            own.add(reached)
            with page_work:
                page = self._in_window(records, token, next_token, window)
            total_pages = stream.paginator.page_count(response) if token is None else None
            yield replace(page, total_pages=total_pages) if total_pages is not None else page
            if next_token is None or page.past_window:
                return
            token = next_token

    def _in_window(
        self, records: list[dict[str, Any]], token: Token | None, next_token: Token | None, window: Window | None
    ) -> Page:
        incremental = self.stream.incremental
        if incremental is None:
            return Page(records, token, next_token)
        cut = cut_to_window(records, incremental, window)
        return Page(cut.records, token, next_token, cut.outside, cut.cursors, without_cursor=cut.without_cursor,
                    past_window=cut.past_window)
