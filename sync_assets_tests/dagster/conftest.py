"""Dagster fixtures: a real (temporary, SQLite-backed) instance and the demo definitions against a demo API."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from dagster import DagsterInstance, instance_for_test

warnings.filterwarnings("ignore", message=".*backfill_policy.*")


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as dagster_instance:
        yield dagster_instance
