"""The connectors between panels: selection state, the URL, and the clientside highlighting.

State lives in three ``dcc.Store``s (extraction, concept, song) plus the feature switch,
and is mirrored in the URL's query string (``?extraction=2&concept=105&song=abc&features=audio``)
so a view can be shared. One server callback, :func:`sync`, turns every click, dropdown
change and URL edit into new state, checking ids against the store; the panels listen
to the stores. Hover highlighting runs in the browser (``assets/whypop.js``) from the
similarity lists shipped once per extraction.
"""

from __future__ import annotations

import uuid

import functools
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash
from dash import ClientsideFunction, Input, Output, State, dcc, html

from whypop.app import figures, ids
from whypop.app.context import AppContext
from whypop.app.data import AppData
from whypop.errors import NotFound
from whypop.ids import parse_id

FEATURE_CHOICES = ("echonest", "audio")


@dataclass(frozen=True)
class Selection:
    """What the user looks at; every field already checked against the store."""

    extraction: int | None
    concept: int | None = None
    song: str | None = None
    features: str = "audio"

    def search(self) -> str:
        """The URL query string for this selection ('' when nothing is chosen)."""
        q: dict[str, Any] = {}
        if self.extraction is not None:
            q["extraction"] = self.extraction
        if self.concept is not None:
            q["concept"] = self.concept
        if self.song is not None:
            q["song"] = self.song
        q["features"] = self.features
        return "?" + urlencode(q)


MAX_SEARCH = 2000  # characters of a query string worth parsing (a shared view needs ~100)


def parse_search(search: object) -> dict[str, str]:
    """``?a=1&b=2`` -> {"a": "1", "b": "2"} (first value of each key); {} for anything but a short string."""
    if not isinstance(search, str) or len(search) > MAX_SEARCH:
        return {}
    return {k: v[0] for k, v in parse_qs(search.lstrip("?"), keep_blank_values=False, max_num_fields=20).items()}


def default_features(data: AppData) -> str:
    return "echonest" if data.has_source("echonest") else "audio"


def resolve(data: AppData, extraction: Any = None, concept: Any = None, song: Any = None,
            features: Any = None) -> Selection:
    """A Selection from untrusted values: unknown ids fall back (latest extraction, no concept, no song)."""
    eid = None
    if extraction not in (None, ""):
        try:
            eid = data.view(parse_id(extraction, "extraction")).extraction_id
        except NotFound:
            eid = None
    if eid is None:
        eid = data.latest_extraction()
    cid = None
    if eid is not None and concept not in (None, ""):
        try:
            cid = data.view(eid).concept(parse_id(concept, "concept")).concept_id
        except NotFound:
            cid = None
    tid = data.track_id(song)
    feats = features if _choice(features) and data.has_source(features) else default_features(data)
    return Selection(eid, cid, tid, feats)


def clicked_concept(click: dict | None) -> int | None:
    """The concept id of a click on panel 1 or 2 (None for cluster centres and empty clicks)."""
    point = _point(click)
    value = None if point is None else point.get("customdata")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def clicked_song(click: dict | None) -> str | None:
    point = _point(click)
    value = None if point is None else point.get("customdata")
    return value if isinstance(value, str) and value else None


def next_selection(data: AppData, trigger: str | None, current: Selection, *, search: str | None,
                   extraction: Any, song: Any, features: Any, click: dict | None) -> Selection:
    """The selection after one event (``trigger`` = the part id that changed; None = page load)."""
    if trigger in (None, "location"):
        q = parse_search(search)
        return resolve(data, q.get("extraction"), q.get("concept"), q.get("song"), q.get("features"))
    if trigger == "extraction":
        new = resolve(data, extraction, None, current.song, current.features)
        return new
    if trigger == "features":
        ok = _choice(features) and data.has_source(features)
        return replace(current, features=features if ok else current.features)
    if trigger == "song":
        return resolve(data, current.extraction, current.concept, song, current.features) if song else current
    if trigger in ("importance", "clusters"):
        cid = clicked_concept(click)
        if cid is None:
            return current
        return resolve(data, current.extraction, cid, current.song, current.features)
    if trigger == "radar":
        tid = clicked_song(click)
        return resolve(data, current.extraction, current.concept, tid, current.features) if tid else current
    return current


def layout(ctx: AppContext) -> list:
    """The invisible parts: location and stores."""
    return [
        dcc.Location(id=ids.links("location"), refresh=False),
        dcc.Store(id=ids.links("extraction")),
        dcc.Store(id=ids.links("concept")),
        dcc.Store(id=ids.links("song")),
        dcc.Store(id=ids.links("similar")),  # {"similar": {cid: [cid...]}, "cluster": {cid: k}}
        dcc.Store(id=ids.links("seek")),  # written by the clientside seek (a no-op sink)
        dcc.Store(id=ids.links("jobs-done")),  # id of an extraction a job just completed
        # one token per page load, passed to every background callback: Dash keys a background
        # callback's progress and result by its arguments, so two tabs sending the same request
        # would otherwise share (and steal each other's) progress and result
        dcc.Store(id=ids.links("page"), data=uuid.uuid4().hex),
    ]


def overview(data: AppData, extraction_id: int | None) -> tuple:
    """Panels 1 and 2, the similarity lists, and the model line for one extraction."""
    if extraction_id is None:
        msg = "this run has no complete extraction yet: run `whypop extract --run RUN_DIR`"
        return (figures.message_figure(msg), figures.message_figure(msg), None, model_line(data, None),
                figures.message_figure("", 190), [])
    view = data.view(extraction_id)
    faith = data.faithfulness(extraction_id)
    colors = figures.genre_colors(view.genres)
    similar = {
        "similar": {str(k): list(v) for k, v in view.similar.items()},
        "cluster": {str(c.concept_id): c.cluster for c in view.concepts},
        "threshold": view.threshold,
    }
    verdicts = [html.Div(line) for line in figures.verdict_lines(faith)]
    return (figures.importance_figure(view, colors, faith=faith), figures.concept_map_figure(view, colors), similar,
            model_line(data, view.model_id, view), figures.faithfulness_figure(faith, colors), verdicts)


def model_line(data: AppData, model_id: int | None, view=None) -> list:
    """'Model 3 (resnet34): accuracy test 81.2% · validation 84.0% · training 97.1%'."""
    m = data.model_summary(model_id)
    if m is None:
        text = "no trained model in this run" if model_id is None else f"model {model_id} is not in this run"
        return [html.Span(text, className="text-muted")]
    order = ["test", "validation", "training"]
    acc = sorted(m["accuracy"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    parts = [html.Span(f"Model {m['model_id']} ({m['arch']})", className="fw-semibold")]
    if acc:
        parts.append(html.Span(" · accuracy " + " · ".join(f"{k} {100 * v:.1f}%" for k, v in acc)))
    if view is not None and view.layer:
        parts.append(html.Span(f" · concepts at {view.layer}", className="text-muted"))
    return parts


def register(app: dash.Dash, ctx: AppContext) -> None:
    data = ctx.data

    @app.callback(
        Output(ids.links("extraction"), "data"),
        Output(ids.links("concept"), "data"),
        Output(ids.links("song"), "data"),
        Output(ids.links("location"), "search"),
        Output(ids.header("extraction"), "value"),
        Output(ids.song("picker"), "value"),
        Output(ids.radar("source"), "value"),
        Input(ids.links("location"), "search"),
        Input(ids.header("extraction"), "value"),
        Input(ids.song("picker"), "value"),
        Input(ids.radar("source"), "value"),
        Input(ids.importance("graph"), "clickData"),
        Input(ids.clusters("graph"), "clickData"),
        Input(ids.radar("graph"), "clickData"),
        State(ids.links("extraction"), "data"),
        State(ids.links("concept"), "data"),
        State(ids.links("song"), "data"),
    )
    def sync(search, extraction, song, features, click1, click2, click4, cur_e, cur_c, cur_s):
        trigger = dash.ctx.triggered_id
        part = trigger.get("part") if isinstance(trigger, dict) else None
        panel = trigger.get("whypop") if isinstance(trigger, dict) else None
        key = {"location": "location", "extraction": "extraction", "picker": "song", "source": "features"}.get(part)
        if part == "graph":
            key = panel
        click = {"importance": click1, "clusters": click2, "radar": click4}.get(key)
        # the stores' state comes from the browser too: only known ids enter a Selection
        cur_e = data.extraction_id(cur_e)
        cur_c = data.concept_id(cur_e, cur_c)
        cur_s = data.track_id(cur_s)
        current = Selection(cur_e, cur_c, cur_s, features if _choice(features) else default_features(data))
        new = next_selection(data, key, current, search=search, extraction=extraction, song=song,
                             features=features, click=click)
        nu = dash.no_update
        first = cur_e is None and new.extraction is not None
        return (
            new.extraction if (first or new.extraction != cur_e) else nu,
            new.concept if (first or new.concept != cur_c) else nu,
            new.song if (first or new.song != cur_s) else nu,
            new.search() if new.search() != (search or "") else nu,
            new.extraction if new.extraction != extraction else nu,
            new.song if new.song != song else nu,
            new.features if new.features != features else nu,
        )

    @app.callback(
        Output(ids.header("extraction"), "options"),
        Input(ids.links("jobs-done"), "data"),
        prevent_initial_call=True,
    )
    def refresh_extractions(_done):
        """A job finished: offer its extraction; the one being viewed stays selected."""
        return data.extraction_options()

    @app.callback(
        Output(ids.importance("graph"), "figure"),
        Output(ids.clusters("graph"), "figure"),
        Output(ids.links("similar"), "data"),
        Output(ids.header("model"), "children"),
        Output(ids.importance("faithfulness"), "figure"),
        Output(ids.importance("verdict"), "children"),
        Input(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def show_extraction(extraction_id):
        eid = data.extraction_id(extraction_id)
        if eid is None and extraction_id is not None:  # not an extraction of this run: keep what is shown
            return (dash.no_update,) * 6
        return cached_overview(eid, data.faithfulness(eid) is not None if eid is not None else False)

    @functools.lru_cache(maxsize=16)
    def cached_overview(extraction_id, tested):  # tested: the deletion test lands after the extraction
        return overview(data, extraction_id)

    app.clientside_callback(
        ClientsideFunction("whypop", "highlight"),
        Output(ids.importance("graph"), "figure", allow_duplicate=True),
        Output(ids.clusters("graph"), "figure", allow_duplicate=True),
        Input(ids.importance("graph"), "hoverData"),
        Input(ids.clusters("graph"), "hoverData"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("similar"), "data"),
        State(ids.importance("graph"), "figure"),
        State(ids.clusters("graph"), "figure"),
        prevent_initial_call=True,
    )


def _point(click: dict | None) -> dict | None:
    if not isinstance(click, dict):
        return None
    points = click.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], dict):
        return None
    return points[0]


def _choice(features: Any) -> bool:
    return isinstance(features, str) and features in FEATURE_CHOICES
