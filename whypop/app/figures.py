"""Figure builders: plain functions from data to ``go.Figure``, tested without a browser.

Figures are built from dicts (one validation pass, several times faster than
``make_subplots`` and ``add_trace``) with the ``none`` template to keep payloads small.
Each trace carries a ``meta`` role ("concepts", "clusters", "links", "selected",
"random", "song", "seek", "playhead") that the clientside code in ``assets/whypop.js``
uses to find what to restyle; concept points carry their concept id in ``customdata``,
radar points their track id.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from whypop.ace.faithfulness import Faithfulness
from whypop.app.data import Concept, ExtractionView, Placement, SongFeatures
from whypop.geometry import fmax_hz, hz_to_row
from whypop.config import AudioConfig

# Colour-blind friendly qualitative palette (Okabe-Ito, then Tableau) for genres and songs.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7", "#9C755F",
)
BASE_SIZE = 10  # px, concept marker diameter
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size=12)
MAX_SWARM = 0.42  # half-width of a genre's swarm, in genre slots


def genre_colors(genres: Sequence[str]) -> dict[str, str]:
    """A stable colour per genre (by position in the sorted genre list)."""
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(sorted(genres))}


def swarm_offsets(values: Sequence[float], dx: float, dy: float, limit: float = MAX_SWARM) -> np.ndarray:
    """Horizontal offsets for a beeswarm: no two points closer than one marker.

    Points are placed in order of value; each takes the offset of smallest magnitude at
    which the ellipse distance ((dx_i/dx)^2 + (dy_i/dy)^2) to every placed point is at
    least 1 (``dx``, ``dy``: a marker's diameter in x and y data units). Offsets wider
    than ``limit`` are scaled down to fit the genre's slot. Deterministic.
    """
    v = np.asarray(values, dtype=float)
    out = np.zeros(v.size)
    if v.size == 0:
        return out
    order = np.argsort(v, kind="stable")
    placed_y = np.empty(v.size)
    placed_o = np.empty(v.size)
    n = 0
    for i in order:
        y = v[i]
        near = np.abs(placed_y[:n] - y) < dy
        py, po = placed_y[:n][near], placed_o[:n][near]
        best = 0.0
        if py.size:
            w = dx * np.sqrt(np.maximum(0.0, 1.0 - ((py - y) / dy) ** 2))
            cands = np.concatenate([[0.0], po - w, po + w])
            cands = cands[np.lexsort((cands, np.abs(cands)))]  # smallest magnitude first, left before right
            dist = ((cands[:, None] - po[None, :]) / dx) ** 2 + ((py[None, :] - y) / dy) ** 2
            ok = np.all(dist >= 1 - 1e-9, axis=1)
            best = float(cands[np.argmax(ok)]) if ok.any() else float(cands[-1])
        out[i] = best
        placed_y[n], placed_o[n] = y, best
        n += 1
    widest = float(np.abs(out).max())
    if widest > limit:
        out *= limit / widest
    return out


def concept_hover(c: Concept) -> str:
    """Hover text of a concept: name, genre, TCAV mean ± std, p-value, significance, flags."""
    sig = "significant" if c.significant else "not significant"
    lines = [
        f"<b>{_esc(c.name)}</b> ({_esc(c.genre)})",
        f"TCAV {c.tcav_mean:.2f} ± {c.tcav_std:.2f}",
        f"p = {format_p(c.p_value)} · {sig}",
        f"{c.n_patches} patches",
    ]
    for flag, reason in c.flags:
        lines.append(f"⚑ {_esc(flag)}" + (f": {_esc(reason)}" if reason else ""))
    return "<br>".join(lines)


SIGNIFICANCE_FLAG = "not-significant"  # shown by the open marker already


def _symbol(c: Concept, fails: bool = False) -> str:
    """Filled = significant, open = not; a diamond when a spurious-concept flag is raised;
    crossed (``-x``) when significance fails the deletion test."""
    flagged = any(flag != SIGNIFICANCE_FLAG for flag, _ in c.flags)
    base = "diamond" if flagged else "circle"
    if fails:
        return base + "-x-open"
    return base if c.significant else base + "-open"


def deletion_failures(faith: Faithfulness | None, concepts: Sequence[Concept],
                      random_means: Mapping[str, float] | None = None) -> dict[int, str]:
    """Concepts significant for raising their genre (TCAV above 0.5 and above the random
    mean) whose deletion from held-out songs changes nothing: id -> why, for the hover."""
    if faith is None:
        return {}
    effects = {e.concept_id: (g, e) for g in faith.genres.values() for e in g.concepts}
    random_means = random_means or {}
    out = {}
    for c in concepts:
        raising = c.tcav_mean > max(0.5, random_means.get(c.genre, 0.5))
        if not c.significant or not raising or c.concept_id not in effects:
            continue
        g, e = effects[c.concept_id]
        if not e.changes_nothing:
            continue
        if e.songs == 0:
            out[c.concept_id] = f"significant by TCAV, but found in none of {g.songs} held-out songs"
        else:
            out[c.concept_id] = (f"significant by TCAV, but removing it changes nothing: p({_esc(c.genre)}) "
                                 f"moves {e.drop:+.3f} over the {e.songs} held-out songs it is in")
    return out


def _concept_trace(concepts: Sequence[Concept], x: Sequence[float], y: Sequence[float], genre: str, color: str,
                   fails: Mapping[int, str] | None = None) -> dict:
    n = len(concepts)
    fails = fails or {}
    hover = [concept_hover(c) + (f"<br>✗ {fails[c.concept_id]}" if c.concept_id in fails else "") for c in concepts]
    return dict(
        type="scatter", mode="markers", name=_esc(genre), meta="concepts", legendgroup=genre,
        x=list(map(float, x)), y=list(map(float, y)),
        customdata=[c.concept_id for c in concepts],
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(color=color, size=[BASE_SIZE] * n, opacity=[0.9] * n,
                    symbol=[_symbol(c, c.concept_id in fails) for c in concepts], line=dict(width=1.5, color=color)),
    )


def _selected_trace() -> dict:
    return dict(type="scatter", mode="markers", meta="selected", x=[], y=[], hoverinfo="skip", showlegend=False,
                marker=dict(size=BASE_SIZE + 10, symbol="circle-open", color="#111", line=dict(width=2.5, color="#111")))


def importance_figure(view: ExtractionView, colors: Mapping[str, str], width_px: float = 640, height_px: float = 380,
                      faith: Faithfulness | None = None) -> go.Figure:
    """Panel 1: concept importance by genre, a beeswarm of TCAV scores (x = genre, y = score).

    With ``faith`` (the extraction's deletion test), significant concepts whose deletion
    changes nothing on held-out songs are drawn crossed, with the reason in the hover.
    """
    genres = list(view.genres)
    fails = deletion_failures(faith, view.concepts, view.random_means)
    data: list[dict] = []
    plot_h = max(100.0, height_px - 90)
    slot_px = max(40.0, (width_px - 80) / max(1, len(genres)))
    dy, dx = (BASE_SIZE + 1) / plot_h, (BASE_SIZE + 1) / slot_px
    random_x: list[float | None] = []
    random_y: list[float | None] = []
    for gi, genre in enumerate(genres):
        cs = [c for c in view.concepts if c.genre == genre]
        offsets = swarm_offsets([c.tcav_mean for c in cs], dx, dy)
        if cs:
            data.append(_concept_trace(cs, gi + offsets, [c.tcav_mean for c in cs], genre, colors[genre], fails))
        if genre in view.random_means:
            random_x += [gi - 0.45, gi + 0.45, None]
            random_y += [view.random_means[genre]] * 2 + [None]
    if random_x:
        data.insert(0, dict(type="scatter", mode="lines", meta="random", name="random concepts (mean)",
                            x=random_x, y=random_y, line=dict(color="#999", dash="dot", width=1.5),
                            hovertemplate="random concepts: mean TCAV %{y:.2f}<extra></extra>"))
    data.append(_selected_trace())
    layout = _base_layout(height_px)
    layout.update(
        xaxis=dict(tickvals=list(range(len(genres))), ticktext=[_genre_tick(view, g) for g in genres],
                   range=[-0.6, len(genres) - 0.4], showgrid=False, zeroline=False, fixedrange=True),
        yaxis=dict(title=dict(text="TCAV score"), range=[-0.03, 1.03], zeroline=False, gridcolor="#eee", fixedrange=True),
        legend=dict(orientation="h", y=-0.12, x=0, font=dict(size=11)),
        margin=dict(l=56, r=10, t=10, b=60),
    )
    if not view.concepts:
        layout["annotations"] = [_note("this extraction found no concepts")]
    elif view.plan_line:
        layout["annotations"] = [dict(text=_esc(_short(view.plan_line, 140)), xref="paper", yref="paper", x=0,
                                      y=1.0, xanchor="left", yanchor="bottom", showarrow=False,
                                      font=dict(size=10, color="#666"))]
        layout["margin"]["t"] = 24
    return go.Figure(data=data, layout=layout)


def _genre_tick(view: ExtractionView, genre: str) -> str:
    """The genre's axis label with the number of songs its TCAV scores rest on."""
    n = view.score_songs.get(genre)
    if n is None:
        return _esc(genre)
    few = view.min_score_songs and n < view.min_score_songs
    return f"{_esc(genre)}<br><span style='font-size:10px;color:{'#b00' if few else '#777'}'>{n} songs</span>"


def concept_map_figure(view: ExtractionView, colors: Mapping[str, str], height_px: float = 380) -> go.Figure:
    """Panel 2: the concept map, cluster centres with each cluster's concepts around them."""
    placed = [c for c in view.concepts if c.x is not None and c.y is not None]
    data: list[dict] = []
    link_x: list[float | None] = []
    link_y: list[float | None] = []
    for c in placed:
        if c.cluster is not None and c.cluster in view.cluster_xy:
            cx, cy = view.cluster_xy[c.cluster]
            link_x += [cx, c.x, None]
            link_y += [cy, c.y, None]
    if link_x:
        data.append(dict(type="scatter", mode="lines", meta="links", x=link_x, y=link_y, hoverinfo="skip",
                         showlegend=False, line=dict(color="#ccc", width=1)))
    if view.cluster_xy:
        ids = sorted(view.cluster_xy)
        sizes = {k: sum(1 for c in view.concepts if c.cluster == k) for k in ids}
        data.append(dict(
            type="scatter", mode="markers+text", meta="clusters", name="clusters", showlegend=False,
            x=[view.cluster_xy[k][0] for k in ids], y=[view.cluster_xy[k][1] for k in ids],
            customdata=[{"cluster": k} for k in ids], text=[f"{k}" for k in ids], textfont=dict(size=10, color="#555"),
            hovertext=[f"<b>cluster {k}</b><br>{sizes[k]} concepts" for k in ids],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=[22] * len(ids), color="#f2f2f2", opacity=[1.0] * len(ids), line=dict(color="#bbb", width=1)),
        ))
    for genre in view.genres:
        cs = [c for c in placed if c.genre == genre]
        if cs:
            data.append(_concept_trace(cs, [c.x for c in cs], [c.y for c in cs], genre, colors[genre]))
    data.append(_selected_trace())
    layout = _base_layout(height_px)
    hidden = dict(showticklabels=False, showgrid=False, zeroline=False, title=None)
    layout.update(xaxis=hidden, yaxis=dict(hidden, scaleanchor="x"), showlegend=False,
                  margin=dict(l=10, r=10, t=10, b=10))
    if not placed:
        layout["annotations"] = [_note("no concept map in this extraction (no summary positions)")]
    return go.Figure(data=data, layout=layout)


def radar_figure(songs: Sequence[SongFeatures], source: str, height_px: float | None = None, columns: int = 3) -> go.Figure:
    """Panel 4: one radar (polar subplot) per song over percentile-scaled features.

    The radius is the song's percentile within the collection (0..1); the hover gives
    the raw value with its unit. A song without data for ``source`` keeps its place,
    marked "no data".
    """
    n = len(songs)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    height = height_px or 40 + 230 * rows
    layout = _base_layout(height)
    # dragmode must not be False here: plotly's polar subplots then drop click events
    layout.update(showlegend=False, margin=dict(l=30, r=30, t=30, b=10), dragmode="zoom")
    annotations: list[dict] = []
    data: list[dict] = []
    gap_x, gap_top = 0.16, 0.16 / rows
    label = "Echo Nest" if source == "echonest" else "audio"
    for i, song in enumerate(songs):
        r_, c_ = divmod(i, cols)
        x0, x1 = c_ / cols + gap_x / 2, (c_ + 1) / cols - gap_x / 2
        y1 = 1 - r_ / rows - gap_top
        y0 = 1 - (r_ + 1) / rows + 0.04 / rows
        key = "polar" if i == 0 else f"polar{i + 1}"
        color = PALETTE[i % len(PALETTE)]
        layout[key] = dict(
            domain=dict(x=[x0, x1], y=[y0, y1]), bgcolor="#fafafa",
            radialaxis=dict(range=[0, 1], tickvals=[0.25, 0.5, 0.75, 1.0], showticklabels=False, gridcolor="#ddd",
                            linecolor="#ddd"),
            angularaxis=dict(tickfont=dict(size=9), gridcolor="#ddd", linecolor="#ccc", rotation=90, direction="clockwise"),
        )
        title = _short(song.song, 30)
        annotations.append(dict(text=f"<b>{_esc(title)}</b>" if song.present else f"<span style='color:#888'>{_esc(title)}</span>",
                                x=(x0 + x1) / 2, y=y1 + 0.05 / rows, xref="paper", yref="paper", showarrow=False,
                                font=dict(size=11), xanchor="center", yanchor="bottom", hovertext=_esc(song.song)))
        if not song.present:
            annotations.append(dict(text=f"no {label} data", x=(x0 + x1) / 2, y=(y0 + y1) / 2, xref="paper", yref="paper",
                                    showarrow=False, font=dict(size=11, color="#a00"), bgcolor="rgba(255,255,255,0.85)"))
            # an empty trace keeps the subplot drawn (and clickable at its centre point)
            data.append(dict(type="scatterpolar", subplot=key, meta=song.track_id, r=[0], theta=[""], mode="markers",
                             marker=dict(size=1, color="rgba(0,0,0,0)"), customdata=[song.track_id],
                             hovertext=[f"<b>{_esc(song.song)}</b><br>no {label} data"], hovertemplate="%{hovertext}<extra></extra>"))
            continue
        theta = [v.spec.label for v in song.values]
        r = [None if v.percentile is None else round(float(v.percentile), 4) for v in song.values]
        hover = [
            f"<b>{_esc(song.song)}</b><br>{_esc(v.spec.label)}: {_esc(v.text)}"
            + ("" if v.percentile is None else f" (percentile {100 * v.percentile:.0f})")
            + f"<br><i>{_esc(v.spec.meaning)}</i>"
            for v in song.values
        ]
        missing = sum(1 for v in song.values if v.raw is None)
        if missing:
            annotations[-1]["text"] += f"<br><span style='font-size:9px;color:#888'>{missing} not measurable</span>"
        data.append(dict(
            type="scatterpolar", subplot=key, meta=song.track_id, name=_esc(song.song),
            r=r + r[:1], theta=theta + theta[:1], mode="lines+markers", fill="toself", connectgaps=False,
            customdata=[song.track_id] * (len(r) + 1), hovertext=hover + hover[:1],
            hovertemplate="%{hovertext}<extra></extra>", opacity=1.0,
            line=dict(color=color, width=2), marker=dict(size=6, color=color), fillcolor=_rgba(color, 0.25),
        ))
    if not songs:
        annotations.append(_note("select a concept to see its example songs"))
    layout["annotations"] = annotations
    return go.Figure(data=data, layout=layout)


def song_figure(image_url: str, placements: Sequence[Placement], audio: AudioConfig, image_size: tuple[int, int],
                colors: Mapping[int, str] | None = None, height_px: float = 360,
                song_seconds: float | None = None) -> go.Figure:
    """Panel 5: the song's spectrogram (a server-rendered image) with each concept patch outlined and labelled.

    x is in seconds, y in image rows counted from the bottom (ticks in Hz, up to the
    run's mel range). ``shapes[0]`` is the playhead that ``assets/whypop.js`` moves; the
    transparent heatmap (meta "seek") makes every point of the image clickable to seek.
    When the song (``song_seconds``) is shorter than the window, the part after its end
    is shaded and labelled: silence padding, or the clip repeated (``audio.pad``); the
    audio and the playhead stop at the song's end.
    """
    height, width = image_size
    duration = float(audio.duration)
    sec_per_px = duration / width
    colors = dict(colors or concept_colors(placements))
    shapes: list[dict] = [dict(type="line", name="playhead", x0=0, x1=0, y0=0, y1=height, xref="x", yref="y",
                               line=dict(color="#e00", width=2), layer="above")]
    annotations = []
    for p in placements:
        x0, y0, x1, y1 = p.box
        color = colors.get(p.concept_id, "#fff")
        shapes.append(dict(type="rect", x0=x0 * sec_per_px, x1=x1 * sec_per_px, y0=height - y1, y1=height - y0,
                           line=dict(color=color, width=1.5), fillcolor="rgba(0,0,0,0)", layer="above"))
        annotations.append(dict(text=_esc(p.name), x=x0 * sec_per_px, y=height - y0, xanchor="left", yanchor="bottom",
                                showarrow=False, font=dict(size=10, color="#fff"), bgcolor=_rgba(color, 0.85), borderpad=1))
    if song_seconds is not None and 0 < song_seconds < duration - 1e-3:
        shapes.append(dict(type="rect", name="after-end", x0=song_seconds, x1=duration, y0=0, y1=height, xref="x",
                           yref="y", line=dict(width=0), fillcolor="rgba(255,255,255,0.18)", layer="above"))
        label = "song ends: silence padding" if audio.pad == "silence" else "song ends: the clip repeated"
        annotations.append(dict(text=label, x=song_seconds, y=height / 2, xanchor="left", showarrow=False,
                                font=dict(size=10, color="#fff"), bgcolor="rgba(0,0,0,0.6)"))
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000, 16000) if f < fmax_hz(audio)]
    data = [dict(type="heatmap", meta="seek", z=[[0] * width], x0=sec_per_px / 2, dx=sec_per_px, y0=height / 2, dy=height,
                 opacity=0, showscale=False, hovertemplate="%{x:.2f} s — click to play from here<extra></extra>",
                 colorscale=[[0, "#000"], [1, "#000"]])]
    layout = _base_layout(height_px)
    layout.update(
        images=[dict(source=image_url, xref="x", yref="y", x=0, y=height, sizex=duration, sizey=height,
                     xanchor="left", yanchor="top", sizing="stretch", layer="below")],
        shapes=shapes, annotations=annotations, showlegend=False,
        xaxis=dict(title=dict(text="time (s)"), range=[0, duration], showgrid=False, zeroline=False, fixedrange=True),
        yaxis=dict(title=dict(text="frequency (Hz, mel scale)"), range=[0, height], showgrid=False, zeroline=False,
                   fixedrange=True, tickvals=[height * (1 - float(hz_to_row(f, audio)) / audio.image_size) for f in ticks],
                   ticktext=[f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks]),
        margin=dict(l=60, r=10, t=10, b=45),
    )
    return go.Figure(data=data, layout=layout)


def concept_colors(placements: Sequence[Placement]) -> dict[int, str]:
    """A distinct colour per concept found in a song (in order of first appearance)."""
    out: dict[int, str] = {}
    for p in placements:
        if p.concept_id not in out:
            out[p.concept_id] = PALETTE[len(out) % len(PALETTE)]
    return out


VERDICT_K = 3  # the verdict speaks of the top 3 concepts (fewer when a genre has fewer)


def verdict_lines(faith: Faithfulness | None) -> list[str]:
    """Panel 1's verdicts: per genre, what removing its top concepts does to accuracy."""
    if faith is None:
        return []
    return [g.verdict(VERDICT_K) for g in faith.genres.values()]


def faithfulness_figure(faith: Faithfulness | None, colors: Mapping[str, str], height_px: float = 190) -> go.Figure:
    """Small curves per genre: p(genre) on held-out songs after deleting k concepts, k = 0..5.

    Solid in the genre's colour: the top-k concepts by TCAV; grey dashed: random regions
    of the same area in the same songs; grey dotted: the k lowest-ranked concepts. k = 0
    is the songs untouched.
    """
    if faith is None or not faith.genres:
        return message_figure("no deletion test for this extraction yet (`whypop evaluate --run RUN_DIR`)", height_px)
    genres = list(faith.genres)
    n = len(genres)
    gap = 0.04
    width = (1 - gap * (n - 1)) / n
    data: list[dict] = []
    layout = _base_layout(height_px)
    annotations = []
    for i, genre in enumerate(genres):
        g = faith.genres[genre]
        d = g.deletion.probability
        ks = list(range(0, len(d.top) + 1))
        ax = "" if i == 0 else str(i + 1)
        color = colors.get(genre, "#333")
        for name, ys, line in (("top concepts", d.top, dict(color=color, width=2)),
                               ("random regions, same area", d.random, dict(color="#888", width=1.5, dash="dash")),
                               ("bottom concepts", d.bottom, dict(color="#bbb", width=1.5, dash="dot"))):
            data.append(dict(type="scatter", mode="lines+markers", x=ks, y=[d.baseline, *ys], xaxis=f"x{ax}",
                             yaxis=f"y{ax}", name=name, legendgroup=name, showlegend=i == 0 and name != "top concepts",
                             line=line, marker=dict(size=4, color=line["color"]), meta="faithfulness",
                             hovertemplate=f"{_esc(genre)}: {name}, k=%{{x}}: p=%{{y:.2f}}<extra></extra>"))
        x0 = i * (width + gap)
        layout[f"xaxis{ax}"] = dict(domain=[x0, x0 + width], tickvals=ks, fixedrange=True, showgrid=False,
                                    zeroline=False, title=dict(text="concepts removed", font=dict(size=10)))
        layout[f"yaxis{ax}"] = dict(range=[-0.03, 1.03], fixedrange=True, gridcolor="#eee", zeroline=False,
                                    showticklabels=i == 0, title=dict(text=f"p(genre)" if i == 0 else ""))
        annotations.append(dict(text=f"<b>{_esc(genre)}</b> ({g.songs} songs)", x=x0 + width / 2, y=1.0,
                                xref="paper", yref="paper", yanchor="bottom", showarrow=False, font=dict(size=11)))
    layout.update(annotations=annotations, margin=dict(l=48, r=10, t=22, b=62),
                  legend=dict(orientation="h", y=-0.42, x=0, font=dict(size=10)))
    return go.Figure(data=data, layout=layout)


def message_figure(text: str, height_px: float = 300) -> go.Figure:
    """An empty figure that says why it is empty."""
    layout = _base_layout(height_px)
    layout.update(xaxis=dict(visible=False), yaxis=dict(visible=False), annotations=[_note(text)])
    return go.Figure(data=[], layout=layout)


# -- helpers -------------------------------------------------------------------------------


def _base_layout(height_px: float) -> dict:
    return dict(template="none", height=height_px, font=FONT, paper_bgcolor="#fff", plot_bgcolor="#fff",
                hovermode="closest", hoverlabel=dict(font=dict(size=12)), dragmode=False,
                margin=dict(l=40, r=10, t=10, b=40))


def _note(text: str) -> dict:
    return dict(text=_esc(text), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=13, color="#666"))


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "not computed"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _esc(text: str) -> str:
    """Plotly text is HTML-like: escape what a song or concept name could smuggle in."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
