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
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from whypop.ace.faithfulness import Faithfulness
from whypop.app.data import Concept, ExtractionView, Placement, SongFeatures
from whypop.app.layout import BASE_SIZE, MAX_SWARM, fit_swarm, legend_rows, pack_map, region_grid, swarm_offsets  # noqa: F401
from whypop.geometry import fmax_hz, hz_to_row
from whypop.config import AudioConfig

# Colour-blind friendly qualitative palette (Okabe-Ito, then Tableau) for genres and songs.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7", "#9C755F",
)
FONT = dict(family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size=12)


def genre_colors(genres: Sequence[str]) -> dict[str, str]:
    """A stable colour per genre (by position in the sorted genre list)."""
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(sorted(genres))}


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


CLUSTER_HANDLE = 9  # px, the marker under a cluster of the concept map
LABEL_ALL_UP_TO = 12  # clusters: label every one up to this many, else those of 3 or more concepts
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
                   fails: Mapping[int, str] | None = None, size: float = BASE_SIZE) -> dict:
    n = len(concepts)
    fails = fails or {}
    size = round(float(size), 1)
    hover = [concept_hover(c) + (f"<br>✗ {fails[c.concept_id]}" if c.concept_id in fails else "") for c in concepts]
    return dict(
        type="scatter", mode="markers", name=_esc(genre), meta="concepts", legendgroup=genre,
        x=list(map(float, x)), y=list(map(float, y)),
        customdata=[c.concept_id for c in concepts],
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(color=color, size=[size] * n, opacity=[0.9] * n,
                    symbol=[_symbol(c, c.concept_id in fails) for c in concepts],
                    line=dict(width=min(1.5, size / 6), color=color)),
    )


def _selected_trace(size: float = BASE_SIZE) -> dict:
    return dict(type="scatter", mode="markers", meta="selected", x=[], y=[], hoverinfo="skip", showlegend=False,
                marker=dict(size=round(float(size), 1) + 10, symbol="circle-open", color="#111", line=dict(width=2.5, color="#111")))


def importance_figure(view: ExtractionView, colors: Mapping[str, str], width_px: float = 640, height_px: float = 380,
                      faith: Faithfulness | None = None, genres: Sequence[str] | None = None) -> go.Figure:
    """Panel 1: concept importance by genre, a beeswarm of TCAV scores (x = genre, y = score).

    One marker size for every genre: the largest at which no two markers overlap (see
    :func:`whypop.app.layout.fit_swarm`); ``layout.meta.marker_size`` tells the hover
    highlighting. ``genres``: show only these (the genre filter); None or empty: all.
    With ``faith`` (the extraction's deletion test), significant concepts whose deletion
    changes nothing on held-out songs are drawn crossed, with the reason in the hover.
    """
    shown = [g for g in view.genres if not genres or g in set(genres)]
    fails = deletion_failures(faith, view.concepts, view.random_means)
    data: list[dict] = []
    margin = dict(l=56, r=10, t=10, b=60)
    plot_h = max(100.0, height_px - margin["t"] - margin["b"])
    slot_px = max(10.0, (width_px - margin["l"] - margin["r"]) / max(1, len(shown)))
    groups = [[c for c in view.concepts if c.genre == g] for g in shown]
    swarm = fit_swarm([[c.tcav_mean for c in cs] for cs in groups], slot_px, plot_h, y_span=1.06)
    random_x: list[float | None] = []
    random_y: list[float | None] = []
    for gi, (genre, cs, offsets) in enumerate(zip(shown, groups, swarm.offsets)):
        if cs:
            data.append(_concept_trace(cs, gi + offsets, [c.tcav_mean for c in cs], genre, colors[genre], fails,
                                       swarm.size))
        if genre in view.random_means:
            random_x += [gi - 0.45, gi + 0.45, None]
            random_y += [view.random_means[genre]] * 2 + [None]
    if random_x:
        data.insert(0, dict(type="scatter", mode="lines", meta="random", name="random concepts (mean)",
                            x=random_x, y=random_y, line=dict(color="#999", dash="dot", width=1.5),
                            hovertemplate="random concepts: mean TCAV %{y:.2f}<extra></extra>"))
    data.append(_selected_trace(swarm.size))
    layout = _base_layout(height_px)
    many = len(shown) > 8
    layout.update(
        xaxis=dict(tickvals=list(range(len(shown))), ticktext=[_genre_tick(view, g) for g in shown],
                   range=[-0.6, len(shown) - 0.4], showgrid=False, zeroline=False, fixedrange=True,
                   tickangle=-35 if many else 0, tickfont=dict(size=10 if many else 12)),
        yaxis=dict(title=dict(text="TCAV score"), range=[-0.03, 1.03], zeroline=False, gridcolor="#eee", fixedrange=True),
        legend=dict(orientation="h", y=-0.12, x=0, font=dict(size=11)),
        showlegend=not many,  # the tick labels name the genres; a 16-genre legend would eat the plot
        margin=margin, meta=dict(marker_size=round(swarm.size, 1)),
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


@dataclass(frozen=True)
class ClusterInfo:
    """What a cluster of the concept map is: its genres and shares, top concept, flagged share."""

    cluster: int
    concepts: tuple[Concept, ...]
    shares: tuple[tuple[str, float], ...]  # (genre, share of the members), largest first
    top: Concept | None  # the most important significant member (None: no significant member)
    flagged: float  # share of members flagged as possibly spurious

    @property
    def mostly_flagged(self) -> bool:
        return self.flagged > 0.5

    def label(self) -> str:
        """The short label drawn under the cluster: its leading genre and share ("+" when it has others)."""
        genre, share = self.shares[0]
        return f"{_short(genre, 10)} {100 * share:.0f}%" + ("+" if len(self.shares) > 1 else "")

    def describe(self) -> str:
        """The full description (hover of the cluster, head of its concept list), plain text."""
        shares = ", ".join(f"{g} {100 * s:.0f}%" for g, s in self.shares)
        top = f"top concept {self.top.name} (TCAV {self.top.tcav_mean:.2f})" if self.top else "no significant concept"
        flagged = f"; mostly flagged as possibly spurious ({100 * self.flagged:.0f}%)" if self.mostly_flagged else (
            f"; {100 * self.flagged:.0f}% flagged" if self.flagged else "")
        return f"cluster {self.cluster}: {len(self.concepts)} concepts: {shares}; {top}{flagged}"


def cluster_infos(view: ExtractionView) -> dict[int, ClusterInfo]:
    """Each cluster's members and description (clusters with no member left out)."""
    out = {}
    by_cluster: dict[int, list[Concept]] = {}
    for c in view.concepts:
        if c.cluster is not None:
            by_cluster.setdefault(c.cluster, []).append(c)
    for k, cs in sorted(by_cluster.items()):
        counts: dict[str, int] = {}
        for c in cs:
            counts[c.genre] = counts.get(c.genre, 0) + 1
        shares = tuple(sorted(((g, n / len(cs)) for g, n in counts.items()), key=lambda gs: (-gs[1], gs[0])))
        sig = [c for c in cs if c.significant and not _flagged(c)]
        top = max(sig, key=lambda c: (c.tcav_mean, -c.concept_id)) if sig else None
        flagged = sum(1 for c in cs if _flagged(c)) / len(cs)
        ordered = tuple(sorted(cs, key=lambda c: (c.genre, -c.tcav_mean, c.concept_id)))
        out[k] = ClusterInfo(k, ordered, shares, top, flagged)
    return out


def _flagged(c: Concept) -> bool:
    return any(flag != SIGNIFICANCE_FLAG for flag, _ in c.flags)


def concept_map_figure(view: ExtractionView, colors: Mapping[str, str], height_px: float = 380,
                       width_px: float = 480) -> go.Figure:
    """Panel 2: the concept map: clusters of concepts across genres.

    Each cluster's concepts are packed on a disc whose radius grows with its member count
    (genres in sectors), clusters keep their t-SNE neighbourhoods but are pushed apart
    until none overlaps another (:func:`whypop.app.layout.pack_map`), and the marker size
    shrinks only when the map would not otherwise fit ``width_px`` x ``height_px``.
    Under each cluster: its size and leading genre (grey when mostly flagged); its
    marker's hover and click tell the rest. Concepts without a cluster keep their own
    place. ``width_px``: a conservative guess of the panel's width.
    """
    infos = {k: info for k, info in cluster_infos(view).items()  # a cluster needs a place on the map
             if k in view.cluster_xy or any(c.x is not None and c.y is not None for c in info.concepts)}
    placed = [c for c in view.concepts if c.cluster in infos or (c.x is not None and c.y is not None)]
    members: dict[int, list[int]] = {k: [c.concept_id for c in info.concepts] for k, info in infos.items()}
    centres: dict[int, tuple[float, float]] = {}
    for k, info in infos.items():
        if k in view.cluster_xy:
            centres[k] = view.cluster_xy[k]
        else:
            xs = [(c.x, c.y) for c in info.concepts if c.x is not None and c.y is not None]
            centres[k] = tuple(np.mean(xs, axis=0)) if xs else (0.0, 0.0)
    loose = [c for c in placed if c.cluster not in infos]
    for n, c in enumerate(loose):  # a concept without a cluster is a cluster of one (negative key)
        members[-1 - n] = [c.concept_id]
        centres[-1 - n] = (c.x, c.y)
    # with many clusters, the smallest (one or two concepts) go unlabelled: their marker's hover tells
    labelled = {k for k, info in infos.items() if len(infos) <= LABEL_ALL_UP_TO or len(info.concepts) >= 3}
    labels = {k: len(infos[k].label()) for k in labelled}
    margin = dict(l=10, r=10, t=10, b=10)
    plot_w, plot_h = width_px - margin["l"] - margin["r"], height_px - margin["t"] - margin["b"]
    packed = pack_map(members, centres, labels, plot_w, plot_h)
    pos = packed.positions
    data: list[dict] = []
    shapes = []
    ordered = [p for p in packed.clusters if p.key in infos]
    for p in packed.clusters:
        if p.key not in infos:
            continue
        grey = infos[p.key].mostly_flagged
        shapes.append(dict(type="circle", xref="x", yref="y", x0=p.x - p.radius - 0.15, x1=p.x + p.radius + 0.15,
                           y0=p.y - p.radius - 0.15, y1=p.y + p.radius + 0.15, layer="below",
                           fillcolor="#f4f4f4" if not grey else "#ececec", line=dict(color="#d0d0d0", width=1)))
    if ordered:
        ids_ = [p.key for p in ordered]
        grey = [infos[k].mostly_flagged for k in ids_]
        data.append(dict(
            type="scatter", mode="markers+text", meta="clusters", name="clusters", showlegend=False,
            x=[p.label_x for p in ordered], y=[p.label_y for p in ordered],
            customdata=[{"cluster": k} for k in ids_], text=[_esc(infos[k].label()) if k in labelled else "" for k in ids_],
            textposition="bottom center", textfont=dict(size=10, color=["#aaa" if g else "#444" for g in grey]),
            hovertext=[_cluster_hover(infos[k]) for k in ids_], hovertemplate="%{hovertext}<extra></extra>",
            # a small handle under the disc: hover or click it for the cluster (the highlight code resizes it)
            marker=dict(size=[CLUSTER_HANDLE] * len(ids_), color=["#ccc" if g else "#888" for g in grey], opacity=[1.0] * len(ids_),
                        symbol="triangle-up", line=dict(width=0)),
        ))
    for genre in view.genres:
        cs = [c for c in placed if c.genre == genre and c.concept_id in pos]
        if cs:
            data.append(_concept_trace(cs, [pos[c.concept_id][0] for c in cs], [pos[c.concept_id][1] for c in cs],
                                       genre, colors[genre], size=packed.marker_px))
    data.append(_selected_trace(packed.marker_px))
    layout = _base_layout(height_px)
    hidden = dict(showticklabels=False, showgrid=False, zeroline=False, title=None, fixedrange=True)
    layout.update(xaxis=dict(hidden, range=list(packed.x_range)),
                  yaxis=dict(hidden, range=list(packed.y_range), scaleanchor="x"), showlegend=False,
                  margin=margin, shapes=shapes, meta=dict(marker_size=round(packed.marker_px, 1), cluster_size=CLUSTER_HANDLE))
    if not placed:
        layout["annotations"] = [_note("no concept map in this extraction (no summary positions)")]
    return go.Figure(data=data, layout=layout)


def _cluster_hover(info: ClusterInfo) -> str:
    lines = [f"<b>cluster {info.cluster}</b>: {len(info.concepts)} concepts"]
    lines += [f"{_esc(g)} {100 * s:.0f}%" for g, s in info.shares[:6]]
    if len(info.shares) > 6:
        lines.append(f"and {len(info.shares) - 6} more genres")
    lines.append(f"top: {_esc(info.top.name)} (TCAV {info.top.tcav_mean:.2f})" if info.top else "no significant concept")
    if info.flagged:
        lines.append(("<i>mostly flagged</i> " if info.mostly_flagged else "") + f"{100 * info.flagged:.0f}% flagged")
    lines.append("click: list its concepts")
    return "<br>".join(lines)


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
    """Panel 5: the song's spectrogram (a server-rendered image) with each concept patch outlined.

    The outlines carry no text: a legend at the right names each concept once, keyed by
    its outline colour (with its patch count), so labels never pile up however many
    patches a song has; hovering anywhere names the regions under the pointer. x is in
    seconds, y in image rows counted from the bottom (ticks in Hz, up to the run's mel
    range). ``shapes[0]`` is the playhead that ``assets/whypop.js`` moves; the
    transparent heatmap (meta "seek") makes every point of the image clickable to seek
    and carries the hover names. When the song (``song_seconds``) is shorter than the
    window, the part after its end is shaded and labelled: silence padding, or the clip
    repeated (``audio.pad``); the audio and the playhead stop at the song's end.
    """
    height, width = image_size
    duration = float(audio.duration)
    sec_per_px = duration / width
    colors = dict(colors or concept_colors(placements))
    shapes: list[dict] = [dict(type="line", name="playhead", x0=0, x1=0, y0=0, y1=height, xref="x", yref="y",
                               line=dict(color="#e00", width=2), layer="above")]
    counts: dict[int, int] = {}
    names: dict[int, str] = {}
    for p in placements:
        x0, y0, x1, y1 = p.box
        color = colors.get(p.concept_id, "#fff")
        shapes.append(dict(type="rect", x0=x0 * sec_per_px, x1=x1 * sec_per_px, y0=height - y1, y1=height - y0,
                           line=dict(color=color, width=1.5), fillcolor="rgba(0,0,0,0)", layer="above"))
        counts[p.concept_id] = counts.get(p.concept_id, 0) + 1
        names.setdefault(p.concept_id, p.name)
    margin = dict(l=60, r=10, t=10, b=45)
    annotations = []
    if names:
        margin["r"] = LEGEND_PX
        rows = legend_rows(height_px - margin["t"] - margin["b"])
        entries = list(names)
        shown = entries if len(entries) <= rows else entries[: rows - 1]
        step = 1.0 / rows
        for i, cid in enumerate(shown):
            label = _short(names[cid], LEGEND_CHARS)
            annotations.append(dict(text=_esc(label), x=1.01, y=1 - i * step, xref="paper", yref="paper",
                                    xanchor="left", yanchor="top", showarrow=False, align="left",
                                    font=dict(size=10, color="#fff"), bgcolor=_rgba(colors.get(cid, "#888"), 0.9),
                                    borderpad=1, hovertext=_esc(f"{names[cid]}: {counts[cid]} patches")))
        if len(shown) < len(entries):
            annotations.append(dict(text=f"+{len(entries) - len(shown)} more concepts (hover the image)", x=1.01,
                                    y=1 - len(shown) * step, xref="paper", yref="paper", xanchor="left", yanchor="top",
                                    showarrow=False, font=dict(size=10, color="#666")))
    if song_seconds is not None and 0 < song_seconds < duration - 1e-3:
        shapes.append(dict(type="rect", name="after-end", x0=song_seconds, x1=duration, y0=0, y1=height, xref="x",
                           yref="y", line=dict(width=0), fillcolor="rgba(255,255,255,0.18)", layer="above"))
        label = "song ends: silence padding" if audio.pad == "silence" else "song ends: the clip repeated"
        annotations.append(dict(text=label, x=song_seconds, y=height / 2, xanchor="left", showarrow=False,
                                font=dict(size=10, color="#fff"), bgcolor="rgba(0,0,0,0.6)"))
    cols, grid_rows = min(width, 160), SEEK_ROWS
    grid = region_grid([p.box for p in placements], [_esc(p.name) for p in placements], width, height, cols, grid_rows)
    text = [["" if not cell else "<br>" + cell for cell in row] for row in grid]
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000, 16000) if f < fmax_hz(audio)]
    data = [dict(type="heatmap", meta="seek", z=[[0] * cols] * grid_rows, x0=duration / cols / 2, dx=duration / cols,
                 y0=height / grid_rows / 2, dy=height / grid_rows, text=text,
                 opacity=0, showscale=False, hovertemplate="%{x:.2f} s%{text}<br><i>click to play from here</i><extra></extra>",
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
        margin=margin,
    )
    # built per request: skip plotly's validation of the hover grid (several times the build time)
    return go.Figure(data=data, layout=layout, _validate=False)


LEGEND_PX = 190  # right margin of panel 5 holding the concept legend
LEGEND_CHARS = 26  # longest concept name in the legend before it is shortened
SEEK_ROWS = 12  # rows of the hover grid over the spectrogram (its text is most of the payload)


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
