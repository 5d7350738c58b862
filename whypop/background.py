"""The background-callback manager the dashboard runs jobs on.

- Default: diskcache, in ``<run>/cache/jobs`` (one directory shared by every gunicorn
  worker of the machine, so progress and results are visible whichever worker polls).
- ``WHYPOP_REDIS_URL`` set: Celery over Redis (broker and result backend), so jobs run
  on Celery workers, possibly on other machines that mount the same run store. Start
  them with ``celery -A whypop.app.worker:celery_app worker`` (the Procfile's
  ``worker:`` line); they must run the same code as the web process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

JOB_TIMEOUT_SECONDS = 6 * 3600


def redis_url() -> str | None:
    return os.environ.get("WHYPOP_REDIS_URL") or None


def make_celery(url: str, name: str = "whypop"):
    """A Celery app over Redis with the settings background callbacks need."""
    from celery import Celery

    app = Celery(name, broker=url, backend=url)
    app.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
    )
    return app


def make_manager(run_root: Path):
    """(manager, celery_app or None) for a run: Celery when WHYPOP_REDIS_URL is set."""
    from dash import CeleryManager, DiskcacheManager

    url = redis_url()
    if url:
        celery_app = make_celery(url)
        log.info("background jobs run on Celery workers via %s", url)
        return CeleryManager(celery_app, expire=JOB_TIMEOUT_SECONDS), celery_app
    import diskcache

    directory = Path(run_root) / "cache" / "jobs"
    directory.mkdir(parents=True, exist_ok=True)
    cache = diskcache.Cache(str(directory))
    return DiskcacheManager(cache, expire=JOB_TIMEOUT_SECONDS), None
