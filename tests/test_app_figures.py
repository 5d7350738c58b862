"""Figure builders and image renderers of the dashboard, without a browser."""

from __future__ import annotations

import json

import numpy as np
import plotly.io as pio
import pytest

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop.app import figures, images
from whypop.app.data import AppData, Concept, ExtractionView, FeatureValue, Placement, SongFeatures, similar_lists
from whypop.config import AudioConfig
from whypop.features import AUDIO_FEATURES, ECHONEST_FEATURES
from whypop.store import RunStore


@pytest.fixture(scope="module")
def data(fake_run):  # noqa: F811
    return AppData(RunStore(fake_run))


def _concept(cid, genre="Pop", score=0.5, **kw):
    base = dict(concept_id=cid, genre=genre, name=f"{genre} concept {cid}", tcav_mean=score, tcav_std=0.05,
                p_value=0.001, significant=True, flags=(), cluster=0, x=0.0, y=0.0, n_patches=40)
    base.update(kw)
    return Concept(**base)


def _view(concepts, **kw):
    base = dict(extraction_id=1, genres=tuple(sorted({c.genre for c in concepts})), concepts=tuple(concepts),
                similar={}, threshold=0.5, cluster_xy={0: (0.0, 0.0)}, random_means={}, discovery={}, layer="layer4",
                created=0.0, model_id=1)
    base.update(kw)
    return ExtractionView(**base)


# -- beeswarm -------------------------------------------------------------------------------


def test_swarm_offsets_never_overlap_and_are_deterministic():
    rng = np.random.default_rng(1)
    values = np.round(rng.uniform(0.4, 0.6, 40), 2)  # many ties and near-ties
    dx, dy = 0.02, 0.03
    off = figures.swarm_offsets(values, dx, dy, limit=10)
    assert np.array_equal(off, figures.swarm_offsets(values, dx, dy, limit=10))
    for i in range(len(values)):
        for j in range(i):
            d = ((off[i] - off[j]) / dx) ** 2 + ((values[i] - values[j]) / dy) ** 2
            assert d >= 1 - 1e-6, (i, j, d)
    # isolated points stay on the centre line
    assert np.all(figures.swarm_offsets([0.1, 0.5, 0.9], dx, dy) == 0)
    assert figures.swarm_offsets([], dx, dy).size == 0


def test_swarm_offsets_fit_the_genre_slot():
    off = figures.swarm_offsets([0.5] * 200, 0.05, 0.03, limit=0.42)
    assert np.abs(off).max() == pytest.approx(0.42)
    assert len(np.unique(np.round(off, 9))) > 100  # spread out, not stacked


def test_importance_figure_one_trace_per_genre_with_concept_ids(data):
    view = data.view(2)
    colors = figures.genre_colors(view.genres)
    fig = figures.importance_figure(view, colors)
    concept_traces = [t for t in fig.data if t.meta == "concepts"]
    assert [t.name for t in concept_traces] == list(view.genres)
    ids = [cid for t in concept_traces for cid in t.customdata]
    assert sorted(ids) == sorted(c.concept_id for c in view.concepts)
    by_id = {c.concept_id: c for c in view.concepts}
    for gi, t in enumerate(concept_traces):
        assert t.marker.color == colors[t.name]
        for x, y, cid, text in zip(t.x, t.y, t.customdata, t.hovertext):
            c = by_id[cid]
            assert abs(x - gi) <= figures.MAX_SWARM + 1e-9 and y == pytest.approx(c.tcav_mean)
            assert c.name in text and "p = " in text and ("not significant" in text) != c.significant
    flagged = [t.hovertext[i] for t in concept_traces for i, cid in enumerate(t.customdata) if by_id[cid].flags]
    assert flagged and all("artefact" in text for text in flagged)
    assert any(t.meta == "random" for t in fig.data) and fig.data[-1].meta == "selected"
    assert "NaN" not in pio.to_json(fig)


def test_importance_figure_without_concepts_says_so():
    fig = figures.importance_figure(_view([], genres=("Pop",)), {"Pop": "#000"})
    assert "no concepts" in fig.layout.annotations[0].text


def test_concept_map_groups_concepts_around_cluster_centres(data):
    view = data.view(2)
    fig = figures.concept_map_figure(view, figures.genre_colors(view.genres))
    metas = [t.meta for t in fig.data]
    assert metas[0] == "clusters" and metas[-1] == "selected"
    centres = fig.data[0]
    assert [d["cluster"] for d in centres.customdata] == sorted({c.cluster for c in view.concepts})
    discs = fig.layout.shapes  # one disc per cluster, every member inside its own cluster's disc
    assert len(discs) == len(centres.customdata)
    xy = {cid: (x, y) for t in fig.data if t.meta == "concepts" for cid, x, y in zip(t.customdata, t.x, t.y)}
    assert set(xy) == {c.concept_id for c in view.concepts}
    for k, disc in zip((d["cluster"] for d in centres.customdata), discs):
        cx, cy, r = (disc.x0 + disc.x1) / 2, (disc.y0 + disc.y1) / 2, (disc.x1 - disc.x0) / 2
        for c in view.concepts:
            inside = (xy[c.concept_id][0] - cx) ** 2 + (xy[c.concept_id][1] - cy) ** 2 <= r ** 2
            assert inside == (c.cluster == k)
    colors = {t.name: t.marker.color for t in fig.data if t.meta == "concepts"}
    assert colors == figures.genre_colors(view.genres)  # same colours as panel 1


def test_concept_map_without_positions_says_so():
    fig = figures.concept_map_figure(_view([_concept(1, x=None, y=None)], cluster_xy={}), {"Pop": "#000"})
    assert "no concept map" in fig.layout.annotations[0].text


def test_similar_lists_threshold_and_order():
    sim = np.array([[1, 0.9, 0.2, 0.6], [0.9, 1, 0.1, 0.5], [0.2, 0.1, 1, np.nan], [0.6, 0.5, np.nan, 1]])
    out = similar_lists(np.array([10, 11, 12, 13]), sim, 0.5)
    assert out == {10: (11, 13), 11: (10, 13), 12: (), 13: (10, 11)}
    with pytest.raises(ValueError):
        similar_lists(np.array([1, 2]), sim, 0.5)


# -- radar ------------------------------------------------------------------------------------


def _song(tid, values, specs=AUDIO_FEATURES):
    vals = tuple(FeatureValue(s, raw, pct) for s, (raw, pct) in zip(specs, values))
    return SongFeatures(tid, f"Artist - {tid}", "audio", vals)


def test_radar_one_closed_polygon_per_song_with_raw_values_in_hover():
    a = _song("a", [(92.3, 0.4), (-14.2, 0.1), (1500, 0.5), (0.2, 0.3), (0.4, 0.6), (0.3, 0.7), (2.5, 0.8), (12, 0.9)])
    b = _song("b", [(None, None)] + [(0.5, 0.5)] * 7)
    fig = figures.radar_figure([a, b], "audio")
    assert [t.meta for t in fig.data] == ["a", "b"]
    assert fig.data[0].subplot == "polar" and fig.data[1].subplot == "polar2"
    for t in fig.data:
        assert t.r[0] == t.r[-1] and t.theta[0] == t.theta[-1]  # closed
        assert set(t.customdata) == {t.meta}  # a click names the song
    hover = fig.data[0].hovertext
    assert "92.3 BPM" in hover[0] and "percentile 40" in hover[0] and "-14.2 dB" in hover[1]
    assert fig.data[1].r[0] is None and "not measurable" in fig.data[1].hovertext[0]
    assert "1 not measurable" in fig.layout.annotations[1].text
    assert fig.layout.polar.radialaxis.range == (0, 1)
    assert "NaN" not in pio.to_json(fig)


def test_radar_marks_songs_without_data_instead_of_dropping_them():
    with_data = _song("a", [(0.5, 0.5)] * 8, ECHONEST_FEATURES)
    without = SongFeatures("b", "Artist - b", "echonest", ())
    fig = figures.radar_figure([with_data, without], "echonest")
    assert [t.meta for t in fig.data] == ["a", "b"]
    texts = [a.text for a in fig.layout.annotations]
    assert any("no Echo Nest data" in t for t in texts)
    assert "no Echo Nest data" in fig.data[1].hovertext[0]


def test_radar_layout_grid_for_ten_songs():
    songs = [_song(str(i), [(0.5, 0.5)] * 8) for i in range(10)]
    fig = figures.radar_figure(songs, "audio")
    polars = [k for k in fig.layout.to_plotly_json() if k.startswith("polar")]
    assert len(polars) == 10
    domains = [fig.layout[k].domain for k in polars]
    for i, d in enumerate(domains):  # no two subplots overlap
        for e in domains[:i]:
            overlap_x = min(d.x[1], e.x[1]) > max(d.x[0], e.x[0])
            overlap_y = min(d.y[1], e.y[1]) > max(d.y[0], e.y[0])
            assert not (overlap_x and overlap_y)


def test_radar_from_store_features(data):
    rows = data.song_features(["bells_00", "bells_01", "bells_03"], "echonest")
    assert [r.present for r in rows] == [True, False, False]
    rows = data.song_features(["bells_00", "bells_03"], "audio")
    assert all(r.present for r in rows)
    tempo = {r.track_id: r.values[0] for r in rows}
    assert tempo["bells_03"].raw is None and tempo["bells_03"].text == "not measurable"
    assert 0 <= tempo["bells_00"].percentile <= 1
    fig = figures.radar_figure(rows, "audio")
    assert "NaN" not in json.dumps(fig.to_plotly_json(), default=str)


# -- song view ----------------------------------------------------------------------------------


def test_song_figure_playhead_boxes_labels_and_axes():
    audio = AudioConfig(sample_rate=22050, duration=4.0, image_size=128)
    places = [Placement(7, "Kick concept 1", "Kick", 0, (0, 100, 32, 128), None),
              Placement(8, "Kick concept 2", "Kick", 3, (64, 0, 128, 20), None)]
    fig = figures.song_figure("/img/song/1/t.png", places, audio, (128, 128))
    assert fig.layout.shapes[0].name == "playhead" and fig.layout.shapes[0].x0 == 0
    rects = fig.layout.shapes[1:]
    assert len(rects) == 2
    assert rects[0].x0 == 0 and rects[0].x1 == pytest.approx(1.0) and rects[0].y0 == 0 and rects[0].y1 == 28
    assert rects[1].x0 == pytest.approx(2.0) and rects[1].x1 == pytest.approx(4.0) and rects[1].y1 == 128
    assert [a.text for a in fig.layout.annotations] == ["Kick concept 1", "Kick concept 2"]
    assert rects[0].line.color != rects[1].line.color
    assert fig.layout.images[0].source == "/img/song/1/t.png" and fig.layout.images[0].sizex == 4.0
    assert fig.layout.xaxis.range == (0, 4.0)
    seek = fig.data[0]
    assert seek.meta == "seek" and seek.opacity == 0 and len(seek.z[0]) == 128
    ticks = list(fig.layout.yaxis.tickvals)
    assert ticks == sorted(ticks) and 0 < ticks[0] and ticks[-1] < 128  # Hz ticks inside the image


def test_names_are_escaped_in_plotly_text():
    c = _concept(1, name="<b>evil</b>")
    assert "&lt;b&gt;evil" in figures.concept_hover(c)


# -- images --------------------------------------------------------------------------------------


def test_patch_image_fills_outside_the_segment():
    spec = np.full((8, 8), 200, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:5] = True
    mask[3, 2] = False
    crop = images.patch_image(spec, mask, (2, 2, 5, 4))
    assert crop.shape == (2, 3)
    assert crop[1, 0] == images.PATCH_FILL and crop[0, 0] == 200


def test_outline_and_context_image():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 3:7] = True
    edge = images.outline(mask)
    assert edge[2, 3] and edge[7, 6] and not edge[4, 4] and not edge[0, 0]
    rgb = images.context_image(np.full((10, 10), 100, np.uint8), mask, "#ff0000", scale=2)
    assert rgb.shape == (20, 20, 3)
    assert tuple(rgb[4, 6]) == (255, 0, 0)  # boundary in colour
    assert tuple(rgb[0, 0]) == (55, 55, 55)  # outside dimmed


def test_song_image_colours_patches_and_greys_the_rest():
    spec = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    mask = np.zeros((16, 16), bool)
    mask[:, 8:] = True
    rgb = images.song_image(spec, [mask])
    grey, colour = rgb[:, :8], rgb[:, 8:]
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])
    assert np.any(colour[..., 0] != colour[..., 2])
    assert images.encode(rgb)[:8] == b"\x89PNG\r\n\x1a\n"
