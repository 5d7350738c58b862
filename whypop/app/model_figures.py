"""Figure builders for the model and its checks: the confusion matrix and the faithfulness curves.

Plain functions from data to ``go.Figure``, like :mod:`whypop.app.figures` (whose layout
helpers they share); used by the HTML report and callable from a notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

from whypop.app.figures import _base_layout, _esc, _note

CURVES = (("top", "top concepts", "#D55E00", "solid"), ("random", "random concepts", "#777777", "dash"),
          ("bottom", "bottom concepts", "#0072B2", "dot"))
TESTS = ("deletion", "insertion")


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


@dataclass(frozen=True)
class Curves:
    """One faithfulness test of one genre: mean class probability after k = 1.. concepts."""

    genre: str
    test: str  # "deletion" or "insertion"
    lines: dict[str, tuple[float | None, ...]]  # "top" / "random" / "bottom" -> values for k = 1..
    baseline: float | None


def faithfulness_curves(faithfulness: Mapping[str, Any] | None) -> list[Curves]:
    """The probability curves of a stored ``faithfulness`` result (``genres[G].deletion|insertion``).

    Each test holds ``top``, ``random`` and ``bottom`` lists and a ``baseline``, either
    directly or under ``probability``; anything else is skipped.
    """
    out: list[Curves] = []
    genres = (faithfulness or {}).get("genres") if isinstance(faithfulness, Mapping) else None
    if not isinstance(genres, Mapping):
        return out
    for genre in sorted(genres):
        g = genres[genre]
        for test in TESTS:
            t = g.get(test) if isinstance(g, Mapping) else None
            if isinstance(t, Mapping) and isinstance(t.get("probability"), Mapping):
                t = {"baseline": t.get("baseline"), **t["probability"]}
            if not isinstance(t, Mapping):
                continue
            lines = {name: tuple(_num(v) for v in t[name]) for name, *_ in CURVES
                     if isinstance(t.get(name), Sequence) and not isinstance(t.get(name), str)}
            if lines:
                out.append(Curves(str(genre), test, lines, _num(t.get("baseline"))))
    return out


def faithfulness_figure(curves: Sequence[Curves], height_px: float | None = None) -> go.Figure:
    """One small plot per genre and test: class probability against k for top, random and bottom concepts."""
    genres = list(dict.fromkeys(c.genre for c in curves))
    tests = [t for t in TESTS if any(c.test == t for c in curves)] or list(TESTS)
    rows, cols = max(1, len(genres)), len(tests)
    height = height_px or 60 + 170 * rows
    layout = _base_layout(height)
    layout.update(margin=dict(l=50, r=10, t=30, b=40), showlegend=True,
                  legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, font=dict(size=11)))
    data: list[dict] = []
    annotations: list[dict] = []
    shown: set[str] = set()
    for i, genre in enumerate(genres):
        for j, test in enumerate(tests):
            n = i * cols + j + 1
            xa, ya = ("x", "y") if n == 1 else (f"x{n}", f"y{n}")
            x0, x1 = j / cols + 0.06, (j + 1) / cols - 0.04
            y1 = 1 - i / rows - 0.09 / rows
            y0 = 1 - (i + 1) / rows + 0.12 / rows
            layout["xaxis" if n == 1 else f"xaxis{n}"] = dict(domain=[x0, x1], anchor=ya, dtick=1, fixedrange=True,
                                                              gridcolor="#eee", zeroline=False)
            layout["yaxis" if n == 1 else f"yaxis{n}"] = dict(domain=[y0, y1], anchor=xa, range=[0, 1.02],
                                                              fixedrange=True, gridcolor="#eee", zeroline=False)
            annotations.append(dict(text=f"<b>{_esc(genre)}</b>: {test}", x=(x0 + x1) / 2, y=y1, xref="paper",
                                    yref="paper", showarrow=False, xanchor="center", yanchor="bottom",
                                    font=dict(size=11)))
            c = next((c for c in curves if c.genre == genre and c.test == test), None)
            if c is None:
                continue
            for name, label, color, dash in CURVES:
                values = c.lines.get(name)
                if not values:
                    continue
                data.append(dict(type="scatter", mode="lines+markers", xaxis=xa, yaxis=ya, name=label,
                                 legendgroup=name, showlegend=name not in shown,
                                 x=list(range(1, len(values) + 1)), y=list(values),
                                 line=dict(color=color, dash=dash, width=2), marker=dict(size=5, color=color),
                                 hovertemplate=f"{_esc(genre)}, {test} of %{{x}} {label}: "
                                               "probability %{y:.2f}<extra></extra>"))
                shown.add(name)
            if c.baseline is not None:
                k = max((len(v) for v in c.lines.values()), default=1)
                data.append(dict(type="scatter", mode="lines", xaxis=xa, yaxis=ya, name="nothing changed",
                                 legendgroup="baseline", showlegend="baseline" not in shown,
                                 x=[1, max(1, k)], y=[c.baseline] * 2, line=dict(color="#000", width=1, dash="dot"),
                                 hovertemplate=f"{_esc(genre)}: probability with nothing changed {c.baseline:.2f}"
                                               "<extra></extra>"))
                shown.add("baseline")
    if not curves:
        annotations.append(_note("no faithfulness results in this extraction"))
    layout["annotations"] = annotations
    return go.Figure(data=data, layout=layout)


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
