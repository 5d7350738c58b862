"""Figure export: every graph's toolbar downloads a PNG or an SVG named after what it shows.

The mode bar stays compact (Plotly's camera plus an SVG button that ``assets/whypop-export.js``
adds) and appears on hover. The file names say the run, the extraction, the genre and the
concept (and the song in panel 5): one callback here rewrites the graphs' ``config``
whenever the selection changes; the panels' own callbacks are untouched.
"""

from __future__ import annotations

from dash import Input, Output

from whypop.app import ids
from whypop.app.context import AppContext, as_id, as_track
from whypop.app.data import AppData
from whypop.errors import NotFound

BASE_CONFIG = {
    "displayModeBar": "hover", "displaylogo": False, "responsive": True, "scrollZoom": False,
    "modeBarButtons": [["toImage"]],  # the SVG button is added in the browser (assets/whypop-export.js)
    "toImageButtonOptions": {"format": "png", "filename": "whypop", "scale": 2},
}
PANELS = ("importance", "clusters", "radar", "song")


def export_name(*parts: object) -> str:
    """'whypop-<part>-<part>...' from the non-empty parts (the browser keeps only safe characters)."""
    out = "-".join(str(p) for p in ("whypop", *parts) if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in out)[:150]


def graph_config(filename: str) -> dict:
    """A dcc.Graph / Plotly config whose downloads are called ``filename`` (.png / .svg)."""
    config = dict(BASE_CONFIG)
    config["toImageButtonOptions"] = {**BASE_CONFIG["toImageButtonOptions"], "filename": filename}
    return config


def file_names(data: AppData, extraction_id: int | None, concept_id: int | None, track_id: str | None) -> dict[str, str]:
    """Download names of panels 1, 2, 4 and 5 for the current selection."""
    run = data.store.root.name
    e = f"e{extraction_id}" if extraction_id is not None else ""
    genre = concept = ""
    if extraction_id is not None and concept_id is not None:
        try:
            genre, concept = data.view(extraction_id).concept(concept_id).genre, f"c{concept_id}"
        except NotFound:
            pass
    return {
        "importance": export_name(run, e, "importance"),
        "clusters": export_name(run, e, "concept-map"),
        "radar": export_name(run, e, genre, concept, "radar"),
        "song": export_name(run, e, track_id, genre, concept, "song"),
    }


def register(app, ctx: AppContext) -> None:
    graphs = {"importance": ids.importance, "clusters": ids.clusters, "radar": ids.radar, "song": ids.song}

    @app.callback(
        *[Output(graphs[p]("graph"), "config") for p in PANELS],
        Input(ids.links("extraction"), "data"),
        Input(ids.links("concept"), "data"),
        Input(ids.links("song"), "data"),
    )
    def name_downloads(extraction_id, concept_id, track_id):
        names = file_names(ctx.data, as_id(extraction_id), as_id(concept_id), as_track(track_id))
        return tuple(graph_config(names[p]) for p in PANELS)
