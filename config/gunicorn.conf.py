"""gunicorn settings for the dashboard (used by the Procfile).

    WHYPOP_RUN=runs/demo gunicorn -c config/gunicorn.conf.py "whypop.app.server:create_server()"

Environment: PORT (default 8050), WHYPOP_RUN (required), WHYPOP_PREFIX, WHYPOP_SECRET_KEY
(share it between workers and hosts), WEB_CONCURRENCY (workers, default 2),
WHYPOP_THREADS (threads per worker, default 4), WHYPOP_BIND (overrides host:port),
WHYPOP_CONTROL_SOCKET (a path: turns on gunicorn's control socket for gunicornc).
"""

import os

bind = os.environ.get("WHYPOP_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads overlap the waits (SQLite reads, PNG and audio files); the work is GIL-bound,
# so a few per worker is enough.
worker_class = "gthread"
threads = int(os.environ.get("WHYPOP_THREADS", "4"))
timeout = 60
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then (background job processes forked by a worker end with it).
max_requests = 2000
max_requests_jitter = 200
# Build the app once in the master: workers fork with the layout, figures' imports and
# caches warm. Each worker opens its own SQLite connection (the store checks the pid).
preload_app = True
# gunicorn 25+ opens a control socket for gunicornc at one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): two dashboards would share
# it, and read-only homes in containers make it fail. Off unless a path is given.
if os.environ.get("WHYPOP_CONTROL_SOCKET"):
    control_socket = os.environ["WHYPOP_CONTROL_SOCKET"]
else:
    control_socket_disable = True
accesslog = os.environ.get("WHYPOP_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("WHYPOP_LOG_LEVEL", "info")
