#!/usr/bin/env python3
"""The README's two commands: `python3 scripts/dev.py demo` and `python3 scripts/dev.py test`,
and `python3 scripts/dev.py ui`, the demo in Dagster's UI.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
DEMO_DIR = Path(os.environ.get("SYNC_ASSETS_DEMO_DIR") or ROOT / ".demo")  # the tests use one of their own
DEMO_TOKEN = "demo-token"
DEMO_DAYS = 90  # the demo's partitions: the last 90 days, all synced by the demo as one run
DEMO_TABLES = ("stock_prices", "surveys", "surveys_current", "survey_responses", "customers", "orders", "events")
# Airbyte's own runner, only for the tests that compare manifests read by it and by us. In a virtualenv of
# its own: it pins pyrate-limiter 3, and we need 4. The range is the releases the comparison is tested with.
CDK_VENV = ROOT / ".venv-airbyte-cdk"
CDK_REQUIREMENT = "airbyte-cdk>=7.0,<8"
SUPERSEDED_CLI = "ignore:Function `asset_materialize_command` is superseded:FutureWarning"
QUIET = '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'  # Dagster's progress, not its debug events


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


def start_demo_api() -> tuple[subprocess.Popen[str], str]:
    """The demo API on a free port, as the demo runs it: (the process, its URL)."""
    api = subprocess.Popen(
        [str(BIN / "sync-assets"), "demo-api", "--port", "0", "--token", DEMO_TOKEN, "--latency-ms", "20",
         "--rate-limit", "50/1", "--customers", "5000", "--survey-year-start", "recent"],
        stdout=subprocess.PIPE, text=True,
    )
    assert api.stdout is not None
    banner = api.stdout.readline().strip()  # "demo API listening on http://127.0.0.1:PORT"
    if "http://" not in banner:
        api.terminate()
        sys.exit("the demo API did not start")
    print(banner, flush=True)
    return api, banner[banner.index("http://"):]


def demo_days() -> tuple[str, str]:
    """The first and the last day of the demo's partitions: the last ``DEMO_DAYS`` complete days (UTC), over
    which the demo API, started with ``--survey-year-start recent``, has data."""
    today = datetime.now(UTC).date()
    return (today - timedelta(days=DEMO_DAYS)).isoformat(), (today - timedelta(days=1)).isoformat()


def demo_env(home: Path, url: str) -> dict[str, str]:
    """What the demo's Dagster processes need: the instance, the API's address and token, and the first day
    of the demo source's partitions."""
    return {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": DEMO_TOKEN,
            "SYNC_ASSETS_DEMO_START": demo_days()[0]}


def demo() -> int:
    """Start the demo API, materialize the demo assets through the Dagster CLI, say where data landed."""
    ensure_venv("dev")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    home = DEMO_DIR / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    api, url = start_demo_api()
    try:
        # Dagster 1.13 flags `dagster asset materialize` as superseded by `dg launch --assets` (the
        # dagster-dg-cli package, for dg projects); the design keeps the CLI every Dagster install has, so
        # the demo does not print a warning the user did not cause.
        env = {**demo_env(home, url), "PYTHONWARNINGS": SUPERSEDED_CLI}
        for command in (
            # the incremental streams and the substream: every partition as one run, request slices 10 at a time
            [str(BIN / "dagster"), "asset", "materialize", "-m", "sync_assets.definitions", "--select",
             "demo/stock_prices,demo/surveys,demo/survey_responses", "--partition-range", "...".join(demo_days()),
             "--config-json", QUIET],
            # the full-refresh streams: register their first chunk and run it (one run per stream)
            [str(BIN / "sync-assets-dagster"), "start-refresh", "-m", "sync_assets.definitions",
             "--select", "demo/customers", "--select", "demo/orders", "--select", "demo/events",
             "--config-json", QUIET],
        ):
            print("$", " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)), flush=True)
            code = subprocess.run(command, env=env, cwd=ROOT).returncode
            if code != 0:
                return code
    finally:
        api.terminate()
        api.wait(timeout=10)
    # What a user would type: the synced tables, queried through the store's DuckDB database.
    query = " UNION ALL ".join(
        f"SELECT 'demo.{t}' AS \"table\", count(*) AS \"rows\" FROM demo.{t}" for t in DEMO_TABLES)
    print('\nsynced the demo source through Dagster; the tables, as `sync-assets sql "..."` shows them:', flush=True)
    code = subprocess.run([str(BIN / "sync-assets"), "sql", query], env=env, cwd=ROOT).returncode
    if code != 0:
        return code
    print(f"\nDagster instance: {home}  (browse it, every button working: python3 scripts/dev.py ui)")
    return 0


def ui() -> int:
    """The demo in Dagster's UI (`dagster dev`), with the demo API running and everything set that its
    buttons need (the instance, the API's address and token); Ctrl-C stops both. Keeps what the demo synced."""
    ensure_venv("dev")
    home = DEMO_DIR / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = os.environ.get("DAGSTER_UI_PORT", "3000")
    api, url = start_demo_api()
    print(f"Dagster UI: http://127.0.0.1:{port}  (instance {home}; Ctrl-C stops it and the demo API)", flush=True)
    try:
        return subprocess.run([str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                               "-p", port], env=demo_env(home, url), cwd=ROOT).returncode
    except KeyboardInterrupt:
        return 0
    finally:
        api.terminate()
        api.wait(timeout=10)


def ensure_cdk() -> Path | None:
    """``source-declarative-manifest`` from ``.venv-airbyte-cdk`` (created once); ``None`` if it cannot be
    installed, and the comparison tests then skip, saying why."""
    runner = CDK_VENV / BIN.name / "source-declarative-manifest"
    stamp = CDK_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == CDK_REQUIREMENT and runner.exists():
        return runner
    print(f"installing {CDK_REQUIREMENT} into {CDK_VENV} (Airbyte's runner, for the comparison tests)", flush=True)
    venv.create(CDK_VENV, with_pip=True, clear=True)
    pip = [str(CDK_VENV / BIN.name / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if subprocess.run([*pip, CDK_REQUIREMENT], cwd=ROOT).returncode != 0 or not runner.exists():
        print(f"could not install {CDK_REQUIREMENT}; the tests that compare with Airbyte's runner will skip",
              file=sys.stderr, flush=True)
        return None
    stamp.write_text(CDK_REQUIREMENT)
    return runner


def test(pytest_args: list[str]) -> int:
    """Lint, type-check the engine, and run the whole test suite."""
    ensure_venv("dev")
    runner = ensure_cdk()
    env = {**os.environ, **({"SYNC_ASSETS_AIRBYTE_CDK": str(runner)} if runner else {})}
    for command in (
        [str(BIN / "ruff"), "check", "sync_assets", "sync_assets_tests", "benchmarks", "scripts"],
        [str(BIN / "mypy"), "sync_assets"],
        [str(BIN / "python"), "-m", "pytest", *pytest_args],
    ):
        print("$", " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command)), flush=True)
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        if code != 0:
            return code
    return 0


def main() -> int:
    commands = {"demo": demo, "ui": ui, "test": lambda: test(sys.argv[2:])}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    return commands[sys.argv[1]]()


if __name__ == "__main__":
    sys.exit(main())
