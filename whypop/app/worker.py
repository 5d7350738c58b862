"""The Celery worker entry point: ``celery -A whypop.app.worker:celery_app worker``.

Dash registers each background callback as a Celery task when the app is built, under a
name derived from the callback's source, so the worker builds the same app as the web
process (same code, same ``WHYPOP_RUN``, ``WHYPOP_REDIS_URL`` set) and exposes its
Celery application. The worker may run on another machine that mounts the run store.
"""

from __future__ import annotations

import os

from whypop.errors import ConfigError

if not os.environ.get("WHYPOP_REDIS_URL"):
    raise ConfigError("the Celery worker needs WHYPOP_REDIS_URL (e.g. redis://localhost:6379/0)")

from whypop.app.server import create_dash_app  # noqa: E402

app = create_dash_app()
celery_app = app.whypop_celery
