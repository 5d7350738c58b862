"""The "download report" button: builds the HTML report of the shown extraction as a job, then downloads it.

The same file as ``whypop report`` (:func:`whypop.app.report.build_report`). With a job
manager (the dashboard's diskcache or Celery, see :mod:`whypop.background`) it runs as a
background callback with its progress under the button, and the file goes to
``<run>/cache/reports/``. A read-only dashboard writes nothing into the run: the file
goes to the temporary directory and the audio clips (rendered into the run's cache)
stay out; without a job manager it is built in the request. When the file is
written, a second callback sends it to the browser (``dcc.Download``). Only the
extraction id travels through the browser: the server derives the file's path itself.
A report already built for the same extraction, model and code is sent again at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from whypop import __version__
from whypop.app import ids
from whypop.app.context import AppContext, as_id
from whypop.errors import NotFound, WhypopError
from whypop.progress import ProgressEvent

log = logging.getLogger(__name__)


def layout(ctx: AppContext):
    """The button, its status line and the download sink."""
    return html.Div([
        dbc.Button("Download report", id=ids.report("start"), size="sm", color="secondary", outline=True,
                   title="One HTML file of this extraction that opens without a server"),
        html.Div(id=ids.report("progress"), className="small text-muted"),
        html.Div(id=ids.report("status"), className="small"),
        dcc.Store(id=ids.report("ready")),
        dcc.Download(id=ids.report("download")),
    ], className="text-end")


def download_name(store, extraction_id: int) -> str:
    return f"{store.root.name}-extraction-{int(extraction_id)}.html"


def report_path(store, extraction_id: int, read_only: bool, audio: bool = True) -> Path:
    """Where the dashboard writes the report of an extraction (never a path from the browser).

    The name carries a digest of the extraction's record, its model and the code
    version: a report already built for the same content is downloaded again without
    being rebuilt, and anything stored later (faithfulness results, say) makes a new one.
    """
    record = store.extraction(extraction_id)  # NotFound for an unknown or unfinished extraction
    model = next((m for m in store.models() if m["model_id"] == record.get("model_id")), None)
    key = hashlib.sha1(json.dumps([record, model, __version__, audio], sort_keys=True, default=str).encode()).hexdigest()[:12]
    if read_only:
        tag = hashlib.sha1(str(store.root.resolve()).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"whypop-reports-{tag}"
    else:
        folder = store.root / "cache" / "reports"
    return folder / f"{store.root.name}-extraction-{int(extraction_id)}-{key}.html"


def build(run_root: str, read_only: bool, extraction_id: Any, set_progress: Callable[[tuple], None] | None,
          audio: bool = True) -> tuple:
    """Body of the job: (status children, ready data). Never raises for what a user can cause.

    ``read_only``: write to the temporary directory, never into the run; ``audio``: with the clips.
    """
    from whypop.app.report import build_report
    from whypop.store import RunStore

    eid = as_id(extraction_id)
    if eid is None:
        return dbc.Alert("no extraction is shown: nothing to report", color="warning", className="py-1 px-2 mb-0"), no_update
    store = RunStore(run_root)
    last = [-1]

    def progress(event: ProgressEvent) -> None:
        percent = round(100 * event.fraction)
        if set_progress is not None and percent != last[0]:  # each call is a write to the job cache
            last[0] = percent
            set_progress((f"building the report: {event.label} {percent}%",))

    try:
        path = report_path(store, eid, read_only, audio)
        if path.is_file():  # built before for the same content
            return f"report of extraction {eid}: {path.stat().st_size / 1e6:.1f} MB", {"extraction": eid}
        result = build_report(store, path, eid, audio=audio, progress=progress)
    except (NotFound, WhypopError) as exc:
        return dbc.Alert(f"no report: {exc}", color="warning", className="py-1 px-2 mb-0"), no_update
    except Exception as exc:  # noqa: BLE001 - shown to the user
        log.exception("report of extraction %s failed", eid)
        return dbc.Alert(f"report failed: {type(exc).__name__}: {exc}", color="danger", className="py-1 px-2 mb-0"), no_update
    finally:
        store.close()
    size = result.file.total_bytes / 1e6
    if set_progress is not None:
        set_progress(("",))
    return f"report of extraction {eid}: {size:.1f} MB", {"extraction": eid}


def register(app, ctx: AppContext, manager) -> None:
    run_root = str(ctx.data.store.root)
    read_only = ctx.read_only
    outputs = (Output(ids.report("status"), "children"), Output(ids.report("ready"), "data"))
    inputs = (Input(ids.report("start"), "n_clicks"), State(ids.links("extraction"), "data"))
    if manager is not None:  # a job: with the clips, unless the run is read-only
        @app.callback(
            *outputs, *inputs, State(ids.links("page"), "data"), background=True, manager=manager,
            prevent_initial_call=True, progress=[Output(ids.report("progress"), "children")],
            running=[(Output(ids.report("start"), "disabled"), True, False)],
        )
        def start(set_progress, n_clicks, extraction_id, _page):  # the page token only keys Dash's result
            if not n_clicks:
                return no_update, no_update
            return build(run_root, read_only, extraction_id, set_progress, audio=not read_only)
    else:  # no job manager (read-only): in the request, without the clips (a worker's timeout)
        @app.callback(*outputs, *inputs, prevent_initial_call=True,
                      running=[(Output(ids.report("start"), "disabled"), True, False)])
        def start_here(n_clicks, extraction_id):
            return build(run_root, True, extraction_id, None, audio=False) if n_clicks else (no_update, no_update)

    @app.callback(Output(ids.report("download"), "data"), Input(ids.report("ready"), "data"), prevent_initial_call=True)
    def send(ready):
        eid = as_id((ready or {}).get("extraction")) if isinstance(ready, dict) else None
        if eid is None:
            return no_update
        try:
            path = report_path(ctx.data.store, eid, read_only, audio=manager is not None and not read_only)
        except NotFound:
            return no_update
        if not path.is_file():
            return no_update
        return dcc.send_file(str(path), filename=download_name(ctx.data.store, eid), type="text/html")
