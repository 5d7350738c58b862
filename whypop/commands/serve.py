"""`whypop serve`: the dashboard for one run on Dash's development server.

For production use gunicorn (see the Procfile and ``config/gunicorn.conf.py``), which
serves the same app through ``whypop.app.server:create_server()``.
"""

from __future__ import annotations

import argparse
import logging
import os

from whypop.config import Config, resolve_config
from whypop.store import RunStore

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory")
    p.add_argument("--port", type=int, default=None, help="port (default: $PORT, else the config's serve.port, 8050)")
    p.add_argument("--host", default=None, help="address to bind (default: the config's serve.host, 127.0.0.1)")
    p.add_argument("--prefix", default=None, metavar="/PATH/",
                   help="serve under this URL path, e.g. /tools/whypop/ (default: the config's serve.prefix)")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader and dev tools)")


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.run, read_only=True)  # the panels only read; jobs open their own store
    return serve(store, None, host=args.host, port=args.port, prefix=args.prefix, debug=args.debug)


def serve(store: RunStore, cfg: Config | None = None, host: str | None = None, port: int | None = None, prefix: str | None = None,
          debug: bool = False) -> int:
    """Serve the dashboard for ``store`` until interrupted (also used by `whypop demo`).

    Unset values come from ``$PORT`` and the run's ``[serve]`` configuration.
    """
    from whypop.app import create_app  # dash loads only when serving

    settings = (cfg if cfg is not None else resolve_config(stored=store.get_meta("config"))).serve
    port = port or int(os.environ.get("PORT") or settings.port)
    host = host or settings.host
    prefix = prefix if prefix is not None else settings.prefix
    app = create_app(store, prefix=prefix)
    log.info("serving %s at http://%s:%d%s", store.root, host, port, app.config.requests_pathname_prefix)
    # the version check of Dash's dev tools calls out to the internet: keep the page offline
    app.run(host=host, port=port, debug=debug, dev_tools_disable_version_check=True)
    return 0
