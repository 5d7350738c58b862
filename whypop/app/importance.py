"""Panel 1, concept importance by genre: a beeswarm of TCAV scores.

The figure comes from :func:`whypop.app.links.overview` (one round trip builds panels 1
and 2 together); hovering highlights similar concepts clientside and clicking selects a
concept, both wired in :mod:`whypop.app.links`.
"""

from __future__ import annotations

from dash import html

from whypop.app import ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext

HEIGHT = 380
FAITH_HEIGHT = 190


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
    return card(
        1, "Concept importance by genre",
        "Each dot is a concept the network uses for a genre; height is its TCAV score (share of the genre's "
        "songs the concept pushes towards the genre). Hover: similar concepts light up here and in the map. "
        "Click: show its examples.",
        [graph(ids.importance("graph"), HEIGHT, "loading concepts…"), legend, tests],
    )


def register(app, ctx: AppContext) -> None:
    """Panel 1's callbacks live in links (shared with panel 2); nothing of its own."""
