"""Panel 5, concepts within a song: the spectrogram with every concept patch stitched in and
labelled, an audio player, and a playhead that follows playback.

The image is rendered by :mod:`whypop.app.routes`; the playhead is ``shapes[0]`` of the
figure, moved by a requestAnimationFrame loop in ``assets/whypop.js`` (no server round
trip); clicking the spectrogram seeks (clientside). The dropdown lists every discovery
song of the genre. A switch narrows the view to the concept selected in panels 1-3 (its
patches alone in colour and outlined), to follow one concept through a crowded song.
Under the player, "solo the selected concept" / "mute the selected concept" swap the
player's source for the song's own audio with only (or without) that concept's regions
(:mod:`whypop.listen`); the clip starts at 0 s like the song, so the playhead stays right,
and ``assets/whypop.js`` keeps the playback position across the swap. In a discovery song
the regions are the stored patches; in an explained song (any other track, or an upload)
they are the segments its explanation places the concept on, the ones outlined
(:func:`whypop.app.explain.explained_listen_source`).
"""

from __future__ import annotations

import functools

import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback_context, dcc, html, no_update

from whypop.app import explain, figures, ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext
from whypop.errors import NotFound
from whypop.listen import audio_file

HEIGHT = 360
LISTEN_OPTIONS = [{"label": "the song", "value": "song"},
                  {"label": "solo the selected concept", "value": "solo"},
                  {"label": "mute the selected concept", "value": "without"}]


def layout(ctx: AppContext):
    picker = dcc.Dropdown(id=ids.song("picker"), options=[], placeholder="search every song of the run…",
                          clearable=False, searchable=True, style={"minWidth": "20rem"}, className="small")
    only = dbc.Switch(id=ids.song("only"), label="only the selected concept", value=False, className="small mb-0")
    extra = html.Div([only, picker, explain.upload_controls(ctx, ctx.allow_upload, ctx.upload_max_mb)],
                     className="d-flex align-items-center gap-3 flex-wrap")
    return card(
        5, "Concepts within a song",
        "A discovery song: every concept patch found in it in colour (the rest greyed), each labelled. Any "
        "other song of the run, or an uploaded one, is explained: its predicted genre, and where the concepts "
        "lie in it, ranked by their influence on the prediction. Play the song: the red line follows; click "
        "the spectrogram to jump there.",
        [graph(ids.song("graph"), HEIGHT, "Click a radar in panel 4, or pick a song.", class_name=ids.SONG_GRAPH_CLASS),
         html.Audio(id=ids.song("audio"), controls=True, preload="auto", className=f"{ids.AUDIO_CLASS} w-100 mt-1"),
         dbc.RadioItems(id=ids.song("listen"), options=LISTEN_OPTIONS, value="song", inline=True,
                        className="small whypop-listen"),
         html.Div(id=ids.song("caption"), className="small text-muted"),
         *explain.explanation_area()],
        extra=extra,
    )


def song_view(ctx: AppContext, extraction_id: int | None, track_id: str | None, only_concept: int | None = None,
              listen: str = "song", selected: int | None = None):
    """(figure, audio src, caption) for one song; with ``only_concept``, that concept's patches alone.

    ``listen`` "solo" / "without" with a ``selected`` concept: the player plays the song with only
    (or without) that concept's regions, when the concept has regions in the song.
    """
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
                              ctx.data.audio, spec_shape, height_px=HEIGHT, song_seconds=track.duration)
    caption = f"{track.name} ({track.genre}) · {found}"
    src, note = listen_source(ctx, extraction_id, track_id, listen, selected)
    return fig, src, caption + note


def listen_source(ctx: AppContext, extraction_id: int, track_id: str, listen: str, selected: int | None) -> tuple[str, str]:
    """(the player's source, a note for the caption) for the listen switch."""
    if listen not in ("solo", "without"):
        return ctx.audio_url(track_id), ""
    if selected is None:
        return ctx.audio_url(track_id), " · select a concept (panel 1, 2 or 3) to solo or mute it; playing the song"
    try:
        name = ctx.data.view(extraction_id).concept(selected).name
    except NotFound:
        return ctx.audio_url(track_id), ""
    if not any(p.concept_id == selected for p in ctx.data.placements(extraction_id, track_id)):
        return ctx.audio_url(track_id), f" · {name} has no region in this song: playing the song"
    what = "only" if listen == "solo" else "without"
    note = f" · playing the song {what} {name}'s regions"
    path, why = audio_file(ctx.data.store, track_id, confine=True)
    if path is None:
        note += f" (rebuilt from the image by Griffin-Lim: the song's audio is unavailable, {why}; it sounds worse)"
    return ctx.listen_song_url(extraction_id, selected, track_id, listen), note


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
        Output(ids.song("request"), "data"),
        Output(ids.song("explanation"), "children"),
        Output(ids.song("message"), "children"),
        Input(ids.links("song"), "data"),
        Input(ids.links("extraction"), "data"),
        Input(ids.links("concept"), "data"),
        Input(ids.song("only"), "value"),
        Input(ids.song("listen"), "value"),
        State(ids.song("request"), "data"),
        prevent_initial_call=True,
    )
    def show_song(track_id, extraction_id, concept_id, only, listen, shown):
        # every input is checked against the run (a known extraction, concept, prepared track)
        eid = ctx.data.extraction_id(extraction_id)
        tid = ctx.data.track_id(track_id)
        listen = listen if isinstance(listen, str) and listen in ("solo", "without") else "song"
        selected = ctx.data.concept_id(eid, concept_id)
        trigger = callback_context.triggered_id
        if (isinstance(shown, dict) and eid is not None and shown.get("extraction") == eid
                and (shown.get("kind") == "upload" or (shown.get("kind") == "track" and shown.get("id") == tid))
                and trigger in (ids.song("listen"), ids.links("concept"), ids.song("only"))):
            # an explained song (an upload, or this track) is shown: keep it, with the new listen choice
            # (its explanation is stored, or cached in this process: the job answers at once)
            again = {**shown, "listen": listen, "concept": selected}
            return no_update, no_update, no_update, again, no_update, no_update
        if eid is not None and tid and not explain.is_discovery(ctx, eid, tid):
            try:
                name = ctx.data.song_name(tid)
            except NotFound as exc:
                return figures.message_figure(str(exc), HEIGHT), None, "", None, [], ""
            waiting = figures.message_figure(f"explaining {name}: placing the concepts in it…", HEIGHT)
            req = {"kind": "track", "id": tid, "extraction": eid, "listen": listen, "concept": selected}
            return waiting, None, "", req, [], ""
        concept = selected if only is True else None
        selected = selected if listen != "song" else None
        return (*cached_view(eid, tid, concept, listen, selected), None, [], "")

    @functools.lru_cache(maxsize=256)
    def cached_view(extraction_id, track_id, concept_id, listen, selected):
        return song_view(ctx, extraction_id, track_id, concept_id, listen, selected)

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
