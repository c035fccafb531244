"""sync-assets: sync HTTP APIs into partitioned Dagster assets.

The engine (this package minus ``sync_assets.dagster``) knows nothing of Dagster: declare a source
with the models below, read it with ``StreamReader`` or ``sync-assets read``.

The names below are imported when first used, not with the package: every ``sync_assets.*`` module
(the CLI's commands above all) would otherwise pay for HTTP, pydantic and the rate limiter at start,
whether it needs them or not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync_assets.auth import ApiKeyAuth, BasicAuth, BearerAuth
    from sync_assets.errors import ConfigurationError, SyncError, SyncSystemError, TransientError
    from sync_assets.http import RequestStats, RetryPolicy, open_client
    from sync_assets.pagination import CursorToken, LinkHeader, NextUrl, NoPagination, Offset, PageNumber
    from sync_assets.rate_limit import Rate, RateLimitStore
    from sync_assets.reader import Page, StreamReader
    from sync_assets.secrets import Env
    from sync_assets.spec import ApiSource, Parent, Stream, StreamKind, load_source
    from sync_assets.windows import Incremental, Window

_EXPORTS = {
    "sync_assets.auth": ("ApiKeyAuth", "BasicAuth", "BearerAuth"),
    "sync_assets.errors": ("ConfigurationError", "SyncError", "SyncSystemError", "TransientError"),
    "sync_assets.http": ("RequestStats", "RetryPolicy", "open_client"),
    "sync_assets.pagination": ("CursorToken", "LinkHeader", "NextUrl", "NoPagination", "Offset", "PageNumber"),
    "sync_assets.rate_limit": ("Rate", "RateLimitStore"),
    "sync_assets.reader": ("Page", "StreamReader"),
    "sync_assets.secrets": ("Env",),
    "sync_assets.spec": ("ApiSource", "Parent", "Stream", "StreamKind", "load_source"),
    "sync_assets.windows": ("Incremental", "Window"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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
    "StreamKind",
    "StreamReader",
    "SyncError",
    "SyncSystemError",
    "TransientError",
    "Window",
    "load_source",
    "open_client",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'sync_assets' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value
