"""The demo source with its steps on Celery workers (docs/running-at-scale.md, "Celery workers").

The same module is loaded by the process that launches runs (``dagster asset materialize -m
celery_definitions``, the webserver, the daemon) and by every worker, which loads the job of each
step it is sent. Each run's orchestrating process holds the run's lease (``run_leases``) while
Celery runs its steps wherever a worker is free.
"""

from dagster import Definitions
from dagster_celery import celery_executor

from sync_assets.dagster import build_definitions, run_leases
from sync_assets.sources import demo_source

# What makes a killed worker's step run again on another worker: the task is acknowledged only once it
# has run (acks_late), and a worker that dies mid-task gives it back (reject_on_worker_lost); with
# acks_late, a prefetch of 1 keeps a busy worker from holding tasks another could run.
CELERY = {
    "broker": {"env": "SYNC_ASSETS_CELERY_BROKER"},  # amqp://user:password@rabbitmq:5672/vhost
    "backend": "rpc://",
    "config_source": {"task_acks_late": True, "task_reject_on_worker_lost": True, "worker_prefetch_multiplier": 1},
}

defs = Definitions.merge(build_definitions(demo_source()), run_leases(celery_executor.configured(CELERY)))
