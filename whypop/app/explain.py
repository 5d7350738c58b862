"""Panel 5's explanations: any track of the run, or an uploaded song, explained with the concepts.

- **Picker.** Panel 5's dropdown searches every prepared track of the run on the server
  (the browser never receives thousands of options): :func:`search_tracks`.
- **A track that is not a discovery song** of the extraction, or an **uploaded song**, is
  explained by :mod:`pipelines.explain` (prediction, concepts placed by the placement
  rule, influence and probability drop). That takes seconds, so it runs as a background
  job (the dashboard's job manager, as re-extraction) with a progress bar; the result
  fills panel 5's spectrogram (the concepts' regions outlined), its audio player (the
  playhead follows), a bar per genre, and the ranked concepts.
- **Uploads** go to a plain Flask route, ``POST <prefix>upload`` (raw body, the file name
  in ``X-Filename``), streamed to disk in chunks with the size limit enforced while
  reading; the callback receives only the upload's id (its SHA-256). Files are kept under
  ``<run>/uploads/<sha256>/`` (:func:`pipelines.explain.store_upload`): the same file is
  stored and explained once per extraction, and nothing of the run's own data is written.
  Refused, with a message the panel shows: uploads on a read-only dashboard (unless
  ``serve.allow_upload = true``), other file types, empty files, files over
  ``serve.upload_max_mb``, files that do not decode as audio, songs longer than
  ``serve.upload_max_seconds``. A file that decodes at first but breaks later gets the
  explanation's error message. Never a 500.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from flask import Flask, Response, abort, request, send_file

from whypop.app import figures, ids
from whypop.app.context import AppContext
from whypop.app.data import Placement
from whypop.errors import InputError, NotFound, WhypopError

log = logging.getLogger(__name__)

UPLOAD_CLASS = "whypop-upload-button"  # assets/whypop.js posts the chosen file to data-url
MAX_OPTIONS = 50  # picker options sent per search
TOP_DRAWN = 6  # concepts outlined on the spectrogram
CHUNK = 1 << 16


# -- the picker: every track, searched on the server ------------------------------------------


@functools.lru_cache(maxsize=8)
def _track_table(root: str, stamp: tuple) -> tuple[tuple[str, str, str, str], ...]:
    """(track_id, label, genre, search text) of every prepared track (cached by the table's stamp)."""
    from whypop.store import RunStore

    store = RunStore(root, read_only=True)
    out = []
    for t in store.tracks(status="ok"):
        name = t.name
        out.append((t.track_id, name, t.genre, f"{name} {t.genre} {t.track_id} {t.artist}".lower()))
    return tuple(out)


def track_table(store) -> tuple[tuple[str, str, str, str], ...]:
    row = store.db.execute("SELECT COUNT(*), MAX(prepared_at) FROM tracks WHERE status='ok'").fetchone()
    return _track_table(str(store.root), (row[0], row[1]))


def search_tracks(ctx: AppContext, query: str | None, extraction_id: int | None, current: str | None = None,
                  limit: int = MAX_OPTIONS) -> list[dict]:
    """Picker options matching ``query`` (every word, anywhere in name, genre or id); the current song first."""
    table = track_table(ctx.data.store)
    discovery: set[str] = set()
    if extraction_id is not None:
        try:
            discovery = {t for ts in ctx.data.view(extraction_id).discovery.values() for t in ts}
        except NotFound:
            discovery = set()
    words = [w for w in str(query or "").lower().split() if w][:8]
    out, seen = [], set()

    def option(tid: str, name: str, genre: str) -> dict:
        mark = " · discovery song" if tid in discovery else ""
        return {"label": f"{name} ({genre}){mark}", "value": tid}

    if current:
        for tid, name, genre, _ in table:
            if tid == current:
                out.append(option(tid, name, genre))
                seen.add(tid)
                break
    for tid, name, genre, text in table:
        if len(out) >= limit:
            break
        if tid in seen or not all(w in text for w in words):
            continue
        out.append(option(tid, name, genre))
        seen.add(tid)
    return out


def is_discovery(ctx: AppContext, extraction_id: int, track_id: str) -> bool:
    try:
        return any(track_id in ts for ts in ctx.data.view(extraction_id).discovery.values())
    except NotFound:
        return False


# -- layout pieces ---------------------------------------------------------------------------------


def upload_controls(ctx: AppContext, allowed: bool, max_mb: float) -> Any:
    if not allowed:
        return html.Span("uploads are off on this read-only dashboard (serve.allow_upload)",
                         className="small text-muted", id=ids.song("upload-off"))
    return html.Div([
        html.Button("Upload a song…", className=f"{UPLOAD_CLASS} btn btn-outline-primary btn-sm",
                    id=ids.song("upload-button"), title=f"mp3, ogg, flac or wav, up to {max_mb:g} MB",
                    **{"data-url": ctx.url("upload"), "data-max": str(int(max_mb * 1024 * 1024))}),
        dcc.Store(id=ids.song("upload")),
    ], className="d-flex align-items-center gap-2")


def explanation_area() -> list:
    return [
        html.Div(id=ids.song("message"), className="small mt-1"),
        html.Div(id=ids.song("stage"), className="small text-muted"),
        dbc.Progress(id=ids.song("progress"), value=0, max=100, className="mt-1 d-none", style={"height": "0.9rem"}),
        dcc.Store(id=ids.song("request")),
        dcc.Store(id=ids.song("job")),  # the requests that need work: what the (background) explanation takes
        html.Div(id=ids.song("explanation"), className="mt-2"),
    ]


# -- figures ----------------------------------------------------------------------------------------


def prediction_figure(probabilities: dict[str, float], predicted: str, height_px: float = 40) -> go.Figure:
    genres = sorted(probabilities, key=lambda g: probabilities[g])
    colors = figures.genre_colors(list(probabilities))
    fig = go.Figure(go.Bar(
        x=[probabilities[g] for g in genres], y=[figures._esc(g) for g in genres], orientation="h",
        marker=dict(color=[colors[g] for g in genres], line=dict(color=["#000" if g == predicted else "rgba(0,0,0,0)"
                                                                      for g in genres], width=2)),
        text=[f"{probabilities[g]:.1%}" for g in genres], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.1%}<extra></extra>", meta="prediction",
    ))
    fig.update_layout(template="none", height=max(140, height_px + 22 * len(genres)), font=figures.FONT,
                      margin=dict(l=90, r=40, t=24, b=30), showlegend=False, dragmode=False,
                      title=dict(text="prediction: probability per genre", font=dict(size=12), x=0),
                      xaxis=dict(range=[0, 1.1], tickformat=".0%", fixedrange=True),
                      yaxis=dict(fixedrange=True))
    return fig


def explained_listen_source(ctx: AppContext, e, req: dict) -> tuple[str | None, str]:
    """(the player's source, a caption note) for an explained song and the listen switch in ``req``.

    "solo" / "without" with a selected concept play the song with only (or without) the
    segments the explanation placed the concept on (the regions outlined); ``None`` plays
    the song itself.
    """
    listen, selected = req.get("listen"), req.get("concept")
    if listen not in ("solo", "without"):
        return None, ""
    if not isinstance(selected, int) or isinstance(selected, bool):
        return None, " · select a concept (panel 1, 2 or 3) to solo or mute it; playing the song"
    try:
        name = ctx.data.view(int(req["extraction"])).concept(selected).name
    except (NotFound, KeyError, ValueError):
        return None, ""
    if not any(c.concept_id == selected for c in e.concepts):
        return None, f" · {name} is not placed in this song: playing the song"
    what = "only" if listen == "solo" else "without"
    eid = int(req["extraction"])
    if req["kind"] == "upload":
        url = ctx.listen_upload_url(eid, selected, str(req["id"]), listen)
    else:
        url = ctx.listen_song_url(eid, selected, str(req["id"]), listen)
    return url, f" · playing the song {what} {name}'s regions (where the explanation places it)"


def explanation_view(ctx: AppContext, e, image_url: str, audio_url: str, image_shape: tuple[int, int]):
    """(song figure, audio src, caption, explanation children) of a SongExplanation."""
    placements = []
    for rank, c in enumerate(e.concepts[:TOP_DRAWN]):
        label = f"{rank + 1}. {c.name}"
        for box in c.boxes:
            placements.append(Placement(c.concept_id, label, c.genre, rank, tuple(box), None))
    fig = figures.song_figure(image_url, placements, ctx.data.audio, image_shape, height_px=360)
    p = e.prediction
    truth = f", labelled {e.genre}" if e.genre else ""
    caption = (f"{e.song}{truth} · predicted {p.genre} ({p.probabilities[p.genre]:.0%}) · {len(e.concepts)} concepts "
               f"of extraction {e.extraction_id} found in its {e.n_segments} segments; the top {TOP_DRAWN} outlined")
    rows = [html.Tr([html.Th("#"), html.Th("concept"), html.Th("genre"),
                     html.Th(f"influence on {p.genre}", title="directional derivative of the predicted genre's logit "
                             "along the concept's CAV at this song"),
                     html.Th("probability drop", title="p(predicted) lost when the concept's regions are filled "
                             "with the training mean"),
                     html.Th("where (s)")])]
    for i, c in enumerate(e.concepts[:15], 1):
        where = ", ".join(f"{r.start_s:.1f}–{r.end_s:.1f}" for r in c.regions[:4]) + (" …" if len(c.regions) > 4 else "")
        flags = f" ({', '.join(c.flags)})" if c.flags else ""
        rows.append(html.Tr([html.Td(str(i)), html.Td(c.name + flags), html.Td(c.genre),
                             html.Td(f"{c.influence:+.4f}"), html.Td(f"{c.probability_drop:+.3f}"), html.Td(where)]))
    children = dbc.Row([
        dbc.Col(dcc.Graph(id=ids.song("prediction"), figure=prediction_figure(p.probabilities, p.genre),
                          config={"displayModeBar": False}), md=4),
        dbc.Col([html.Table(rows, className="table table-sm small mb-0 whypop-explanation"),
                 html.Div("Influence and probability drop can disagree: the first is the network's local "
                          "sensitivity along the concept's direction, the second what removing the concept's "
                          "regions does.", className="small text-muted")], md=8),
    ], className="g-2 whypop-explained")
    return fig, audio_url, caption, children


# -- the computation, cached per process ---------------------------------------------------------------


_CONTEXTS: dict[tuple[str, int], Any] = {}
_CONTEXT_LOCK = threading.Lock()


def explain_context(run_root: str, extraction_id: int, cache: bool, progress):
    import pipelines.explain as pe
    from whypop.store import RunStore

    key = (run_root, int(extraction_id))
    with _CONTEXT_LOCK:
        hit = _CONTEXTS.get(key)
        if hit is None:
            hit = pe.context(RunStore(run_root, read_only=True), extraction_id, "cpu", progress, cache=cache)
            _CONTEXTS.clear()  # one extraction's model and bank at a time
            _CONTEXTS[key] = hit
    return hit


_TRACK_RESULTS: dict[tuple[str, int, str], Any] = {}  # explanations of the run's tracks, this process


def compute(run_root: str, req: dict, cache: bool, progress) -> "Any":
    """The SongExplanation a request asks for ({kind: track|upload, id, extraction})."""
    import pipelines.explain as pe
    from whypop.store import RunStore

    eid = int(req["extraction"])
    if req["kind"] == "track":
        key = (run_root, eid, str(req["id"]))
        hit = _TRACK_RESULTS.get(key)
        if hit is None:
            ctx = explain_context(run_root, eid, cache, progress)
            hit, _, _ = pe.explain_track(ctx, str(req["id"]), progress)
            while len(_TRACK_RESULTS) >= 64:
                _TRACK_RESULTS.pop(next(iter(_TRACK_RESULTS)))
            _TRACK_RESULTS[key] = hit
        return hit
    hit = pe.cached_upload(RunStore(run_root, read_only=True), str(req["id"]), eid)
    if hit is not None:
        return hit
    ctx = explain_context(run_root, eid, cache, progress)
    return pe.explain_upload(ctx, str(req["id"]), progress)


# -- routes ------------------------------------------------------------------------------------------


def register_routes(server: Flask, prefix: str, ctx: AppContext, allowed: bool, max_mb: float, max_seconds: float) -> None:
    """``POST upload``, and the uploads' spectrogram and audio (``upload/<sha256>/spectrogram.png``, ``.../audio``)."""
    store = ctx.data.store
    limit = int(max_mb * 1024 * 1024)

    def refuse(message: str, status: int = 400) -> Response:
        return Response(json.dumps({"error": message}), status=status, mimetype="application/json")

    def upload() -> Response:
        import pipelines.explain as pe

        # this route alone takes bodies above serve.max_request_bytes: raise the app-wide cap
        # (set for every request by whypop.app.protect) to the upload limit, before anything reads the body
        request.max_content_length = limit + CHUNK
        if not allowed:
            return refuse("uploads are off: this dashboard is read-only (set serve.allow_upload = true to allow "
                          "them)", 403)
        name = unquote(request.headers.get("X-Filename", "") or "")[:200].replace("/", "_").replace("\\", "_")
        if not name:
            return refuse("no file name given (X-Filename)")
        if Path(name).suffix.lower() not in pe.AUDIO_SUFFIXES:
            return refuse(f"{name}: not a supported audio file; upload one of {', '.join(pe.AUDIO_SUFFIXES)}")
        if request.content_length is not None and request.content_length > limit:
            return refuse(f"{name} is {request.content_length / 1e6:.1f} MB; the limit is {max_mb:g} MB "
                          f"(serve.upload_max_mb)", 413)
        tmp_dir = store.root / pe.UPLOADS / ".incoming"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, suffix=Path(name).suffix.lower())
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                stream = request.stream
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge(f"{name} is over the upload limit of {max_mb:g} MB (serve.upload_max_mb)")
                    fh.write(chunk)
            if size == 0:
                raise InputError(f"{name} is empty (0 bytes)")
            _check_audio(tmp, name, max_seconds)
            digest = pe.store_upload(store, tmp, name)
        except WhypopError as exc:
            Path(tmp).unlink(missing_ok=True)
            return refuse(str(exc), 413 if isinstance(exc, _TooLarge) else 400)
        except Exception as exc:  # noqa: BLE001 - a broken request must not become a 500
            Path(tmp).unlink(missing_ok=True)
            log.warning("upload %s failed: %s: %s", name, type(exc).__name__, exc)
            code = getattr(exc, "code", None)
            if code == 413:
                return refuse(f"{name} is over the upload limit of {max_mb:g} MB (serve.upload_max_mb)", 413)
            return refuse(f"{name}: the upload failed ({type(exc).__name__})")
        return Response(json.dumps({"id": digest, "name": name, "bytes": size}), mimetype="application/json")

    def spectrogram(digest: str) -> Response:
        import pipelines.explain as pe

        try:
            path = pe.upload_dir(store, digest) / "spectrogram.png"
        except NotFound:
            abort(404)
        if not path.is_file():
            abort(404)
        return send_file(path, mimetype="image/png", max_age=3600)

    def audio(digest: str) -> Response:
        import pipelines.explain as pe

        try:
            path = pe.upload_audio(store, digest)
        except NotFound:
            abort(404)
        from whypop.app.routes import PLAYABLE

        resp = send_file(path, mimetype=PLAYABLE.get(path.suffix, "application/octet-stream"), conditional=True,
                         max_age=3600)
        resp.headers["Accept-Ranges"] = "bytes"
        return resp

    server.add_url_rule(prefix + "upload", endpoint=f"whypop{prefix}upload", view_func=upload, methods=["POST"])
    server.add_url_rule(prefix + "upload/<digest>/spectrogram.png", endpoint=f"whypop{prefix}upload_spec",
                        view_func=spectrogram, methods=["GET", "HEAD"])
    server.add_url_rule(prefix + "upload/<digest>/audio", endpoint=f"whypop{prefix}upload_audio",
                        view_func=audio, methods=["GET", "HEAD"])


class _TooLarge(InputError):
    """An upload over the size limit (HTTP 413)."""


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def _check_audio(path: str, name: str, max_seconds: float) -> None:
    """Refuse what does not decode as audio, holds no samples, or is too long (header only)."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:  # noqa: BLE001 - libsndfile raises several types for junk
        raise InputError(f"{name} is not a recognised audio file, or it is corrupt") from None
    if not info.frames or info.frames <= 0 or not info.samplerate:
        raise InputError(f"{name} holds no audio samples")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise InputError(f"{name} is {_minutes(seconds)} long; the limit is {_minutes(max_seconds)} "
                         f"(serve.upload_max_seconds)")


# -- callbacks --------------------------------------------------------------------------------------------


MAX_QUERY = 200  # characters of a picker search used


def is_digest(value: object) -> bool:
    """Whether ``value`` is an upload's id: a SHA-256 in lower-case hex."""
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def clean_request(ctx: AppContext, req: object) -> dict | None:
    """An explanation request from the browser checked against the run, or None.

    ``kind`` track (a prepared track of the run) or upload (a SHA-256 id), ``extraction``
    a complete extraction, ``listen`` and ``concept`` normalised (an unknown concept is none).
    Only the checked values are kept: every cache is keyed by them, never by the raw request.
    """
    if not isinstance(req, dict) or req.get("kind") not in ("track", "upload"):
        return None
    eid = ctx.data.extraction_id(req.get("extraction"))
    if eid is None:
        return None
    if req["kind"] == "track":
        ident = ctx.data.track_id(req.get("id"))
    else:
        ident = req.get("id") if is_digest(req.get("id")) else None
    if ident is None:
        return None
    listen = req.get("listen")
    return {"kind": req["kind"], "id": ident, "extraction": eid,
            "listen": listen if isinstance(listen, str) and listen in ("solo", "without") else "song",
            "concept": ctx.data.concept_id(eid, req.get("concept"))}


def register(app, ctx: AppContext, manager, allowed: bool, cache: bool) -> None:
    run_root = str(ctx.data.store.root)

    @app.callback(
        Output(ids.song("picker"), "options", allow_duplicate=True),
        Input(ids.song("picker"), "search_value"),
        State(ids.song("picker"), "value"),
        State(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def search(query, current, extraction_id):
        if not isinstance(query, str):
            return no_update
        eid = ctx.data.extraction_id(extraction_id)
        return search_tracks(ctx, query[:MAX_QUERY], eid, ctx.data.track_id(current))

    if allowed:
        @app.callback(
            Output(ids.song("request"), "data", allow_duplicate=True),
            Output(ids.song("message"), "children", allow_duplicate=True),
            Input(ids.song("upload"), "data"),
            State(ids.links("extraction"), "data"),
            State(ids.song("listen"), "value"),
            State(ids.links("concept"), "data"),
            prevent_initial_call=True,
        )
        def uploaded(data, extraction_id, listen, concept_id):
            if not isinstance(data, dict):
                return no_update, no_update
            name = str(data.get("name") or "")[:200]
            if data.get("error"):
                return no_update, dbc.Alert(f"upload refused: {str(data['error'])[:500]}", color="warning",
                                            className="py-1 px-2 mb-0 whypop-upload-error")
            if data.get("pending"):
                percent = data.get("percent")
                percent = percent if isinstance(percent, (int, float)) and not isinstance(percent, bool) else 0
                return no_update, html.Span(f"uploading {name}… {percent:.0f}%")
            digest = data.get("id")
            eid = ctx.data.extraction_id(extraction_id)
            if eid is None:
                return no_update, dbc.Alert("no complete extraction to explain with", color="warning",
                                            className="py-1 px-2 mb-0")
            if not is_digest(digest):
                return no_update, dbc.Alert("upload refused: the server sent no upload id", color="warning",
                                            className="py-1 px-2 mb-0 whypop-upload-error")
            return ({"kind": "upload", "id": digest, "extraction": eid, "t": time.time(),
                     "listen": listen if isinstance(listen, str) and listen in ("solo", "without") else "song",
                     "concept": ctx.data.concept_id(eid, concept_id)},
                    html.Span(f"uploaded {name}; explaining…"))

    outputs = [
        Output(ids.song("graph"), "figure", allow_duplicate=True),
        Output(ids.song("audio"), "src", allow_duplicate=True),
        Output(ids.song("caption"), "children", allow_duplicate=True),
        Output(ids.song("explanation"), "children", allow_duplicate=True),
        Output(ids.song("message"), "children", allow_duplicate=True),
    ]

    def body(set_progress, raw):
        req = clean_request(ctx, raw)
        if req is None:
            if not isinstance(raw, dict) or raw.get("kind") not in ("track", "upload"):
                return (no_update,) * 5
            return (no_update, no_update, no_update, [],
                    dbc.Alert("cannot explain this song: unknown song or extraction", color="warning",
                              className="py-1 px-2 mb-0 whypop-upload-error"))

        def progress(event) -> None:
            set_progress((round(100 * event.fraction), f"explaining: {event.label} ({event.done}/{event.total})",
                          "mt-1"))

        try:
            e = compute(run_root, req, cache, progress)
        except WhypopError as exc:
            return (no_update, no_update, no_update, [],
                    dbc.Alert(f"cannot explain this song: {exc}", color="warning",
                              className="py-1 px-2 mb-0 whypop-upload-error"))
        except Exception as exc:  # noqa: BLE001 - shown, logged; never a 500
            log.exception("explanation failed")
            return (no_update, no_update, no_update, [],
                    dbc.Alert(f"the explanation failed: {type(exc).__name__}: {exc}", color="danger",
                              className="py-1 px-2 mb-0"))
        set_progress((100, "", "mt-1 d-none"))
        if req["kind"] == "track":
            track = str(req["id"])
            image_url, audio_url = ctx.spec_url(track), ctx.audio_url(track)
        else:
            digest = quote(str(req["id"]), safe="")
            image_url, audio_url = ctx.url(f"upload/{digest}/spectrogram.png"), ctx.url(f"upload/{digest}/audio")
        size = ctx.data.audio.image_size
        fig, src, caption, children = explanation_view(ctx, e, image_url, audio_url, (size, size))
        listen_src, note = explained_listen_source(ctx, e, req)
        return fig, listen_src or src, caption + note, children, ""

    progress_outputs = [Output(ids.song("progress"), "value"), Output(ids.song("stage"), "children"),
                        Output(ids.song("progress"), "className")]
    @app.callback(Output(ids.song("job"), "data"), Input(ids.song("request"), "data"), prevent_initial_call=True)
    def gate(raw):
        # panel 5 clears the request with every discovery song it shows: only a request for a song
        # (a track or an upload) becomes a job, so clearing never starts (forks) a background job
        return raw if isinstance(raw, dict) and raw.get("kind") in ("track", "upload") else no_update

    if manager is not None:
        @app.callback(*outputs, Input(ids.song("job"), "data"), State(ids.links("page"), "data"),
                      background=True, manager=manager, progress=progress_outputs, prevent_initial_call=True)
        def explain_job(set_progress, req, _page):  # the page token only makes Dash's result key unique
            return body(set_progress, req)
    else:  # no job manager (a read-only dashboard without uploads): explain in the request
        @app.callback(*outputs, Input(ids.song("job"), "data"), prevent_initial_call=True)
        def explain_now(req):
            return body(lambda _v: None, req)
