"""The chaos harness: syncs driven through the demo API's chaos mode, killed at random moments, resumed.

A window range (surveys), two full refreshes (customers, whose cursors sometimes point back, read in
order; orders, by offset, its chunks read at once) and a substream (each survey's responses) are each
run in a process of their own (``sync_driver``) that is SIGKILLed at a random moment, again and again,
then run until it says everything is committed, as an orchestrator re-running failed work would.

After every run, killed or not, the store is checked: every committed partition holds exactly the rows
its state row counts, and every checkpoint exactly the rows staged under it (state never ahead of
data, nor behind). At the end what is stored must equal the demo API's ground truth: nothing lost,
nothing stored twice. And the API's own counters must show no request sent during a pause it announced.

Used by ``test_chaos.py`` (bounded, in CI) and ``benchmarks/chaos_soak.py`` (long).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_assets.demo_api import DemoApi, DemoApiConfig, data
from sync_assets.storage import Store, TableSpec, open_store
from sync_assets.storage.layout import chunk_scope, partition_scope
from sync_assets_tests.helpers import REFRESH_STREAMS, TOKEN, make_source_data, stored
from sync_assets_tests.sync_driver import days

FIRST, LAST = "2024-01-01", "2024-01-08"
PAGE = {"type": "page_number", "size": 3, "total_path": "total"}
STREAMS: list[dict[str, Any]] = [
    {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id", "paginator": PAGE,
     "incremental": {"cursor_field": "date_modified", "start": FIRST, "start_param": "start_modified_at",
                     "end_param": "end_modified_at"}},
    {"name": "survey_responses", "path": "/v3/surveys/{parent[id]}/responses", "records_path": "data",
     "primary_key": "id", "parent": {"stream": "surveys"}, "paginator": {**PAGE, "size": 5}},
    *REFRESH_STREAMS[:2],  # customers by cursor, orders by offset
]
# (driver kind, stream), in the order they run: the substream reads the parents the windows stored. The
# refreshes are one read in order (customers' cursors) and one whose chunks are read at once (offsets).
WORK = (("windows", "surveys"), ("refresh", "customers"), ("refresh", "orders"), ("substream", "survey_responses"))
# A 429 answered to a process killed while the answer was on its way, or a few milliseconds before it could
# write the pause to the board that tells the others, is known to nobody alive: nothing can pass on what the
# dead were told. Pauses announced this close to a kill (before or after it) are reported apart, not counted
# against the client.
KILLED_BEFORE_TELLING = 0.1
# A run is killed once the API has received a random number (1 to this) of its requests: a moment chosen
# by progress, not by the clock, so that it falls inside the run whatever the faults cost in time.
KILL_WITHIN = {"surveys": ("/v3/surveys", 12), "customers": ("/v1/customers", 12), "orders": ("/v1/orders", 8),
               "survey_responses": ("/v3/surveys/{id}/responses", 80)}


@dataclass
class ChaosReport:
    seed: int
    kills: Counter[str] = field(default_factory=Counter)  # by stream
    runs: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)  # refreshes restarted after a cursor cycle
    records_compared: int = 0
    api: dict[str, Any] = field(default_factory=dict)
    killed_at: list[float] = field(default_factory=list)  # epoch seconds
    lost_with_a_kill: int = 0  # requests in a pause whose announcement died with the process told of it

    @property
    def requests_in_pause(self) -> list[dict[str, Any]]:
        """Requests the API received during a pause it had announced to a process that lived to pass it on."""
        return [v for v in self.api.get("requests_in_pause_examples", [])
                if not any(abs(kill - v["announced_at"]) < KILLED_BEFORE_TELLING for kill in self.killed_at)]

    def __str__(self) -> str:
        return (f"chaos seed {self.seed}: {sum(self.runs.values())} runs, {sum(self.kills.values())} SIGKILLed "
                f"({dict(self.kills)}), {sum(self.restarts.values())} refreshes restarted after a cursor cycle, "
                f"{self.records_compared} records compared, {self.api.get('requests')} "
                f"requests, faults injected {self.api.get('faults_injected')}, "
                f"{self.api.get('responses_429')} 429s, {len(self.requests_in_pause)} requests in a pause "
                f"{self.requests_in_pause or ''} (and {self.lost_with_a_kill} in pauses announced to a process "
                "killed before it could tell the others)")


def chaos_api(seed: int, surveys: int = 4000, customers: int = 600, orders: int = 600) -> DemoApi:
    return DemoApi(DemoApiConfig(token=TOKEN, seed=seed, chaos=True, chaos_cycles=True, latency_ms=10,
                                 surveys=surveys, customers=customers, orders=orders)).start()


def run_chaos(api: DemoApi, work: Path, store_location: str, seed: int, kills_per_stream: int,
              max_runs: int = 40) -> ChaosReport:
    """Every kind of sync through ``api``, each stream killed ``kills_per_stream`` times, then checked."""
    report, rng = ChaosReport(seed), random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.json"
    source.write_text(json.dumps(make_source_data(api.url, STREAMS)))
    for kind, stream in WORK:
        said = ""
        while True:
            if report.runs[stream] >= max_runs:
                raise AssertionError(f"{stream} did not complete in {max_runs} runs (the last said {said!r}); {report}")
            report.runs[stream] += 1
            log = work / f"{stream}-{report.runs[stream]}.log"
            with log.open("w") as stderr:
                process = subprocess.Popen(
                    [sys.executable, "-m", "sync_assets_tests.sync_driver", str(source), str(work / "state"),
                     store_location, kind, stream, "--days", FIRST, LAST],
                    stdout=subprocess.PIPE, stderr=stderr, text=True,
                )
                assert process.stdout is not None and process.stdout.readline().strip() == "started", log.read_text()
                killed = False
                if report.kills[stream] < kills_per_stream:
                    path, within = KILL_WITHIN[stream]
                    target = api.stats()["by_path"].get(path, 0) + rng.randint(1, within)
                    while process.poll() is None and api.stats()["by_path"].get(path, 0) < target:
                        time.sleep(0.005)
                    if process.poll() is None:
                        process.kill()
                        report.killed_at.append(time.time())
                        killed = True
                said = process.communicate(timeout=300)[0].strip()
                print(said, file=stderr)
            if killed:
                report.kills[stream] += 1
            _check_state_matches_data(store_location, kind, stream, report)
            if not killed and process.returncode == 0 and report.kills[stream] >= kills_per_stream:
                break  # done, after its quota of kills (a run that ends before its kill is run again)
            if "already followed" in said:
                # A cursor pointed back to a page that looked new (its token differed) and was checkpointed:
                # resuming from it would meet the cycle again. The operator's way out: restart the refresh.
                store = open_store(store_location)
                store.refreshes(TableSpec("demo", stream, "snapshot")).abandon()
                store.close()
                report.restarts[stream] += 1
    report.api = api.stats()
    report.records_compared = _check_ground_truth(store_location, seed, api.config)
    report.lost_with_a_kill = report.api["requests_in_pause"] - len(report.requests_in_pause)
    assert len(report.api["requests_in_pause_examples"]) == report.api["requests_in_pause"], "examples cut short"
    assert not report.requests_in_pause, report
    return report


def _check_state_matches_data(location: str, kind: str, stream: str, report: ChaosReport) -> None:
    """Every committed partition holds exactly what its state row says; every checkpoint, what it staged."""
    store = open_store(location)
    try:
        if kind == "refresh":
            refreshes = store.refreshes(TableSpec("demo", stream))
            running = refreshes.running()
            if running is not None:
                for chunk, checkpoint in refreshes.checkpoints(running).items():
                    staged = _staged_rows(store, chunk_scope("demo", stream, running.refresh, chunk))
                    assert staged == (checkpoint.records if checkpoint else 0), (chunk, checkpoint, staged, report)
            return
        table = TableSpec("demo", stream)
        for key, state in store.partition_states(table).items():
            ids = [record["id"] for record in store.records(table, [key])]
            assert len(ids) == state.records == len(set(ids)), (key, state, len(ids), report)
        for key, _ in days(FIRST, LAST):
            scope = partition_scope("demo", stream, key)
            checkpoint = store.checkpoint(scope)
            assert _staged_rows(store, scope) == (checkpoint.records if checkpoint else 0), (key, report)
    finally:
        store.close()


def _staged_rows(store: Store, scope: str) -> int:
    return sum(batch.num_rows for batch in store.staged_batches(scope))


def _check_ground_truth(location: str, seed: int, config: DemoApiConfig) -> int:
    """What is stored equals what the API holds, record for record; returns how many records were compared."""
    store = open_store(location)
    try:
        compared = 0
        for key, window in days(FIRST, LAST):
            surveys = stored(store, "surveys", [key])
            truth = data.surveys_modified_between(seed, config.surveys, window.start, window.end)
            assert sorted(s["id"] for s in surveys) == sorted(s["id"] for s in truth), key
            responses = sorted(r["id"] for r in stored(store, "survey_responses", [key]))
            expected = sorted(r["id"] for s in surveys for r in data.survey_responses(seed, s["id"]))
            assert responses == expected, key
            compared += len(surveys) + len(responses)
        customers, orders = stored(store, "customers"), stored(store, "orders")
        assert customers == data.all_customers(seed, config.customers)
        assert orders == data.all_orders(seed, config.orders, config.customers)
        return compared + len(customers) + len(orders)
    finally:
        store.close()
