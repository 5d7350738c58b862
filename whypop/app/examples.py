"""Panel 3, concept images: the selected concept's 10 closest patches, each beside its source.

Images are PNGs served by :mod:`whypop.app.routes` (rendered once per process, cached
by the browser); the panel itself is a few ``html.Img`` tags. Every example has a play
button (its region of the song, solo, see :mod:`whypop.listen`) and "play all" plays the
ten in turn, the one playing highlighted: ``assets/whypop.js`` drives the panel's one
``<audio>`` element, without a server round trip.
"""

from __future__ import annotations

import functools

import dash_bootstrap_components as dbc
from dash import Input, Output, html

from whypop.app import ids
from whypop.app.components import card
from whypop.app.context import AppContext
from whypop.app.data import Concept
from whypop.app.figures import format_p
from whypop.errors import NotFound
from whypop.listen import audio_file


def layout(ctx: AppContext):
    return card(
        3, "Concept images",
        "The concept's 10 patches closest to its centre: what the network saw (left), and where it sits in "
        "the song's spectrogram (right, outlined; low frequencies at the bottom).",
        [html.Div(id=ids.examples("title"), className="mb-2"),
         html.Div([
             html.Button("▶ play all", id=ids.examples("play-all"), className=f"{ids.PLAY_ALL_CLASS} btn btn-sm "
                         "btn-outline-primary", title="play the ten examples in turn (each alone: solo)", n_clicks=0),
             html.Audio(id=ids.examples("audio"), controls=True, preload="none",
                        className=f"{ids.EXAMPLE_AUDIO_CLASS} flex-grow-1"),
         ], className="d-flex align-items-center gap-2 mb-2"),
         html.Div(placeholder(), id=ids.examples("gallery"), className="whypop-gallery")],
    )


def placeholder(text: str = "Click a concept in panel 1 or 2.") -> html.Div:
    return html.Div(text, className="text-muted small", style={"gridColumn": "1 / -1"})


def concept_title(c: Concept) -> list:
    """Name, genre, score, p-value and flags of the selected concept."""
    badges = [dbc.Badge("significant" if c.significant else "not significant",
                        color="success" if c.significant else "secondary", className="me-1")]
    for flag, reason in c.flags:
        badges.append(dbc.Badge(f"⚑ {flag}", color="danger", className="me-1", title=reason))
    return [
        html.Span(c.name, className="fw-semibold me-2"),
        html.Span(f"{c.genre} · TCAV {c.tcav_mean:.2f} ± {c.tcav_std:.2f} · p = {format_p(c.p_value)} ",
                  className="small me-2"),
        *badges,
    ]


def gallery(ctx: AppContext, extraction_id: int | None, concept_id: int | None) -> tuple[list, list]:
    """(title children, gallery children) for a concept; placeholders when nothing is selected."""
    if extraction_id is None or concept_id is None:
        return [], [placeholder()]
    try:
        concept = ctx.data.view(extraction_id).concept(concept_id)
        examples = ctx.data.examples(extraction_id, concept_id)
    except NotFound:
        return [], [placeholder("That concept is not in this extraction.")]
    if not examples:
        return concept_title(concept), [placeholder("No example patches stored for this concept.")]
    items = []
    for ex in examples:
        missing, why = _missing_audio(ctx, ex.track_id)
        play_title = f"play example {ex.rank + 1} alone (its region of the song, solo)"
        if missing:
            play_title += f"; the song's audio is unavailable ({why}), so it is rebuilt from the image (Griffin-Lim)"
        controls = [html.Button("▶", className=f"{ids.PLAY_CLASS} btn btn-sm btn-outline-secondary py-0 px-2",
                                title=play_title, n_clicks=0,
                                **{"data-src": ctx.listen_url(extraction_id, concept_id, ex.rank, "solo"),
                                   "data-rank": str(ex.rank)}),
                    html.Div(ex.song, className="small text-truncate whypop-song-name", title=ex.song)]
        if missing:
            controls.append(html.Span("image", className="badge bg-warning text-dark whypop-fallback",
                                      title="no audio file: rebuilt from the spectrogram image (Griffin-Lim), "
                                            "sounds worse than the song"))
        items.append(html.Div([
            html.Div([
                html.Img(src=ctx.patch_url(extraction_id, concept_id, ex.rank), className="whypop-patch",
                         alt=f"patch {ex.rank + 1} of {concept.name}"),
                html.Img(src=ctx.context_url(extraction_id, concept_id, ex.rank), className="whypop-context",
                         alt=f"spectrogram of {ex.song} with the patch outlined"),
            ], className="whypop-pair"),
            html.Div(controls, className="d-flex align-items-center gap-1"),
        ], className="whypop-example", **{"data-track": ex.track_id}))
    return concept_title(concept), items


def _missing_audio(ctx: AppContext, track_id: str) -> tuple[bool, str]:
    path, why = audio_file(ctx.data.store, track_id, confine=True)
    return path is None, why


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output(ids.examples("title"), "children"),
        Output(ids.examples("gallery"), "children"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def show_examples(concept_id, extraction_id):
        eid = ctx.data.extraction_id(extraction_id)
        cid = ctx.data.concept_id(eid, concept_id)
        if eid is not None and cid is None and concept_id is not None:
            return [], [placeholder("That concept is not in this extraction.")]
        return cached(eid, cid)

    @functools.lru_cache(maxsize=256)
    def cached(extraction_id, concept_id):
        return gallery(ctx, extraction_id, concept_id)
