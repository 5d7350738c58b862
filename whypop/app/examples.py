"""Panel 3, concept images: the selected concept's 10 closest patches, each beside its source.

Images are PNGs served by :mod:`whypop.app.routes` (rendered once per process, cached
by the browser); the panel itself is a few ``html.Img`` tags.
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


def layout(ctx: AppContext):
    return card(
        3, "Concept images",
        "The concept's 10 patches closest to its centre: what the network saw (left), and where it sits in "
        "the song's spectrogram (right, outlined; low frequencies at the bottom).",
        [html.Div(id=ids.examples("title"), className="mb-2"),
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
        items.append(html.Div([
            html.Div([
                html.Img(src=ctx.patch_url(extraction_id, concept_id, ex.rank), className="whypop-patch",
                         alt=f"patch {ex.rank + 1} of {concept.name}"),
                html.Img(src=ctx.context_url(extraction_id, concept_id, ex.rank), className="whypop-context",
                         alt=f"spectrogram of {ex.song} with the patch outlined"),
            ], className="whypop-pair"),
            html.Div(ex.song, className="small text-truncate whypop-song-name", title=ex.song),
        ], className="whypop-example", **{"data-track": ex.track_id}))
    return concept_title(concept), items


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
