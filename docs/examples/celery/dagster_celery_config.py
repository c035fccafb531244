"""A worker's Celery settings: ``celery -A dagster_celery.app worker`` imports this module (by this name)
when it is on the worker's ``PYTHONPATH``. The same settings as the executor's in ``celery_definitions``."""

import os

broker_url = os.environ["SYNC_ASSETS_CELERY_BROKER"]
result_backend = "rpc://"
task_acks_late = True  # a task is taken off the queue only once it has run ...
task_reject_on_worker_lost = True  # ... and a worker process that dies gives it back, to run on another
worker_prefetch_multiplier = 1  # a busy worker holds no task that an idle one could run
