"""The demo API in its own process, for benchmarks: it must not share the measured interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TOKEN = "bench-token"


@contextmanager
def demo_api(*flags: str) -> Iterator[str]:
    """Start `sync-assets demo-api` with ``flags`` (token TOKEN, a free port); yield its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_assets.cli", "demo-api", "--port", "0", "--token", TOKEN, *flags],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # "demo API listening on http://127.0.0.1:PORT"
        yield banner[banner.index("http://"):].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
