"""One budget per API, shared by threads and processes: checked by the API's own counters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import yaml

from sync_assets.demo_api import DemoApi, data
from sync_assets.rate_limit import (
    AnnouncedBudget,
    Rate,
    RateLimitHeaders,
    RateLimitStore,
    SharedRateLimiter,
    announced_remaining,
    announced_wait,
)
from sync_assets_tests.helpers import TOKEN

POSTGRES_URL = os.environ.get("SYNC_ASSETS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SYNC_ASSETS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


STORES = [
    pytest.param({"kind": "sqlite"}, id="sqlite"),
    pytest.param({"kind": "postgres", "url": POSTGRES_URL}, id="postgres", marks=pytest.mark.skipif(
        not _reachable(5432), reason="PostgreSQL is not running on 127.0.0.1:5432")),
    pytest.param({"kind": "redis", "url": REDIS_URL}, id="redis", marks=pytest.mark.skipif(
        not _reachable(6379), reason="Redis is not running on 127.0.0.1:6379")),
]


def _source_file(tmp_path: Path, api: DemoApi, store: dict[str, str], key: str) -> Path:
    source = {
        "name": "demo",
        "base_url": api.url,
        "auth": {"type": "bearer", "token": {"env": "DEMO_TOKEN_FOR_TEST"}},
        "rate_limits": [{"requests": 10, "per": 1}],
        "rate_limit_key": key,
        "rate_limit_store": store,
        "streams": [{"name": "customers", "path": "/v1/customers", "records_path": "data",
                     "paginator": {"type": "cursor", "size_param": "limit", "size": 10}}],
    }
    path = tmp_path / "source.yaml"
    path.write_text(yaml.safe_dump(source))
    return path


def _run_readers(source: Path, state_dirs: list[Path], tmp_path: Path) -> list[list[dict[str, object]]]:
    """Run one `sync-assets read` process per state dir, all at once; return what each wrote."""
    env = {**os.environ, "DEMO_TOKEN_FOR_TEST": TOKEN}
    outputs = [tmp_path / f"out{i}.jsonl" for i in range(len(state_dirs))]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "sync_assets.cli", "read", str(source), "customers", "-o", str(out),
             "--state-dir", str(state_dir)],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        for out, state_dir in zip(outputs, state_dirs, strict=True)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    return [[json.loads(line) for line in out.read_text().splitlines()] for out in outputs]


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_two_processes_sharing_a_budget_never_exceed_it(
    store: dict[str, str], demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    api = demo_api(rate_limit=(10, 1.0), customers=150)
    source = _source_file(tmp_path, api, store, f"t{uuid.uuid4().hex[:12]}")
    shared = tmp_path / "state"
    started = time.monotonic()
    outputs = _run_readers(source, [shared, shared], tmp_path)
    elapsed = time.monotonic() - started
    assert outputs == [data.all_customers(0, 150)] * 2
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["by_path"]["/v1/customers"] == 30, stats
    assert stats["responses_429"] == 0
    assert stats["max_requests_in_window"] <= 10
    assert elapsed < 30 / 10 + 6  # the budget is used, not wasted: ~3 s of requests plus start-up


@pytest.mark.slow
def test_processes_with_separate_budgets_do_overrun_the_api(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    """The control for the test above: without sharing, the API sees more than it allows."""
    api = demo_api(rate_limit=(10, 1.0), customers=150)
    source = _source_file(tmp_path, api, {"kind": "sqlite"}, "separate")
    outputs = _run_readers(source, [tmp_path / "a", tmp_path / "b"], tmp_path)
    assert outputs == [data.all_customers(0, 150)] * 2  # 429s were retried, nothing lost
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["responses_429"] > 0 and stats["max_requests_in_window"] > 10


def test_several_rates_hold_at_once_across_limiter_instances(tmp_path: Path) -> None:
    """Two limiters on one store (as two processes would have) keep both windows."""
    rates = [Rate(3, per=timedelta(seconds=0.5)), Rate(5, per=timedelta(seconds=2))]
    limiters = [SharedRateLimiter("multi", rates, RateLimitStore(), tmp_path) for _ in range(2)]
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(limiter: SharedRateLimiter) -> None:
        for _ in range(4):
            limiter.acquire()
            with lock:
                stamps.append(time.time())

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for limiter in limiters:
        limiter.close()
    stamps.sort()
    assert len(stamps) == 8
    for i, stamp in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s - stamp < 0.5) <= 3
        assert sum(1 for s in stamps[i:] if s - stamp < 2.0) <= 5


@pytest.mark.parametrize("store", STORES)
def test_a_pause_from_one_worker_holds_every_worker(store: dict[str, str], tmp_path: Path) -> None:
    key = f"p{uuid.uuid4().hex[:12]}"
    config = RateLimitStore.model_validate(store)
    first = SharedRateLimiter(key, [], config, tmp_path)
    second = SharedRateLimiter(key, [], config, tmp_path)
    first.pause(0.6)
    first.pause(0.1)  # a shorter pause never cuts a longer one short
    waited = second.acquire()
    assert 0.4 < waited < 1.5
    other_api = SharedRateLimiter(f"{key}_other", [], config, tmp_path)
    assert other_api.acquire() < 0.1
    for limiter in (first, second, other_api):
        limiter.close()


def test_one_variable_moves_every_default_budget_to_a_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_ASSETS_RATE_LIMIT_URL", "redis://127.0.0.1:6379/0")
    shared = RateLimitStore.deployment_default()
    assert shared is not None and shared.kind == "redis"
    monkeypatch.setenv("SYNC_ASSETS_RATE_LIMIT_URL", "postgresql://127.0.0.1/test")
    shared = RateLimitStore.deployment_default()
    assert shared is not None and shared.kind == "postgres"
    monkeypatch.delenv("SYNC_ASSETS_RATE_LIMIT_URL")
    assert RateLimitStore.deployment_default() is None


class _Taker:
    """A thread taking a ticket from ``budget``: ``ticket(within)`` is the ticket it got by then, or None."""

    def __init__(self, budget: AnnouncedBudget) -> None:
        self._got: list[int] = []
        self._thread = threading.Thread(target=lambda: self._got.append(budget.take()[0]), daemon=True)
        self._thread.start()

    def ticket(self, within: float = 0.3) -> int | None:
        self._thread.join(within)
        return self._got[0] if self._got else None


def test_an_announced_budget_trusts_the_least_count_since_the_refill_less_what_is_on_its_way() -> None:
    budget = AnnouncedBudget()
    assert _Taker(budget).ticket() == 1
    second = _Taker(budget)
    assert second.ticket() is None  # until an answer says what is left, one request at a time
    budget.answered(1, 4, True, 60.0)
    assert second.ticket() == 2 and _Taker(budget).ticket() == 3
    # The API counts 3 (3 left), then 2 (2 left); 2 is answered first, then 3, the newest, with its older count.
    budget.answered(2, 2, True, 60.0)
    budget.answered(3, 3, True, 60.0)
    assert [_Taker(budget).ticket() for _ in range(2)] == [4, 5]
    sixth = _Taker(budget)
    assert sixth.ticket() is None  # 2 left, 2 on their way
    budget.answered(5, 1, True, 60.0)
    assert sixth.ticket() is None  # 1 left, and ticket 4, on its way, may take it
    budget.answered(4, 0, True, 0.3)  # spent: refilled in 0.3 s
    assert sixth.ticket(0.1) is None and sixth.ticket(0.5) == 6  # then one asks


def test_an_announced_budget_refills_at_its_reset_and_holds_nobody_back_when_nothing_is_announced() -> None:
    budget = AnnouncedBudget()
    budget.answered(budget.take()[0], 0, True, 0.3)  # spent, refilled in 0.3 s
    started = time.monotonic()
    probe = budget.take()[0]
    waiter = _Taker(budget)
    assert time.monotonic() - started >= 0.25 and waiter.ticket() is None  # one asks first
    budget.answered(probe, 5, True, 60.0)  # a refill: 5 left, though the least count was 0
    assert waiter.ticket() == 3 and _Taker(budget).ticket() == 4
    silent = AnnouncedBudget()
    silent.answered(silent.take()[0], None, False, None)  # a 5xx without headers tells nothing
    assert _Taker(silent).ticket() == 2
    waiter = _Taker(silent)
    assert waiter.ticket() is None
    silent.answered(2, None, True, None)  # a 2xx without headers: this API announces no budget
    assert waiter.ticket() == 3 and all(_Taker(silent).ticket() is not None for _ in range(20))


ROTATIONS = 6


def _rotate_many(store: dict[str, str], state_dir: str, key: str) -> list[str]:
    """In a process of its own: rotate a slot ROTATIONS times, each renewal slow; what each one was given."""
    limiter = SharedRateLimiter(key, [], RateLimitStore(**store), Path(state_dir))
    given: list[str] = []

    def renew(kept: str | None) -> tuple[str, None]:
        given.append(kept or "0")
        time.sleep(0.02)  # a token request's round trip: time for another process to come in, if it could
        return str(int(kept or "0") + 1), None

    try:
        for _ in range(ROTATIONS):
            limiter.board.rotate("refresh", renew)
    finally:
        limiter.close()
    return given


@pytest.mark.parametrize("store", STORES)
def test_a_rotated_value_is_renewed_by_one_process_at_a_time_and_never_handed_out_twice(
    store: dict[str, str], tmp_path: Path
) -> None:
    """What a rotating refresh token needs of the budget's store: each value used once, the newest kept."""
    import multiprocessing

    key = f"t{uuid.uuid4().hex[:12]}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        given = pool.starmap(_rotate_many, [(store, str(tmp_path), key)] * 4)
    handed_out = [value for one in given for value in one]
    assert sorted(handed_out, key=int) == [str(n) for n in range(4 * ROTATIONS)]  # each value exactly once
    limiter = SharedRateLimiter(key, [], RateLimitStore(**store), tmp_path)
    try:
        assert limiter.board.rotate("refresh", lambda kept: (kept or "", kept)) == str(4 * ROTATIONS)
    finally:
        limiter.close()


def test_announced_waits_are_read_from_every_common_header_and_capped(caplog: pytest.LogCaptureFixture) -> None:
    names = RateLimitHeaders(max_wait_seconds=600)
    soon = time.time() + 30
    def wait(headers: dict[str, str], names: RateLimitHeaders = names) -> float | None:
        announced = announced_wait(headers, names, "GET /x")
        return None if announced is None else announced[0]

    assert wait({"Retry-After": "7"}) == 7
    assert wait({"RateLimit-Reset": "12"}) == 12
    assert wait({"RateLimit": "limit=100, remaining=0, reset=9"}) == 9
    assert wait({"RateLimit": '"default";r=0;t=4'}) == 4
    assert 28 < (wait({"X-RateLimit-Reset": str(int(soon))}) or 0) <= 30  # an epoch timestamp
    assert wait({"X-RateLimit-Reset": "45"}) == 45  # seconds
    assert wait({"X-RateLimit-Reset": "not a number"}) is None
    with caplog.at_level("WARNING"):
        assert wait({"Retry-After": "86400"}) == 600  # absurd: capped, and said
    assert "86400" in caplog.text and "max_wait_seconds" in caplog.text
    custom = RateLimitHeaders(reset=["X-Budget-Refill"], remaining=["X-Budget-Left"])
    assert wait({"X-Budget-Refill": "3"}, custom) == 3
    assert announced_remaining({"X-Budget-Left": "0"}, custom) == 0
    assert announced_remaining({"X-Budget-Left": "2"}, custom) == 2
    assert announced_remaining({"RateLimit": "r=0;t=3"}, names) == 0 and announced_remaining({}, names) is None
