"""A stream's full refreshes as the store records them: the one object that knows their lifecycle.

A refresh is started (numbered, its first chunk at the first page), gains chunks as its pages are read
(each chunk's start token), finishes chunks (a chunk's checkpoint says done), and is published as the
stream's snapshot once every chunk is done and the last reached the last page; or it is abandoned (its
cursor expired, say) and the next one starts from the first page again. The engine's reader, the
Dagster sensor, assets and CLI, and the Airbyte state all ask this ledger, so that which refresh is
current, which chunk resumes and whether a refresh is complete are each worked out once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sync_assets.storage.bookkeeping import Checkpoint, RefreshState
from sync_assets.storage.layout import refresh_scope

if TYPE_CHECKING:
    from sync_assets.storage.store import Store, TableSpec


@dataclass(frozen=True)
class RefreshLedger:
    """``table``'s full refreshes in ``store``; every answer is read from the store when asked."""

    store: Store
    table: TableSpec

    # --- which refresh ---

    def running(self) -> RefreshState | None:
        return self.store._books.latest_refresh(self.table.source, self.table.stream, "running")

    def published(self) -> RefreshState | None:
        """The refresh that is the stream's snapshot now, if any."""
        return self.store._books.latest_refresh(self.table.source, self.table.stream, "published")

    def latest(self) -> RefreshState | None:
        """The newest refresh whatever its status: the one whose chunks Dagster should know."""
        return self.store._books.latest_refresh(self.table.source, self.table.stream)

    def published_at(self) -> datetime | None:
        """When the current snapshot was published (None before the first)."""
        published = self.published()
        if published is None:
            return None
        return self.store._books.refresh_finished_at(self.table.source, self.table.stream, published.refresh)

    def next_number(self) -> int:
        """The refresh a run would work on now: the running one, or the one after the latest."""
        return self.store._books.next_refresh(self.table.source, self.table.stream)

    # --- its lifecycle ---

    def current(self) -> RefreshState:
        """The running refresh, or a new one from the first page; two runs starting at once get one."""
        return self.running() or self.store._books.start_refresh(self.table.source, self.table.stream)

    def abandon(self) -> int | None:
        """Give up the running refresh (its cursor expired, say); the next run starts from the first page.
        The snapshot stays what it was."""
        return self.store._abandon_refresh(self.table)

    # --- its chunks ---

    def checkpoints(self, refresh: RefreshState) -> dict[int, Checkpoint | None]:
        """Where each chunk of ``refresh`` stands, in reading order (None: not started)."""
        return self.store._books.chunk_checkpoints(self.table.source, self.table.stream, refresh)

    def resume_chunk(self, refresh: RefreshState) -> int:
        """The chunk a run continues ``refresh`` from: the first not done, or (all done, but the refresh not
        published: its publish was interrupted) the last, whose run publishes it."""
        unfinished = [c for c, point in self.checkpoints(refresh).items() if point is None or not point.done]
        return unfinished[0] if unfinished else max(refresh.chunks)

    def resume_point(self, refresh: RefreshState) -> tuple[Any, int]:
        """(page token, pages done before it) where a single reader of ``refresh`` continues. Everything
        before the first chunk not done is synced; later chunks may be too, when chunks are read at once,
        but a single position cannot say so, and state is never ahead of data."""
        pages = 0
        for chunk, checkpoint in self.checkpoints(refresh).items():
            if checkpoint is None or not checkpoint.done:
                token = checkpoint.token if checkpoint is not None and checkpoint.pages else refresh.chunks[chunk]
                return token, pages + (checkpoint.pages if checkpoint is not None else 0)
            pages += checkpoint.pages
        return None, pages

    def complete(self, refresh: RefreshState) -> bool:
        """Whether ``refresh`` has read everything: every chunk done, the last one at the last page."""
        checkpoints = list(self.checkpoints(refresh).values())
        return bool(checkpoints) and all(c is not None and c.done for c in checkpoints) and \
            checkpoints[-1] is not None and checkpoints[-1].token is None

    def followed_tokens(self, refresh: int) -> set[int]:
        """Every page token ``refresh`` followed so far, in any chunk and any run (hashes)."""
        return self.store._books.followed_tokens(refresh_scope(self.table.source, self.table.stream, refresh))

    def set_chunk_start(self, refresh: int, chunk: int, start_token: Any) -> None:
        """Register ``chunk`` at ``start_token``, or move its start there if nothing of it is read yet."""
        self.store._books.set_chunk_start(self.table.source, self.table.stream, refresh, chunk, start_token)

    def add_chunks(self, refresh: int, start_tokens: dict[int, Any]) -> None:
        """Register chunks whose starts are known at once (random access)."""
        self.store._books.add_chunks(self.table.source, self.table.stream, refresh, start_tokens)
