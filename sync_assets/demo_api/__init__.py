"""The local demo HTTP API that the quickstart, the tests and the benchmarks sync from.

Each endpoint uses a different pagination style (next URL in the body, page numbers, opaque cursor,
offset, ``Link`` header) and the server can add latency, require credentials, enforce a moving-window
rate limit and inject faults, so sync code is exercised against what production APIs do to it. All data
comes from :mod:`sync_assets.demo_api.data`, computed per page, so tests know the exact ground truth and
memory stays flat whatever the data set sizes. The server is :mod:`~sync_assets.demo_api.server`; each of
its concerns (config, protocol, endpoints, auth, limits, faults, stats, command) is a module of its own.

``DemoApi`` and ``DemoApiConfig`` are imported lazily: importing the package for its data then loads no
HTTP machinery, and ``python -m sync_assets.demo_api.server`` does not find the server module already
imported by its package before it runs as ``__main__`` (which runpy warns about).
"""

from typing import TYPE_CHECKING

from sync_assets.demo_api.data import (
    MAX_RESPONSES_PER_SURVEY,
    MIDNIGHT_SURVEY_EVERY,
    PRICES_FIRST_DAY,
    PRICES_LAST_DAY,
    SURVEY_OFFSETS,
    TICKERS,
    all_customers,
    all_events,
    all_orders,
    all_surveys,
    charge,
    charges_created_between,
    customer,
    event,
    issue,
    issues_updated_between,
    iter_price_rows,
    order,
    parse_instant,
    price_row,
    price_row_count,
    price_rows,
    survey,
    survey_modified_timestamp,
    survey_response_count,
    survey_responses,
    surveys_modified_between,
)

if TYPE_CHECKING:
    from sync_assets.demo_api.config import DemoApiConfig
    from sync_assets.demo_api.server import DemoApi

_LAZY_SERVER_NAMES = ("DemoApi", "DemoApiConfig")


def __getattr__(name: str) -> object:
    if name in _LAZY_SERVER_NAMES:
        from sync_assets.demo_api import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_RESPONSES_PER_SURVEY",
    "MIDNIGHT_SURVEY_EVERY",
    "PRICES_FIRST_DAY",
    "PRICES_LAST_DAY",
    "SURVEY_OFFSETS",
    "TICKERS",
    "DemoApi",
    "DemoApiConfig",
    "all_customers",
    "all_events",
    "all_orders",
    "all_surveys",
    "charge",
    "charges_created_between",
    "customer",
    "event",
    "issue",
    "issues_updated_between",
    "iter_price_rows",
    "order",
    "parse_instant",
    "price_row",
    "price_row_count",
    "price_rows",
    "survey",
    "survey_modified_timestamp",
    "survey_response_count",
    "survey_responses",
    "surveys_modified_between",
]
