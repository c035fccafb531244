#!/usr/bin/env python3
"""The README's two commands: `python3 scripts/dev.py demo` and `python3 scripts/dev.py test`.

Each creates (or reuses) the virtualenv `.venv` next to this repo and installs the package into it,
so that a fresh machine needs nothing but Python 3.11+. The install is redone only when
pyproject.toml changes. Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
DEMO_DIR = ROOT / ".demo"
DEMO_TOKEN = "demo-token"
DEMO_WINDOW = ("2024-01-01", "2024-02-01")  # one month of the incremental streams


def ensure_venv(extras: str) -> None:
    """Create .venv and install `.[extras]` unless the same pyproject was installed already."""
    if sys.version_info < (3, 11):  # noqa: UP036 -- runs under whatever python3 the machine has
        sys.exit(f"sync-assets needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp = VENV / f".installed-{extras}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print(f"installing sync-assets[{extras}] into {VENV} (first run takes a minute or two)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"], check=True, cwd=ROOT)
    stamp.write_text(wanted)


def demo() -> int:
    """Start the demo API, sync the demo source from it, and say where the data landed."""
    ensure_venv("dev")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    out_dir = DEMO_DIR / "data"
    out_dir.mkdir(parents=True)
    api = subprocess.Popen(
        [str(BIN / "sync-assets"), "demo-api", "--port", "0", "--token", DEMO_TOKEN, "--latency-ms", "5"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert api.stdout is not None
        banner = api.stdout.readline().strip()  # "demo API listening on http://127.0.0.1:PORT"
        if "http://" not in banner:
            print("the demo API did not start", file=sys.stderr)
            return 1
        url = banner[banner.index("http://"):]
        print(banner, flush=True)
        env = {**os.environ, "SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": DEMO_TOKEN,
               "SYNC_ASSETS_HOME": str(DEMO_DIR / "home")}
        for stream, incremental in [("stock_prices", True), ("surveys", True), ("customers", False),
                                    ("orders", False), ("events", False)]:
            target = out_dir / f"{stream}.jsonl"
            window = ["--start", DEMO_WINDOW[0], "--end", DEMO_WINDOW[1]] if incremental else []
            command = [str(BIN / "sync-assets"), "read", "sync_assets/sources/demo.yaml", stream, *window,
                       "-o", str(target)]
            result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return result.returncode
            print(f"demo/{stream}: {result.stderr.strip().splitlines()[-1]}\n  -> {target}", flush=True)
    finally:
        api.terminate()
        api.wait(timeout=10)
    print(f"\nsynced the demo source into {out_dir}")
    return 0


def test(pytest_args: list[str]) -> int:
    """Lint, type-check the engine, and run the whole test suite."""
    ensure_venv("dev")
    for command in (
        [str(BIN / "ruff"), "check", "sync_assets", "sync_assets_tests", "benchmarks", "scripts"],
        [str(BIN / "mypy"), "sync_assets"],
        [str(BIN / "python"), "-m", "pytest", *pytest_args],
    ):
        print("$", " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)), flush=True)
        code = subprocess.run(command, cwd=ROOT).returncode
        if code != 0:
            return code
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    return demo() if sys.argv[1] == "demo" else test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
