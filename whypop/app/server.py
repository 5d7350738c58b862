"""The WSGI entry point for gunicorn: ``gunicorn "whypop.app.server:create_server()"``.

Environment: ``WHYPOP_RUN`` (required) the run directory; ``WHYPOP_PREFIX`` the URL path
to serve under (default: Dash's ``DASH_*_PATHNAME_PREFIX`` variables, else "/");
``WHYPOP_SECRET_KEY`` the Flask secret (set it when running several workers or hosts).
"""

from __future__ import annotations

import os

from whypop.app import create_app
from whypop.env import setup_environment
from whypop.errors import StoreError
from whypop.store import RunStore


def create_dash_app():
    """The Dash app for the run named by ``WHYPOP_RUN`` (also built by Celery workers)."""
    setup_environment()
    run = os.environ.get("WHYPOP_RUN")
    if not run:
        raise StoreError("set WHYPOP_RUN to the run directory to serve (e.g. WHYPOP_RUN=runs/demo)")
    return create_app(RunStore(run, read_only=True), prefix=os.environ.get("WHYPOP_PREFIX") or None)


def create_server():
    """The Flask server of the dashboard for the run named by ``WHYPOP_RUN``."""
    return create_dash_app().server
