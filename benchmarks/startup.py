"""What a fresh process costs before it does any work: the commands a user starts most, against their floor.

    .venv/bin/python -m benchmarks.startup --repeats 5

- floors: the interpreter alone, and with DuckDB (what ``sync-assets sql`` cannot avoid) or Dagster
  (what a step process cannot avoid) imported;
- ``sync-assets read`` of one day of ``demo/surveys`` (a handful of records), ``sync-assets sql`` of a count;
- ``dagster asset materialize`` of the demo's January run (the README's first command), into a new store
  and again, beside a trivial daily asset over the same partitions (Dagster's floor): the peak memory of
  each of its processes (the CLI's run and the step processes it starts), read from the kernel's
  high-water mark (``VmHWM``) while they run, since a step's peak is gone once it exits.

CPU comes from ``wait4``; peaks from the kernel's high-water mark of each process (``VmHWM``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.demo_server import TOKEN, demo_api
from sync_assets.sources import DEMO_SOURCE_PATH

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


PEAK_PROBE = """
import atexit, os, runpy, sys
def report():
    with open('/proc/self/status') as status:
        peak = next(line for line in status if line.startswith('VmHWM')).split()[1]
    with open(os.environ['STARTUP_PEAK_FILE'], 'w') as out:
        out.write(peak)
atexit.register(report)
module, sys.argv = sys.argv[1], sys.argv[1:]
if module == '-c':
    exec(sys.argv[1])
else:
    runpy.run_module(module, run_name='__main__', alter_sys=True)
"""
"""Runs a module or code as ``python -m``/``-c`` would, and writes the process's peak RSS (kB) at exit. The
kernel's own count (``wait4``) is no use here: a child starts with its parent's peak, this benchmark's."""


def measured(module_and_args: list[str], env: dict[str, str], work: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of a fresh ``python -m module args`` (or ``-c code``)."""
    peak_file = work / "peak"
    started = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        process = subprocess.Popen([sys.executable, "-c", PEAK_PROBE, *module_and_args], stdout=devnull,
                                   stderr=subprocess.DEVNULL, env={**env, "STARTUP_PEAK_FILE": str(peak_file)},
                                   cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, f"{module_and_args} failed"
    return wall, usage.ru_utime + usage.ru_stime, int(peak_file.read_text()) / 1024


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def peaks_of_tree(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """The peak RSS (MiB) of each process ``command`` starts, by role: the run's own process, its steps."""
    peaks: dict[int, tuple[str, float]] = {}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)

    def watch() -> None:
        while process.poll() is None:
            for pid in _descendants(process.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if not cmdline:  # between fork and exec: not yet the program it becomes
                    continue
                high = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
                role = "run" if pid == process.pid else ("step" if "spawn_main" in cmdline else "other")
                peaks[pid] = (role, max(high / 1024, peaks.get(pid, ("", 0.0))[1]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert process.wait() == 0, f"{command} failed"
    watcher.join()
    by_role: dict[str, float] = {}
    for role, peak in peaks.values():
        by_role[role] = max(peak, by_role.get(role, 0.0))
    return by_role


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sync-assets-startup-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    rows: list[tuple[str, list[tuple[float, float, float]]]] = []
    with demo_api("--latency-ms", "20") as url:
        env = {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_DEMO_URL": url, "SYNC_ASSETS_DEMO_TOKEN": TOKEN}
        materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "sync_assets.definitions", "--select",
                       "demo/stock_prices,demo/surveys,demo/survey_responses", "--partition-range",
                       "2024-01-01...2024-01-31"]
        first_peaks: list[dict[str, float]] = []  # into a new store: the DuckDB views are created
        later_peaks: list[dict[str, float]] = []  # the same run again, as a schedule's next one
        for _ in range(args.repeats):
            shutil.rmtree(home / "sync_assets", ignore_errors=True)
            first_peaks.append(peaks_of_tree(materialize, env))
            later_peaks.append(peaks_of_tree(materialize, env))
        floor_peaks = [peaks_of_tree([str(BIN / "dagster"), "asset", "materialize", "-m", "benchmarks.budgeted_defs",
                                      "--select", "trivial_daily", "--partition-range", "2024-01-01...2024-01-31"],
                                     env) for _ in range(args.repeats)]
        cli = "sync_assets.cli"
        commands = {
            "python -c pass": ["-c", "pass"],
            "python -c 'import duckdb'": ["-c", "import duckdb"],
            "python -c 'import dagster'": ["-c", "import dagster"],
            "sync-assets read demo surveys, one day": [
                cli, "read", str(DEMO_SOURCE_PATH), "surveys", "--start", "2024-01-02", "--end", "2024-01-03",
                "--state-dir", str(work / "limits")],
            "sync-assets sql 'SELECT count(*) FROM demo.surveys'": [cli, "sql", "SELECT count(*) FROM demo.surveys"],
        }
        for name, command in commands.items():
            rows.append((name, [measured(command, env, work) for _ in range(args.repeats)]))
    print(f"| fresh process (median of {args.repeats}) | wall s | CPU s | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, figures in rows:
        wall, cpu, peak = (statistics.median(column) for column in zip(*figures, strict=True))
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {peak:.0f} |")
    print(f"\n| `dagster asset materialize` of 31 daily partitions (median of {args.repeats}) | largest run "
          "process, MiB | largest step process, MiB |")
    print("|---|---|---|")
    for name, peaks in (("the demo's January run, into a new store", first_peaks),
                        ("the same run again (the views exist)", later_peaks),
                        ("Dagster's floor: a trivial daily asset", floor_peaks)):
        run, step = (statistics.median(p.get(role, 0.0) for p in peaks) for role in ("run", "step"))
        print(f"| {name} | {run:.0f} | {step:.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
