"""Panel 2, concept clusters: clusters of concepts across genres, each cluster's concepts on a disc.

Same colours, hover and click as panel 1 (wired in :mod:`whypop.app.links`). Under each
cluster: its leading genre and share (grey when mostly flagged); hovering the small
marker under a disc describes the cluster (its genres and shares, its top significant
concept, its flagged share); clicking it lists its concepts under the map. Selecting a
concept lists the concepts of its cluster.
"""

from __future__ import annotations

import functools

import dash
from dash import Input, Output, html

from whypop.app import figures, ids
from whypop.app.components import card, graph
from whypop.app.context import AppContext
from whypop.errors import NotFound

HEIGHT = 380


def layout(ctx: AppContext):
    return card(
        2, "Concept clusters",
        "Concepts of all genres grouped by the similarity of their CAVs: one disc per cluster (placed after "
        "t-SNE), its genres in sectors. Hover a concept to see its cluster; click to select it; click the "
        "marker under a cluster to list its concepts.",
        [graph(ids.clusters("graph"), HEIGHT, "loading the concept map…"),
         html.Div(id=ids.clusters("members"), className="small whypop-cluster-members",
                  style={"maxHeight": "9rem", "overflowY": "auto"})],
    )


def clicked_cluster(click: dict | None) -> int | None:
    """The cluster id of a click on a cluster's marker (None otherwise)."""
    if not isinstance(click, dict) or not isinstance(click.get("points"), list) or not click["points"]:
        return None
    point = click["points"][0]
    data = point.get("customdata") if isinstance(point, dict) else None
    value = data.get("cluster") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def members_list(ctx: AppContext, extraction_id: int | None, cluster: int | None):
    """A cluster's description and its concepts (genre, name, TCAV, significance, flags)."""
    if extraction_id is None or cluster is None:
        return []
    try:
        view = ctx.data.view(extraction_id)
    except NotFound:
        return []
    info = figures.cluster_infos(view).get(cluster)
    if info is None:
        return [html.Span(f"cluster {cluster} has no concept in this extraction", className="text-muted")]
    colors = figures.genre_colors(view.genres)
    items = []
    for c in sorted(info.concepts, key=lambda c: (-c.tcav_mean, c.concept_id)):
        flags = [f for f, _ in c.flags if f != figures.SIGNIFICANCE_FLAG]
        items.append(html.Li([
            html.Span("●", style={"color": colors.get(c.genre, "#888")}, className="me-1"),
            html.Span(c.name, className="fw-semibold" if c.significant else ""),
            html.Span(f" · TCAV {c.tcav_mean:.2f}" + ("" if c.significant else " · not significant")
                      + (f" · ⚑ {', '.join(flags)}" if flags else ""), className="text-muted"),
        ], **{"data-concept": c.concept_id}))
    head = html.Div(info.describe(), className="text-muted" if info.mostly_flagged else "")
    return [head, html.Ul(items, className="list-unstyled mb-0 ms-1")]


def register(app, ctx: AppContext) -> None:
    """Panel 2's figure and concept clicks live in links (shared with panel 1); the member list is its own."""

    @app.callback(
        Output(ids.clusters("members"), "children"),
        Input(ids.clusters("graph"), "clickData"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("extraction"), "data"),
        prevent_initial_call=True,
    )
    def show_members(click, concept_id, extraction_id):
        eid = ctx.data.extraction_id(extraction_id)  # every input checked against the run before the cache
        trigger = dash.ctx.triggered_id
        part = trigger.get("part") if isinstance(trigger, dict) else None
        cluster = clicked_cluster(click) if part == "graph" else None
        if cluster is None and part == "graph":
            return dash.no_update  # a click on a concept: the concept store's change lists its cluster
        cid = ctx.data.concept_id(eid, concept_id)
        if cluster is None and cid is not None:
            cluster = ctx.data.view(eid).concept(cid).cluster
        if eid is None or (cluster is not None and cluster not in {c.cluster for c in ctx.data.view(eid).concepts}):
            cluster = None
        return cached(eid, cluster)

    @functools.lru_cache(maxsize=256)
    def cached(extraction_id, cluster):
        return members_list(ctx, extraction_id, cluster)
