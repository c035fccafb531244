"""sync-assets: sync HTTP APIs into partitioned Dagster assets.

The engine (this package minus ``sync_assets.dagster``) knows nothing of Dagster: declare a source
with the models below, read it with ``StreamReader`` or ``sync-assets read``.
"""

from sync_assets.auth import ApiKeyAuth, BasicAuth, BearerAuth
from sync_assets.errors import ConfigurationError, SyncError, SyncSystemError, TransientError
from sync_assets.http import RequestStats, RetryPolicy
from sync_assets.pagination import CursorToken, LinkHeader, NextUrl, NoPagination, Offset, PageNumber
from sync_assets.rate_limit import Rate, RateLimitStore
from sync_assets.reader import Page, StreamReader, open_client
from sync_assets.secrets import Env
from sync_assets.spec import ApiSource, Parent, Stream, load_source
from sync_assets.windows import Incremental, Window

__all__ = [
    "ApiKeyAuth",
    "ApiSource",
    "BasicAuth",
    "BearerAuth",
    "ConfigurationError",
    "CursorToken",
    "Env",
    "Incremental",
    "LinkHeader",
    "NextUrl",
    "NoPagination",
    "Offset",
    "Page",
    "PageNumber",
    "Parent",
    "Rate",
    "RateLimitStore",
    "RequestStats",
    "RetryPolicy",
    "Stream",
    "StreamReader",
    "SyncError",
    "SyncSystemError",
    "TransientError",
    "Window",
    "load_source",
    "open_client",
]
