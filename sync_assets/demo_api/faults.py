"""Broken answers, on purpose: the errors, throttling, damaged bodies, dropped connections and cursor
cycles that production APIs inflict, so that sync code is tested on how it copes and not only on how it
reads. Every draw comes from one seeded stream per server, so a run that failed can be replayed exactly.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from sync_assets.demo_api.config import DemoApiConfig
from sync_assets.demo_api.protocol import Page, Reply, json_reply

SLOW_FAULT_SECONDS = 2.0
FAULTS = ("500", "429", "malformed", "not_list", "slow", "reset", "truncated", "slow_body", "cycle", "no_cursor")
TRANSPORT_FAULTS = ("reset", "truncated", "slow_body")
CURSOR_FIELDS = ("date_modified", "date", "occurred_at")  # what no_cursor takes out of every other record
# Chaos mode: the share of requests that meet each fault (the rest are answered normally). A burst is a
# second of 429s with Retry-After for every request of that client, as when an API sheds load.
CHAOS_MIX = (("5xx", 0.20), ("burst", 0.015), ("reset", 0.03), ("truncated", 0.03), ("slow_body", 0.03))
CHAOS_CYCLE_RATE = 0.03  # with chaos_cycles: the share of customers' pages whose next cursor points back
BURST_SECONDS = 1.0
SLOW_BODY_SECONDS = 0.6  # a slow body trickles in four parts over this long


def with_fault(page: Page, fault: str | None) -> Reply:
    """Render a page, damaged the way ``_fault`` asks, to test how clients cope with broken answers."""
    body = page.body
    if fault == "no_cursor" and page.records_key is not None:
        body = {**body, page.records_key: [
            {k: v for k, v in record.items() if k not in CURSOR_FIELDS} if index % 2 else record
            for index, record in enumerate(body[page.records_key])]}
    if fault == "not_list":
        if page.records_key is None:
            body = _records_as_object(body)
        else:
            body = {**body, page.records_key: _records_as_object(body[page.records_key])}
    reply = json_reply(200, body, page.headers)
    if fault == "malformed":
        reply.body = reply.body[: max(1, len(reply.body) // 2)]
    return reply


def _records_as_object(records: list[Any]) -> dict[str, Any]:
    return {str(index): record for index, record in enumerate(records)}


class FaultStream:
    """One seeded random stream for the whole server, so a run's sequence of failures is reproducible."""

    def __init__(self, config: DemoApiConfig) -> None:
        self._random = random.Random(config.seed)
        self._fail_rate = config.fail_rate
        self._chaos, self._cycles = config.chaos, config.chaos and config.chaos_cycles
        self._lock = threading.Lock()

    def should_fail(self) -> bool:
        with self._lock:
            return self._random.random() < self._fail_rate

    def chaos(self, path_key: str) -> str | None:
        """The fault this request meets in chaos mode (a ``FAULTS`` name, or ``burst``), if any."""
        if not self._chaos:
            return None
        with self._lock:
            draw = self._random.random()
            if self._cycles and path_key == "/v1/customers" and self._random.random() < CHAOS_CYCLE_RATE:
                return "cycle"
            for fault, share in CHAOS_MIX:
                if draw < share:
                    return self._random.choice(("500", "502", "503")) if fault == "5xx" else fault
                draw -= share
        return None
