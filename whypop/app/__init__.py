"""The dashboard: ``create_app(store, ...)`` builds a Dash app over one run store.

Five linked panels (concept importance, concept map, concept images, features radar,
concepts within a song), each a module with its layout and callbacks; figures come from
pure builders in :mod:`whypop.app.figures`; images and audio from routes in
:mod:`whypop.app.routes`. Every callback is registered on the app built here (no global
app), so one process can build several apps, e.g. under different prefixes on one Flask
server. The panels only read the run, except that concept audio (:mod:`whypop.listen`) is
cached under its extraction once rendered and song uploads (panel 5) are written under the
run's ``uploads/`` directory, never over its data.

Embedding::

    app = create_app(RunStore("runs/demo"), prefix="/tools/whypop/", server=existing_flask_app)

Behind a proxy that strips or adds a path, leave ``prefix`` as None and set Dash's
``DASH_REQUESTS_PATHNAME_PREFIX`` / ``DASH_ROUTES_PATHNAME_PREFIX``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from whypop.resources import data_dir

if TYPE_CHECKING:  # pragma: no cover
    import dash
    from flask import Flask

    from whypop.config import ServeConfig
    from whypop.store import RunStore

ASSETS = data_dir("assets")  # the checkout's assets/, or the copy a built distribution installs

__all__ = ["create_app", "normalise_prefix", "protect", "serve_settings", "ASSETS"]


def normalise_prefix(prefix: str | None) -> str | None:
    """'/x', 'x/', '/x/' -> '/x/'; '' or '/' -> '/'; None stays None (Dash's environment variables decide)."""
    if prefix is None:
        return None
    parts = [p for p in str(prefix).strip().split("/") if p]
    return "/" + "".join(p + "/" for p in parts)


def create_app(
    store: "RunStore | str | os.PathLike",
    prefix: str | None = None,
    server: "Flask | bool | None" = None,
    read_only: bool | None = None,
    compress: bool = True,
    allow_upload: bool | None = None,
    title: str = "Why Pop?",
) -> "dash.Dash":
    """Build the dashboard for one run.

    ``prefix``: URL path the app lives under (both for routes and requests); None leaves it
    to Dash's ``DASH_*_PATHNAME_PREFIX`` variables (default "/"). ``server``: an existing
    Flask app to attach to (None creates one). ``read_only``: hide the re-extraction form
    and register no job callback (None: ``WHYPOP_READ_ONLY`` or the run's
    ``serve.read_only``); the panels never write. ``allow_upload``: accept song uploads to
    explain in read-only mode (None: ``WHYPOP_ALLOW_UPLOAD`` or ``serve.allow_upload``; a
    writable dashboard always accepts them, stored under ``<run>/uploads/``). ``compress``: gzip/brotli
    responses (flask-compress), which keeps the first page load small.
    """
    import dash
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    from whypop.app import clusters, download, examples, explain, export, ids, importance, links, radar, reextract, song
    from whypop.background import make_manager
    from whypop.app.context import AppContext
    from whypop.app.data import AppData
    from whypop.app.routes import register_routes
    from whypop.store import RunStore

    if not isinstance(store, RunStore):
        store = RunStore(store, read_only=True)  # the panels only read; jobs open their own store
    kwargs = {}
    prefix = normalise_prefix(prefix)
    if prefix is not None:
        kwargs["url_base_pathname"] = prefix
    app = dash.Dash(
        __name__, server=True if server is None else server, assets_folder=str(ASSETS), title=title,
        update_title=None, compress=compress, serve_locally=True, **kwargs,
    )
    secret = os.environ.get("WHYPOP_SECRET_KEY") or os.environ.get("SECRET_KEY")
    if secret or not app.server.secret_key:
        # job handles are signed: every worker must share the key (gunicorn preloads the app)
        app.server.secret_key = secret or os.urandom(24).hex()
    data = AppData(store)
    if read_only is None:
        read_only = os.environ.get("WHYPOP_READ_ONLY", "").lower() in ("1", "true", "yes") or data.config.serve.read_only
    serve_cfg = data.config.serve
    if allow_upload is None:
        allow_upload = os.environ.get("WHYPOP_ALLOW_UPLOAD", "").lower() in ("1", "true", "yes") or serve_cfg.allow_upload
    allow_upload = bool(allow_upload) or not read_only
    ctx = AppContext(data=data, requests_prefix=app.config.requests_pathname_prefix, read_only=read_only,
                     allow_upload=allow_upload, upload_max_mb=serve_cfg.upload_max_mb)
    manager, celery_app = (None, None) if read_only and not allow_upload else make_manager(store.root)

    def header():
        return dbc.Row([
            dbc.Col(html.Div([html.H1("Why Pop?", className="h4 mb-0 me-3"),
                              html.Span("what the genre network listens for", className="text-muted small")],
                             className="d-flex align-items-baseline flex-wrap"), md=4),
            dbc.Col(html.Div(id=ids.header("model"), className="small"), md=3, className="align-self-center"),
            dbc.Col(dcc.Dropdown(id=ids.header("extraction"), options=data.extraction_options(), clearable=False,
                                 placeholder="no complete extraction", className="small"), md=3),
            dbc.Col(download.layout(ctx), md=2),
        ], className="g-2 py-2 align-items-center")

    def serve_layout():
        return dbc.Container([
            *links.layout(ctx),
            header(),
            *reextract.layout(ctx),
            dbc.Row([dbc.Col(importance.layout(ctx), lg=7), dbc.Col(clusters.layout(ctx), lg=5)], className="g-3 mb-3"),
            dbc.Row([dbc.Col(examples.layout(ctx), lg=6), dbc.Col(radar.layout(ctx), lg=6)], className="g-3 mb-3"),
            dbc.Row([dbc.Col(song.layout(ctx), lg=12)], className="g-3 mb-3"),
        ], fluid=True, className="whypop")

    app.layout = serve_layout
    for module in (links, importance, clusters, examples, radar, song, export):
        module.register(app, ctx)
    reextract.register(app, ctx, manager)
    download.register(app, ctx, manager)
    explain.register(app, ctx, manager, allow_upload, cache=allow_upload)
    explain.register_routes(app.server, app.config.routes_pathname_prefix, ctx, allow_upload,
                            serve_cfg.upload_max_mb, serve_cfg.upload_max_seconds)
    app.whypop_celery = celery_app
    register_routes(app.server, app.config.routes_pathname_prefix, data, explain_cache=allow_upload)
    protect(app.server, app.config.routes_pathname_prefix, serve_settings(data.config))
    _refuse_malformed_callbacks(app)
    app.whypop_data = data  # for tests and embedding code
    _warm_up(app)
    return app


def serve_settings(config) -> "ServeConfig":
    """The run's ``[serve]`` settings with ``WHYPOP_CONFIG`` overrides (e.g. ``serve.frame_ancestors=*``)."""
    from whypop.config import merge, parse_overrides, split_overrides

    env = os.environ.get("WHYPOP_CONFIG")
    if env:
        config = merge(config, parse_overrides(split_overrides(env)), origin="WHYPOP_CONFIG")
    config.serve.validate()
    return config.serve


def protect(server: "Flask", prefix: str, settings: "ServeConfig") -> None:
    """Cap request bodies and add security headers for every request under ``prefix``.

    Bodies: ``settings.max_request_bytes`` (Dash callbacks included: they are JSON POSTs).
    Flask refuses a larger body with 413 before reading it. A view that accepts uploads
    raises the cap for its own requests: ``flask.request.max_content_length = N`` before it
    reads the body. Headers: ``X-Content-Type-Options: nosniff`` and a
    ``Content-Security-Policy`` of ``frame-ancestors`` from ``settings.frame_ancestors``.
    Other paths of a shared (portal) server are left alone.
    """
    from flask import request

    limit = int(settings.max_request_bytes)
    csp = f"frame-ancestors {settings.frame_ancestors.strip()}"

    def mine() -> bool:
        return request.path.startswith(prefix) or request.path + "/" == prefix

    @server.before_request
    def cap_body():
        if mine():
            request.max_content_length = limit

    @server.after_request
    def headers(response):
        if mine():
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Content-Security-Policy", csp)
        return response


def _refuse_malformed_callbacks(app: "dash.Dash") -> None:
    """A callback request whose shape is not one the page sends gets 400, not Dash's 500.

    Only the envelope is checked (a known server-side output, lists of inputs and state
    of the callback's lengths, each an id and a property); the values are the callbacks'
    own business, checked there against the run.
    """
    from flask import abort, request

    path = app.config.routes_pathname_prefix + "_dash-update-component"

    @app.server.before_request
    def check_envelope():
        if request.path != path or request.method != "POST":
            return None
        problem = malformed_callback(request.get_json(silent=True), app.callback_map)
        if problem:
            abort(400, description=f"malformed callback request: {problem}")
        return None


def malformed_callback(body: object, callback_map: dict) -> str | None:
    """Why ``body`` is not a callback request of this app (None when it is one)."""
    if not isinstance(body, dict):
        return "not a JSON object"
    output = body.get("output")
    spec = callback_map.get(output) if isinstance(output, str) else None
    if spec is None or spec.get("callback") is None:
        return "no server-side callback has that output"
    for key, want in (("inputs", len(spec["inputs"])), ("state", len(spec["state"]))):
        items = body.get(key, [])
        if not isinstance(items, list) or len(items) != want:
            return f"{key}: expected a list of {want}"
        if not all(isinstance(i, dict) and "id" in i and isinstance(i.get("property"), str) for i in items):
            return f"{key}: each needs an id and a property"
    if not isinstance(body.get("outputs"), (dict, list)):
        return "outputs: expected an object or a list"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "changedPropIds: expected a list of strings"
    return None


def _warm_up(app: "dash.Dash") -> None:
    """Do Dash's first-request setup now, so its script paths are registered before real traffic.

    Dash does that setup on a worker's first request behind a flag that is set before
    the work is done: under a threaded worker (gunicorn gthread) the browser's parallel
    script requests then race it and some fail with "... is not a registered library"
    (HTTP 500, a blank page). Built before gunicorn forks (``preload_app``), every worker
    starts with the setup done. (Not through a request: Flask would then refuse further
    apps on a shared server.)
    """
    setup = getattr(app, "_setup_server", None)
    if setup is None:  # pragma: no cover - a Dash without it sets itself up per request
        return
    with app.server.test_request_context(app.config.routes_pathname_prefix):
        setup()
