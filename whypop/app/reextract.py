"""Re-extraction from the UI: a form of ACE parameters, a background job, progress, cancel.

The job runs as a Dash background callback (diskcache by default, Celery when
``WHYPOP_REDIS_URL`` is set: see :mod:`whypop.background`) that calls the same stage
code as ``whypop extract`` through :mod:`whypop.app.jobs`. One job per run: a second
request (another tab, another worker) joins the running job and follows its progress.
Cancel is cooperative: the job stops at its next progress step, marks itself
cancelled and removes its partial data. In read-only mode none of this is registered,
so the server has no job callback to call.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from whypop.app import ids, jobs
from whypop.app.context import AppContext
from whypop.config import CavMode, ConfigError, PatchMode, choices
from whypop.errors import Cancelled, WhypopError
from whypop.ids import short as _short  # a message never echoes a whole request
from whypop.results import JobProgress
from whypop.store import RunStore

log = logging.getLogger(__name__)

PATCH_MODES = choices(PatchMode)
CAV_MODES = choices(CavMode)
MAX_TEXT = 200  # characters of a text field (a layer name, the segment counts, a genre)
FIELDS = ("layer", "n_clusters", "segments", "random_experiments", "discovery_images", "patch_mode", "cav_mode", "genres")


@functools.lru_cache(maxsize=4)
def model_layers(arch: str, n_classes: int) -> tuple[str, ...]:
    """Layer names of the run's architecture, built on torch's meta device (no weights, no computation).

    Building it for real would run torch's OpenMP code in the process that builds the app
    (gunicorn's master, the Celery worker's main process), and a process forked from that
    thread afterwards (a Celery prefork pool child running the job) hangs in its first
    parallel torch operation.
    """
    import torch

    from whypop.model import build_model, layer_names

    with torch.device("meta"):
        return tuple(layer_names(build_model(arch, max(2, n_classes))))


def parse_form(layer: Any, n_clusters: Any, segments: Any, random_experiments: Any, discovery_images: Any,
               patch_mode: Any, cav_mode: Any, genres: Any) -> dict:
    """The form's values -> job parameters (extract config keys + genres); ConfigError names a bad field."""
    params: dict[str, Any] = {}
    if layer:
        if not isinstance(layer, str) or len(layer) > MAX_TEXT:
            raise ConfigError("layer: pick one of the model's layers")
        params["layer"] = layer
    for name, value, label in (("n_clusters", n_clusters, "clusters"),
                               ("random_experiments", random_experiments, "random experiments"),
                               ("discovery_images", discovery_images, "discovery images")):
        if value is None or value == "":
            raise ConfigError(f"{label}: give a whole number")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or len(str(value)) > 12:
            raise ConfigError(f"{label}: {_short(value)} is not a whole number in range")
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{label}: {_short(value)} is not a whole number") from None
        if number != float(value):
            raise ConfigError(f"{label}: {_short(value)} is not a whole number")
        params[name] = number
    if not isinstance(segments, (str, type(None))) or len(segments or "") > MAX_TEXT:
        raise ConfigError("segments: whole numbers separated by spaces or commas, e.g. 10 15 25")
    try:
        seg = tuple(int(s) for s in (segments or "").replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"segments: {_short(segments)} must be whole numbers separated by spaces or commas") from None
    if not seg:
        raise ConfigError("segments: give at least one SLIC segment count, e.g. 10 15 25")
    params["segments"] = list(seg)
    if not isinstance(patch_mode, str) or patch_mode not in PATCH_MODES:
        raise ConfigError(f"patch mode: {_short(patch_mode)}; allowed are {', '.join(PATCH_MODES)}")
    if not isinstance(cav_mode, str) or cav_mode not in CAV_MODES:
        raise ConfigError(f"CAV mode: {_short(cav_mode)}; allowed are {', '.join(CAV_MODES)}")
    params["patch_mode"], params["cav_mode"] = patch_mode, cav_mode
    if genres is None:
        genres = []
    if not isinstance(genres, list) or len(genres) > 1000 or not all(isinstance(g, str) and len(g) <= MAX_TEXT for g in genres):
        raise ConfigError("genres: pick genres of the run from the list")
    params["genres"] = list(genres)
    return params


def check(store, params: dict) -> None:
    """Validate against the run (config ranges, known genres, the model's layers)."""
    cfg, _ = jobs.validate_params(store, params)
    model = store.current_model()
    if model is None:
        raise WhypopError("this run has no model yet: train one first")
    layers = model_layers(model["arch"], len(store.genres()))
    if cfg.extract.layer not in layers:
        raise ConfigError(f"layer {cfg.extract.layer!r} is not a layer of {model['arch']}")


def layout(ctx: AppContext) -> list:
    """The collapsible form (nothing at all in read-only mode)."""
    if ctx.read_only:
        return []
    store = ctx.data.store
    cfg = ctx.data.config.extract
    model = store.current_model()
    layers: tuple[str, ...] = ()
    if model is not None:
        layers = model_layers(model["arch"], len(store.genres()))
    genres = store.genres()
    field = lambda label, control, width=3: dbc.Col([dbc.Label(label, className="small mb-0"), control], md=width)  # noqa: E731
    form = dbc.Row([
        field("Layer", dcc.Dropdown(id=ids.jobs("layer"), options=[{"label": n, "value": n} for n in layers],
                                    value=cfg.layer if cfg.layer in layers else (layers[-3] if layers else None),
                                    clearable=False, className="small")),
        field("Clusters per genre", dbc.Input(id=ids.jobs("n_clusters"), type="number", value=cfg.n_clusters, min=2, max=200, step=1, size="sm"), 2),
        field("SLIC segments", dbc.Input(id=ids.jobs("segments"), value=" ".join(map(str, cfg.segments)), size="sm"), 2),
        field("Random experiments", dbc.Input(id=ids.jobs("random_experiments"), type="number", value=cfg.random_experiments, min=2, max=500, step=1, size="sm"), 2),
        field("Discovery images", dbc.Input(id=ids.jobs("discovery_images"), type="number", value=cfg.discovery_images, min=2, step=1, size="sm"), 2),
        field("Patch mode", dbc.RadioItems(id=ids.jobs("patch_mode"), options=list(PATCH_MODES), value=cfg.patch_mode, inline=True, className="small")),
        field("CAV mode", dbc.RadioItems(id=ids.jobs("cav_mode"), options=list(CAV_MODES), value=cfg.cav_mode, inline=True, className="small")),
        field("Genres (none = all)", dcc.Dropdown(id=ids.jobs("genres"), options=genres, value=[], multi=True, className="small"), 4),
        dbc.Col([
            dbc.Button("Re-extract", id=ids.jobs("start"), color="primary", size="sm", className="me-2"),
            dbc.Button("Cancel", id=ids.jobs("cancel"), color="secondary", size="sm", outline=True, disabled=True),
        ], md=2, className="align-self-end"),
    ], className="g-2")
    return [dbc.Card([
        dbc.CardHeader(html.Details([
            html.Summary("Re-extract concepts with other parameters", className="small fw-semibold"),
            html.Div([
                form,
                html.Div(id=ids.jobs("message"), className="small mt-2"),
                html.Div(id=ids.jobs("stage"), className="small text-muted mt-1"),
                dbc.Progress(id=ids.jobs("progress"), value=0, max=100, className="mt-1", style={"height": "1.1rem"}),
                html.Div(id=ids.jobs("result"), className="small mt-1"),
            ], className="pt-2"),
        ], id=ids.jobs("details"))),
    ], className="mb-3 whypop-jobs")]


def register(app, ctx: AppContext, manager) -> None:
    """The job callbacks (none in read-only mode)."""
    if ctx.read_only:
        return
    run_root = str(ctx.data.store.root)
    form_states = [State(ids.jobs(f), "value") for f in FIELDS]

    @app.callback(Output(ids.jobs("message"), "children"),
                  [Input(ids.jobs(f), "value") for f in FIELDS], prevent_initial_call=True)
    def validate(*values):
        try:
            check(ctx.data.store, parse_form(*values))
        except WhypopError as exc:
            return dbc.Alert(str(exc), color="warning", className="py-1 px-2 mb-0")
        return ""

    @app.callback(
        Output(ids.jobs("result"), "children"),
        Output(ids.links("jobs-done"), "data"),
        Input(ids.jobs("start"), "n_clicks"),
        *form_states,
        State(ids.links("page"), "data"),
        background=True,
        manager=manager,
        progress=[Output(ids.jobs("progress"), "value"), Output(ids.jobs("stage"), "children")],
        running=[(Output(ids.jobs("start"), "disabled"), True, False),
                 (Output(ids.jobs("cancel"), "disabled"), False, True)],
        prevent_initial_call=True,
    )
    def start(set_progress, n_clicks, *values_and_page):
        *values, _page = values_and_page  # the page token only makes Dash's result key unique
        return start_job(run_root, n_clicks, tuple(values), set_progress)

    @app.callback(Output(ids.jobs("stage"), "children", allow_duplicate=True),
                  Input(ids.jobs("cancel"), "n_clicks"), prevent_initial_call=True)
    def cancel(n_clicks):
        store = RunStore(run_root)  # the panels' store is read-only
        active = [j for j in store.jobs() if j["status"] in jobs.ACTIVE]
        for j in active:
            jobs.request_cancel(store, j["job_id"])
        return "cancelling: the job stops at its next step" if active else "no job is running"


def start_job(run_root: str, n_clicks: Any, values: tuple, set_progress) -> tuple:
    """Body of the background callback: validate, claim (or join), run, report."""
    if not n_clicks:
        return no_update, no_update
    store = RunStore(run_root)
    try:
        params = parse_form(*values)
        check(store, params)
    except WhypopError as exc:
        return dbc.Alert(f"not started: {exc}", color="warning", className="py-1 px-2 mb-0"), no_update

    def report(progress: JobProgress) -> None:
        pct = 100 * progress.fraction
        set_progress((round(pct), f"{progress.text} ({pct:.0f}% of the job)"))

    claim = jobs.claim(store, "extract", params, started_by="dashboard")
    try:
        if claim.created:
            report(JobProgress("starting"))
            extraction_id = jobs.run_extraction_job(store, claim.job_id, report=report)
        else:
            report(JobProgress("joined the running job"))
            job = jobs.wait(store, claim.job_id, report=report)
            if job["status"] != "complete":
                return dbc.Alert(f"the running job ended: {job['status']} ({job.get('error') or ''})",
                                 color="secondary", className="py-1 px-2 mb-0"), no_update
            extraction_id = job["extraction_id"]
    except Cancelled:
        return dbc.Alert("cancelled: the previous extractions are untouched", color="secondary",
                         className="py-1 px-2 mb-0"), no_update
    except WhypopError as exc:
        return dbc.Alert(f"failed: {exc}", color="danger", className="py-1 px-2 mb-0"), no_update
    except Exception as exc:  # noqa: BLE001 - shown to the user; recorded in the job row
        log.exception("extraction job failed")
        return dbc.Alert(f"failed: {type(exc).__name__}: {exc}", color="danger", className="py-1 px-2 mb-0"), no_update
    set_progress((100, "done"))
    return (dbc.Alert(f"extraction {extraction_id} is complete: pick it in the extraction menu above",
                      color="success", className="py-1 px-2 mb-0"), extraction_id)
