"""The demo source with each *run* on a Celery worker (docs/running-at-scale.md, "Assets or partitions").

Here the instance's run launcher (``CeleryRunLauncher`` in ``run_launcher_dagster.yaml``) sends each
run to a worker, which runs it whole, steps included, in its own process: a backfill split into
several runs spreads its partitions over the workers. Each run still holds its lease (``run_leases``),
so one killed with its worker never blocks the runs after it.
"""

from dagster import Definitions, define_asset_job, in_process_executor

from sync_assets.dagster import build_definitions, run_leases
from sync_assets.sources import demo_source

# A job per stream to backfill partition by partition (``dagster job backfill -j surveys_job``).
surveys_job = define_asset_job("surveys_job", selection="demo/surveys")

# In process: a run launched on a worker is already a process of its own, and its one step needs no other.
defs = Definitions.merge(build_definitions(demo_source()), run_leases(in_process_executor),
                         Definitions(jobs=[surveys_job]))
