"""Panel 2, concept clusters: the t-SNE map of cluster centres, each cluster's concepts around it.

Same colours, hover and click as panel 1 (wired in :mod:`whypop.app.links`).
"""

from __future__ import annotations

from whypop.app import ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext

HEIGHT = 380


def layout(ctx: AppContext):
    return card(
        2, "Concept clusters",
        "Concepts of all genres grouped by the similarity of their CAVs (grey discs: cluster centres, "
        "placed with t-SNE). Hover a concept to see its cluster; click to select it.",
        graph(ids.clusters("graph"), HEIGHT, "loading the concept map…"),
    )


def register(app, ctx: AppContext) -> None:
    """Panel 2's callbacks live in links (shared with panel 1); nothing of its own."""
