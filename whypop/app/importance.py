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


def layout(ctx: AppContext):
    legend = html.Div(
        [html.Span("● significant  ○ not significant  ◆ flagged as possibly spurious (see hover)  ",
                  className="me-2"),
         html.Span("····· mean of random concepts", className="text-muted")],
        className="small mt-1",
    )
    return card(
        1, "Concept importance by genre",
        "Each dot is a concept the network uses for a genre; height is its TCAV score (share of the genre's "
        "songs the concept pushes towards the genre). Hover: similar concepts light up here and in the map. "
        "Click: show its examples.",
        [graph(ids.importance("graph"), HEIGHT, "loading concepts…"), legend],
    )


def register(app, ctx: AppContext) -> None:
    """Panel 1's callbacks live in links (shared with panel 2); nothing of its own."""
