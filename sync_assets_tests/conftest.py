"""Shared fixtures: real demo APIs on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sync_assets.demo_api import DemoApi, DemoApiConfig
from sync_assets_tests.helpers import TOKEN


@pytest.fixture
def demo_api() -> Iterator[Callable[..., DemoApi]]:
    """Start demo APIs with the given config; all are stopped at the end of the test."""
    started: list[DemoApi] = []

    def start(**config: Any) -> DemoApi:
        config.setdefault("token", TOKEN)
        api = DemoApi(DemoApiConfig(**config)).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def api(demo_api: Callable[..., DemoApi]) -> DemoApi:
    """A small demo API requiring the bearer token TOKEN."""
    return demo_api(customers=230, orders=310, events=170, surveys=400)
