"""Small layout helpers shared by the panels (Bootstrap cards, graph configuration)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from whypop.app import figures
from whypop.app.export import BASE_CONFIG

GRAPH_CONFIG = BASE_CONFIG  # the download names follow the selection (whypop.app.export)


def card(number: int, title: str, help_text: str, body: Any, extra: Any = None, body_id: dict | None = None) -> dbc.Card:
    """A panel: numbered title, a one-line explanation, the body."""
    header = html.Div(
        [html.Div([html.Span(str(number), className="whypop-num"), html.Span(title, className="fw-semibold")]),
         extra if extra is not None else html.Span()],
        className="d-flex justify-content-between align-items-center gap-2 flex-wrap",
    )
    kwargs = {"id": body_id} if body_id is not None else {}
    return dbc.Card(
        [dbc.CardHeader([header, html.Div(help_text, className="small text-muted")]),
         dbc.CardBody(body, **kwargs)],
        className="h-100 shadow-sm",
    )


def graph(id_: dict, height: int, message: str, class_name: str = "", **kwargs: Any) -> dcc.Graph:
    """A dcc.Graph that starts with a figure saying what will appear there."""
    return dcc.Graph(id=id_, figure=figures.message_figure(message, height), config=GRAPH_CONFIG,
                     style={"height": f"{height}px"}, className=class_name, clear_on_unhover=True, **kwargs)
