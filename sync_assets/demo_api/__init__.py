"""The local demo HTTP API that the quickstart, the tests and the benchmarks sync from.

``DemoApi`` and ``DemoApiConfig`` are imported lazily so that ``python -m sync_assets.demo_api.server``
does not load the server module twice (once via this package, once as ``__main__``).
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
    from sync_assets.demo_api.server import DemoApi, DemoApiConfig

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
