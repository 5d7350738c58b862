"""Panel 1, concept importance by genre: a beeswarm of TCAV scores.

The figure comes from :func:`whypop.app.links.overview` (one round trip builds panels 1
and 2 together); hovering highlights similar concepts clientside and clicking selects a
concept, both wired in :mod:`whypop.app.links`. With many genres (more than
``GENRE_FILTER_FROM``) a genre filter appears: picking genres redraws the swarm with only
those, in wider slots with bigger markers.
"""

from __future__ import annotations

import functools

import dash
from dash import Input, Output, State, dcc, html

from whypop.app import figures, ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext
from whypop.errors import NotFound

HEIGHT = 380
FAITH_HEIGHT = 190
GENRE_FILTER_FROM = 8  # genres: show the filter above this many


def layout(ctx: AppContext):
    legend = html.Div(
        [html.Span("● significant  ○ not significant  ◆ flagged as possibly spurious (see hover)  ",
                  className="me-2"),
         html.Span("····· mean of random concepts  ", className="text-muted"),
        html.Span("⊗ significant, but removing it from held-out songs changes nothing")],
        className="small mt-1",
    )
    tests = html.Div([
        html.Div("Deletion test on held-out songs: does removing a genre's top concepts lower its probability more "
                 "than removing random regions of the same area?", className="small text-muted mt-2"),
        html.Div(id=ids.importance("verdict"), className="small"),
        graph(ids.importance("faithfulness"), FAITH_HEIGHT, "loading the deletion test…"),
    ])
    genre_filter = dcc.Dropdown(id=ids.importance("genres"), options=[], value=[], multi=True,
                                placeholder="all genres (pick some to compare)", className="small",
                                style={"display": "none"})
    return card(
        1, "Concept importance by genre",
        "Each dot is a concept the network uses for a genre; height is its TCAV score (share of the genre's "
        "songs the concept pushes towards the genre). Hover: similar concepts light up here and in the map. "
        "Click: show its examples.",
        [html.Div(genre_filter, id=ids.importance("filter"), className="mb-1"),
         graph(ids.importance("graph"), HEIGHT, "loading concepts…"), legend, tests],
    )


def genre_filter(ctx: AppContext, extraction_id: int | None) -> tuple[list[dict], dict]:
    """(options, style) of the genre filter: shown only when the extraction has many genres."""
    if extraction_id is None:
        return [], {"display": "none"}
    try:
        genres = ctx.data.view(extraction_id).genres
    except NotFound:
        return [], {"display": "none"}
    style = {"minWidth": "18rem"} if len(genres) > GENRE_FILTER_FROM else {"display": "none"}
    return [{"label": g, "value": g} for g in genres], style


def filtered_figure(ctx: AppContext, extraction_id: int | None, genres: tuple[str, ...]):
    """Panel 1 with only ``genres`` (all when empty); colours stay those of the whole extraction."""
    if extraction_id is None:
        return dash.no_update
    try:
        view = ctx.data.view(extraction_id)
    except NotFound as exc:
        return figures.message_figure(str(exc), HEIGHT)
    return figures.importance_figure(view, figures.genre_colors(view.genres), faith=ctx.data.faithfulness(extraction_id),
                                     genres=[g for g in genres if g in view.genres])


def register(app, ctx: AppContext) -> None:
    """The genre filter; panel 1's other callbacks live in links (shared with panel 2)."""

    @app.callback(
        Output(ids.importance("genres"), "options"),
        Output(ids.importance("genres"), "style"),
        Output(ids.importance("genres"), "value"),
        Input(ids.links("extraction"), "data"),
        State(ids.importance("genres"), "value"),
        prevent_initial_call=True,
    )
    def filter_options(extraction_id, current):
        options, style = genre_filter(ctx, ctx.data.extraction_id(extraction_id))
        return options, style, ([] if current else dash.no_update)  # a new extraction shows all its genres

    @app.callback(
        Output(ids.importance("graph"), "figure", allow_duplicate=True),
        Input(ids.importance("genres"), "value"),
        State(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def filter_genres(genres, extraction_id):
        eid = ctx.data.extraction_id(extraction_id)  # checked against the run before the cache
        if eid is None:
            return dash.no_update
        known = set(ctx.data.view(eid).genres)
        chosen = tuple(sorted({g for g in (genres if isinstance(genres, list) else []) if isinstance(g, str) and g in known}))
        return cached(eid, chosen)

    @functools.lru_cache(maxsize=64)
    def cached(extraction_id, genres):
        return filtered_figure(ctx, extraction_id, genres)
