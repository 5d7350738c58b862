"""Panel 5, concepts within a song: the spectrogram with every concept patch stitched in and
labelled, an audio player, and a playhead that follows playback.

The image is rendered by :mod:`whypop.app.routes`; the playhead is ``shapes[0]`` of the
figure, moved by a requestAnimationFrame loop in ``assets/whypop.js`` (no server round
trip); clicking the spectrogram seeks (clientside). The dropdown lists every discovery
song of the genre. A switch narrows the view to the concept selected in panels 1-3 (its
patches alone in colour and outlined), to follow one concept through a crowded song.
"""

from __future__ import annotations

import functools

import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, dcc, html

from whypop.app import figures, ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext
from whypop.errors import NotFound

HEIGHT = 360


def layout(ctx: AppContext):
    picker = dcc.Dropdown(id=ids.song("picker"), options=[], placeholder="a discovery song of the genre…",
                          clearable=False, style={"minWidth": "18rem"}, className="small")
    only = dbc.Switch(id=ids.song("only"), label="only the selected concept", value=False, className="small mb-0")
    extra = html.Div([only, picker], className="d-flex align-items-center gap-3")
    return card(
        5, "Concepts within a song",
        "The song's spectrogram with every concept patch found in it in colour (the rest greyed), each "
        "labelled. Play the song: the red line follows; click the spectrogram to jump there.",
        [graph(ids.song("graph"), HEIGHT, "Click a radar in panel 4, or pick a song.", class_name=ids.SONG_GRAPH_CLASS),
         html.Audio(id=ids.song("audio"), controls=True, preload="auto", className=f"{ids.AUDIO_CLASS} w-100 mt-1"),
         html.Div(id=ids.song("caption"), className="small text-muted")],
        extra=extra,
    )


def song_view(ctx: AppContext, extraction_id: int | None, track_id: str | None, only_concept: int | None = None):
    """(figure, audio src, caption) for one song; with ``only_concept``, that concept's patches alone."""
    if extraction_id is None or not track_id:
        return figures.message_figure("Click a radar in panel 4, or pick a song.", HEIGHT), None, ""
    try:
        track = ctx.data.track(track_id)
        spec_shape = ctx.data.spectrogram_shape(track_id)
        placements = ctx.data.placements(extraction_id, track_id)
        name = ctx.data.view(extraction_id).concept(only_concept).name if only_concept is not None else None
    except NotFound as exc:
        return figures.message_figure(str(exc), HEIGHT), None, ""
    names = sorted({p.name for p in placements})
    found = f"{len(placements)} patches of {len(names)} concepts: {', '.join(names)}" if placements else \
        "no concept patch of this extraction lies in this song"
    if only_concept is not None:
        everything = len(placements)
        placements = tuple(p for p in placements if p.concept_id == only_concept)
        found = (f"{len(placements)} of its {everything} concept patches are {name}'s" if placements
                 else f"{name} has no patch in this song ({everything} patches of other concepts)")
    fig = figures.song_figure(ctx.song_image_url(extraction_id, track_id, only_concept), placements,
                              ctx.data.audio, spec_shape, height_px=HEIGHT)
    caption = f"{track.name} ({track.genre}) · {found}"
    return fig, ctx.audio_url(track_id), caption


def song_options(ctx: AppContext, extraction_id: int | None, concept_id: int | None, track_id: str | None) -> list[dict]:
    """Every discovery song of the genre of the selected song (or else of the selected concept)."""
    if extraction_id is None:
        return []
    genre = None
    if track_id:
        genre = ctx.data.song_genre(extraction_id, track_id)
    if genre is None and concept_id is not None:
        try:
            genre = ctx.data.view(extraction_id).concept(concept_id).genre
        except NotFound:
            genre = None
    if genre is None:
        return []
    songs = list(ctx.data.view(extraction_id).discovery.get(genre, ()))
    if track_id and track_id not in songs:
        songs.insert(0, track_id)
    return [{"label": ctx.data.song_name(t), "value": t} for t in songs]


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output(ids.song("graph"), "figure"),
        Output(ids.song("audio"), "src"),
        Output(ids.song("caption"), "children"),
        Input(ids.links("song"), "data"),
        Input(ids.links("extraction"), "data"),
        Input(ids.links("concept"), "data"),
        Input(ids.song("only"), "value"),
        prevent_initial_call=True,
    )
    def show_song(track_id, extraction_id, concept_id, only):
        eid = ctx.data.extraction_id(extraction_id)
        concept = ctx.data.concept_id(eid, concept_id) if only is True else None
        return cached_view(eid, ctx.data.track_id(track_id), concept)

    @functools.lru_cache(maxsize=256)
    def cached_view(extraction_id, track_id, concept_id):
        return song_view(ctx, extraction_id, track_id, concept_id)

    @app.callback(
        Output(ids.song("picker"), "options"),
        Input(ids.links("song"), "data"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def picker_options(track_id, concept_id, extraction_id):
        eid = ctx.data.extraction_id(extraction_id)
        return cached_options(eid, ctx.data.concept_id(eid, concept_id), ctx.data.track_id(track_id))

    @functools.lru_cache(maxsize=512)
    def cached_options(extraction_id, concept_id, track_id):
        return song_options(ctx, extraction_id, concept_id, track_id)

    app.clientside_callback(
        ClientsideFunction("whypop", "seek"),
        Output(ids.links("seek"), "data"),
        Input(ids.song("graph"), "clickData"),
        prevent_initial_call=True,
    )
