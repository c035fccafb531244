"""The fault-injection suite, bounded for CI: see ``chaos`` for what it drives and what it checks.

Seeded: set SYNC_ASSETS_CHAOS_SEED to replay a failure (the seed is printed, and is in every failure
message). The long soak is ``benchmarks/chaos_soak.py``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sync_assets_tests.chaos import chaos_api, run_chaos


@pytest.mark.slow
def test_killed_and_faulted_syncs_end_equal_to_the_ground_truth(tmp_path: Path, store_location: str) -> None:
    seed = int(os.environ.get("SYNC_ASSETS_CHAOS_SEED") or random.randrange(2**31))
    print(f"chaos seed {seed} (replay: SYNC_ASSETS_CHAOS_SEED={seed})")
    api = chaos_api(seed)
    try:
        report = run_chaos(api, tmp_path / "chaos", store_location, seed, kills_per_stream=2)
    finally:
        api.stop()
    print(report)
    faults = report.api["faults_injected"]
    assert sum(report.kills.values()) == 8, report
    assert faults.get("5xx", 0) > 0 and faults.get("reset", 0) + faults.get("truncated", 0) > 0, report
