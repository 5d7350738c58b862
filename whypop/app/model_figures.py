"""Figure builders for the model: the confusion matrix.

Plain functions from data to ``go.Figure``, like :mod:`whypop.app.figures` (whose layout
helpers they share); used by the HTML report and callable from a notebook.
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from whypop.app.figures import _base_layout, _esc, _note



def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[float]], split: str = "test",
                     height_px: float | None = None) -> go.Figure:
    """The confusion matrix (rows: true genre, columns: predicted), counts written in the cells."""
    n = len(labels)
    height = height_px or max(260, 120 + 42 * n)
    names = [_esc(g) for g in labels]
    z = [[float(v) for v in row] for row in matrix]
    totals = [sum(row) or 1.0 for row in z]
    share = [[v / t for v in row] for row, t in zip(z, totals)]  # colour by row share: genres of any size compare
    text = [[f"{int(v)}" if float(v).is_integer() else f"{v:.2f}" for v in row] for row in z]
    hover = [[f"true {names[i]}, predicted {names[j]}: {text[i][j]} ({100 * share[i][j]:.0f}% of {names[i]})"
              for j in range(n)] for i in range(n)]
    layout = _base_layout(height)
    layout.update(
        xaxis=dict(title=dict(text=f"predicted genre ({_esc(split)})"), tickvals=list(range(n)), ticktext=names,
                   side="bottom", showgrid=False, zeroline=False, fixedrange=True),
        yaxis=dict(title=dict(text="true genre"), tickvals=list(range(n)), ticktext=names, autorange="reversed",
                   showgrid=False, zeroline=False, fixedrange=True),
        margin=dict(l=90, r=10, t=10, b=70),
    )
    data = [dict(type="heatmap", z=share, x=list(range(n)), y=list(range(n)), text=text, texttemplate="%{text}",
                 customdata=hover, hovertemplate="%{customdata}<extra></extra>", zmin=0, zmax=1,
                 colorscale=[[0, "#ffffff"], [1, "#0b4f8a"]], showscale=False)]
    if not n:
        layout["annotations"] = [_note("this model stored no confusion matrix")]
    return go.Figure(data=data, layout=layout)
