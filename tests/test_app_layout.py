"""Panel layouts at real scale: beeswarm sizing, the packed concept map, panel 5's legend and hover grid."""

from __future__ import annotations

import numpy as np
import pytest

from whypop.app import figures
from whypop.app.data import AppData, Concept, ExtractionView, Placement
from whypop.app.layout import fit_swarm, pack_map, region_grid, sunflower
from whypop.config import AudioConfig
from whypop.store import RunStore
from whypop.synthetic import SCALES, build_synthetic_run, scaled


def _pairs_closer_than(xy: np.ndarray, d: float) -> int:
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return int((dist < d - 1e-9).sum() // 2)


def test_fit_swarm_keeps_full_markers_when_there_is_room_and_shrinks_them_when_not():
    rng = np.random.default_rng(1)
    groups = [rng.beta(2, 2, size=25) for _ in range(16)]
    roomy = fit_swarm(groups[:2], slot_px=300, plot_px=300)
    assert roomy.size == 10 and not roomy.overlapping
    tight = fit_swarm(groups, slot_px=36, plot_px=310, y_span=1.06)
    assert tight.size < 10 and not tight.overlapping
    for values, offsets in zip(groups, tight.offsets):  # no two markers closer than one diameter (+1 px)
        px = np.stack([offsets * 36, values * 310 / 1.06], 1)
        assert _pairs_closer_than(px, tight.size + 1) == 0
        assert np.abs(offsets).max() <= 0.42 + 1e-9


def test_sunflower_points_are_at_least_one_apart():
    for n in (1, 2, 7, 40):
        pts = sunflower(n)
        assert pts.shape == (n, 2) and _pairs_closer_than(pts, 1.0) == 0
    assert np.linalg.norm(sunflower(40), axis=1).max() > np.linalg.norm(sunflower(7), axis=1).max()


def test_pack_map_hides_no_concept_and_keeps_clusters_apart():
    rng = np.random.default_rng(2)
    sizes = [40, 33, 29, 18, 13, 9, 4, 4, 2, 1, 1]
    members, cid = {}, 1
    for k, n in enumerate(sizes):
        members[k] = list(range(cid, cid + n))
        cid += n
    centres = {k: tuple(rng.normal(size=2)) for k in members}
    layout = pack_map(members, centres, {k: 9 for k in members}, 420, 360)
    xy = np.array([layout.positions[c] for ids in members.values() for c in ids])
    assert _pairs_closer_than(xy, 1.0) == 0  # one slot apart: a marker (<= ppu - 2 px) never touches another
    assert layout.marker_px <= layout.px_per_unit - 2 + 1e-9 or layout.marker_px == 4
    places = {p.key: p for p in layout.clusters}
    for a in places.values():  # discs do not overlap
        for b in places.values():
            if a.key < b.key:
                assert np.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius
    for k, ids in members.items():  # each member inside its own disc
        p = places[k]
        for c in ids:
            assert np.hypot(layout.positions[c][0] - p.x, layout.positions[c][1] - p.y) <= p.radius
    # the map fits the ranges
    assert layout.x_range[0] <= xy[:, 0].min() and xy[:, 0].max() <= layout.x_range[1]


def test_region_grid_names_the_regions_under_each_cell():
    grid = region_grid([(0, 0, 10, 10), (5, 5, 20, 20)], ["A", "B"], width=20, height=20, cols=4, rows=4)
    assert grid[3][0] == "A"  # top-left cell (row 0 is the bottom)
    assert grid[2][1] == "A, B"
    assert grid[0][3] == "B" and grid[0][0] == ""


def _concept(cid, genre, cluster, score=0.5, significant=True, flags=()):
    return Concept(cid, genre, f"{genre} c{cid}", score, 0.05, 0.001 if significant else 0.5, significant, flags,
                   cluster, 0.0, 0.0, 10)


def test_cluster_infos_describe_genres_top_concept_and_flags():
    flag = (("artefact", "silent bands"),)
    cs = [_concept(1, "Pop", 0, 0.9), _concept(2, "Pop", 0, 0.95, significant=False), _concept(3, "Rock", 0, 0.7),
          _concept(4, "Rock", 1, 0.8, flags=flag), _concept(5, "Jazz", 1, 0.6, flags=flag), _concept(6, "Jazz", 1, 0.5)]
    view = ExtractionView(1, ("Jazz", "Pop", "Rock"), tuple(cs), {}, 0.5, {0: (0, 0), 1: (5, 5)}, {}, {}, None, 0.0, 1)
    infos = figures.cluster_infos(view)
    assert infos[0].shares[0] == ("Pop", pytest.approx(2 / 3)) and infos[0].top.concept_id == 1
    assert infos[0].label() == "Pop 67%+" and not infos[0].mostly_flagged
    assert infos[1].mostly_flagged and infos[1].top.concept_id == 6  # flagged concepts are never the top
    assert "mostly flagged" in infos[1].describe()
    fig = figures.concept_map_figure(view, figures.genre_colors(view.genres))
    clusters = fig.data[0]
    assert clusters.textfont.color[1] != clusters.textfont.color[0]  # the flagged cluster is greyed
    assert "Pop 67%" in clusters.hovertext[0] and "top: Pop c1" in clusters.hovertext[0]


def test_importance_figure_genre_filter_and_marker_meta():
    cs = [_concept(i, g, 0, 0.3 + 0.02 * i) for i, g in enumerate(["Pop", "Rock", "Jazz"] * 5)]
    view = ExtractionView(1, ("Jazz", "Pop", "Rock"), tuple(cs), {}, 0.5, {}, {}, {}, None, 0.0, 1)
    colors = figures.genre_colors(view.genres)
    fig = figures.importance_figure(view, colors, genres=["Rock", "Pop"])
    assert [t.name for t in fig.data if t.meta == "concepts"] == ["Pop", "Rock"]
    assert list(fig.layout.xaxis.ticktext) == ["Pop", "Rock"]
    assert fig.layout.meta["marker_size"] == 10
    assert {t.name: t.marker.color for t in fig.data if t.meta == "concepts"} == {"Pop": colors["Pop"], "Rock": colors["Rock"]}


def test_song_figure_legend_has_one_line_per_concept_and_never_overflows():
    audio = AudioConfig(sample_rate=22050, duration=4.0, image_size=128)
    places = [Placement(100 + i % 30, f"Concept {i % 30}", "Pop", i // 30, (i % 120, 10, i % 120 + 8, 30), None)
              for i in range(60)]
    fig = figures.song_figure("/img/x.png", places, audio, (128, 128), height_px=360)
    texts = [a.text for a in fig.layout.annotations]
    rows = int((360 - 55) // 16)
    assert len(texts) == rows and texts[-1].startswith("+") and "more concepts" in texts[-1]
    ys = [a.y for a in fig.layout.annotations]
    assert all(a > b for a, b in zip(ys, ys[1:])) and ys[-1] >= 0  # stacked downwards, inside the plot height
    assert len(fig.layout.shapes) == 61
    seek = fig.data[0]
    hover = {t for row in seek.text for t in row if t}
    assert any("Concept 0" in t for t in hover)


def test_synthetic_run_has_the_requested_shape(tmp_path):
    spec = scaled("small", tracks=120)
    run = build_synthetic_run(tmp_path / "run", spec)
    data = AppData(RunStore(run))
    view = data.view(data.latest_extraction())
    assert len(view.genres) == spec.genres and len(view.concepts) == spec.genres * spec.concepts
    assert len(data.store.tracks(status="ok")) == 120
    c = view.concepts[0]
    assert len(data.examples(view.extraction_id, c.concept_id)) == spec.examples
    assert all(len(v) == spec.discovery for v in view.discovery.values())
    assert {c.cluster for c in view.concepts} <= set(view.cluster_xy)
    assert data.has_source("echonest") and data.spectrogram_shape(view.discovery[view.genres[0]][0]) == (224, 224)
    assert SCALES["thesis"].genres * SCALES["thesis"].concepts == 200 and SCALES["thesis"].tracks == 8000
    assert SCALES["wide"].genres == 16


def test_context_png_is_the_context_image():
    import io

    from PIL import Image

    from whypop.app import images

    rng = np.random.default_rng(3)
    spec = rng.integers(0, 256, size=(40, 30), dtype=np.uint8)
    mask = np.zeros(spec.shape, bool)
    mask[5:20, 8:25] = True
    for scale in (1, 2):
        png = images.context_png(spec, mask, "#E69F00", scale=scale)
        got = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        want = images.context_image(spec, mask, "#E69F00", scale=scale)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # white shows as 254
    assert images.context_scale((128, 128)) == 2 and images.context_scale((224, 224)) == 1
