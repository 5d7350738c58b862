"""Panel 4, human-understandable features: one radar per example song of the selected concept.

Radius = the song's percentile within the collection; the hover gives the raw value with
its unit. A switch picks Echo Nest's eight features (when the run has them) or the audio
descriptors computed for every track; songs without data for the chosen source are
marked, not dropped. Hovering a radar focuses it (clientside); clicking selects the song
for panel 5 (through :func:`whypop.app.links.sync`).
"""

from __future__ import annotations

import functools

import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, html

from whypop.app import figures, ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext
from whypop.app.data import FEATURE_SOURCES
from whypop.errors import NotFound

HEIGHT = 500
LABELS = {"echonest": "Echo Nest", "audio": "Audio descriptors"}


def layout(ctx: AppContext):
    has_echonest = ctx.data.has_source("echonest")
    switch = dbc.RadioItems(
        id=ids.radar("source"), inline=True, className="small",
        options=[{"label": LABELS["echonest"], "value": "echonest", "disabled": not has_echonest},
                 {"label": LABELS["audio"], "value": "audio"}],
        value="echonest" if has_echonest else "audio",
    )
    return card(
        4, "Human-understandable features",
        "One radar per example song; radius = percentile within the collection, hover for the raw value. "
        "Hover a radar to focus it; click it to open the song below.",
        [html.Div(id=ids.radar("caption"), className="small text-muted mb-1"),
         graph(ids.radar("graph"), HEIGHT, "Click a concept to see its example songs.")],
        extra=switch,
    )


def example_songs(ctx: AppContext, extraction_id: int, concept_id: int) -> list[str]:
    """The distinct songs of a concept's examples, in rank order."""
    return list(dict.fromkeys(ex.track_id for ex in ctx.data.examples(extraction_id, concept_id)))


def radar(ctx: AppContext, extraction_id: int | None, concept_id: int | None, source: str):
    """(figure, caption, graph style) for the selected concept's example songs."""
    fig, caption = _radar(ctx, extraction_id, concept_id, source)
    return fig, caption, {"height": f"{int(fig.layout.height or HEIGHT)}px"}


def _radar(ctx: AppContext, extraction_id: int | None, concept_id: int | None, source: str):
    if extraction_id is None or concept_id is None:
        return figures.message_figure("Click a concept to see its example songs.", HEIGHT), ""
    if source not in FEATURE_SOURCES:
        source = "audio"
    try:
        songs = example_songs(ctx, extraction_id, concept_id)
    except NotFound:
        return figures.message_figure("That concept is not in this extraction.", HEIGHT), ""
    rows = ctx.data.song_features(songs, source)
    with_data = sum(1 for r in rows if r.present)
    n_collection = ctx.data.collection_size(source)
    caption = (f"{LABELS[source]}: {with_data} of {len(rows)} songs have data; "
               f"percentiles among the {n_collection} tracks of the run that have it.")
    return figures.radar_figure(rows, source), caption


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output(ids.radar("graph"), "figure"),
        Output(ids.radar("caption"), "children"),
        Output(ids.radar("graph"), "style"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("extraction"), "data"),
        Input(ids.radar("source"), "value"),
        prevent_initial_call=True,
    )
    def show_radar(concept_id, extraction_id, source):
        eid = ctx.data.extraction_id(extraction_id)
        source = source if isinstance(source, str) and source in FEATURE_SOURCES else "audio"
        cid = ctx.data.concept_id(eid, concept_id)
        if eid is not None and cid is None and concept_id is not None:
            fig = figures.message_figure("That concept is not in this extraction.", HEIGHT)
            return fig, "", {"height": f"{HEIGHT}px"}
        return cached(eid, cid, source)

    @functools.lru_cache(maxsize=256)  # an extraction never changes: figures are reused across users
    def cached(extraction_id, concept_id, source):
        return radar(ctx, extraction_id, concept_id, source)

    app.clientside_callback(
        ClientsideFunction("whypop", "focusRadar"),
        Output(ids.radar("graph"), "figure", allow_duplicate=True),
        Input(ids.radar("graph"), "hoverData"),
        State(ids.radar("graph"), "figure"),
        prevent_initial_call=True,
    )
