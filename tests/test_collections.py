"""Real collections: other sample rates, short clips, small collections, flags naming the cause.

A folder collection is built from the audio fixtures (22.05 kHz, 5-10 s clips, a few
genres) and prepared with the thesis settings (44.1 kHz, 30 s window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from collection_builder import build_collection
from whypop import audio, geometry
from whypop.ace import flags
from whypop.ace.planning import MIN_SCORE, Request, min_score_songs, plan_images, required_score_songs
from whypop.ace.segment import segment_masks
from whypop.config import AudioConfig, load_config
from whypop.errors import ConfigError, InputError
from whypop.store import RunStore

import pipelines.prepare
from whypop.commands import status as status_command


@pytest.fixture(scope="module")
def short_collection(audio_fixtures, tmp_path_factory) -> Path:
    return build_collection(audio_fixtures, tmp_path_factory.mktemp("coll") / "audio", genres=3, clips=4,
                            seconds=(5.0, 10.0))


def _prepare(collection: Path, run: Path, **audio_overrides):
    cfg = load_config(overrides={"dataset.audio_features": False, **{f"audio.{k}": v for k, v in audio_overrides.items()}})
    store = RunStore(run, create=True)
    counts = pipelines.prepare.run(cfg, store, collection, workers=1)
    return store, counts


@pytest.fixture(scope="module")
def prepared(short_collection, tmp_path_factory):
    store, counts = _prepare(short_collection, tmp_path_factory.mktemp("run") / "run")
    return store, counts


def test_summary_counts_rates_durations_channels(prepared):
    store, counts = prepared
    s = counts.collection
    assert s["tracks"] == 12
    assert s["sample_rates"] == {"22050": 12}
    assert s["channels"] == {"1": 12}
    assert s["durations"]["5-10 s"] == 12 and sum(s["durations"].values()) == 12
    assert s["short"] == 12 and 5.0 <= s["shortest"] <= s["longest"] < 10.0
    assert s["common_nyquist"] == 11025.0
    assert s["empty_top_rows"] > 0 and s["padding_from"] < 224 * 10 / 30 + 2
    assert store.get_meta("collection") == s


def test_warnings_name_the_cause_and_the_fix(prepared):
    _, counts = prepared
    warnings = counts.collection["warnings"]
    rate = [w for w in warnings if "22.05 kHz" in w]
    pad = [w for w in warnings if "shorter than the 30 s window" in w]
    assert rate and 'audio.fmax = "auto"' in rate[0] and "11.025 kHz" in rate[0]
    assert pad and 'audio.pad = "repeat"' in pad[0] and "audio.duration = 5" in pad[0]
    assert not [w for w in warnings if "three splits" in w]  # 4 clips a genre fill the splits


def test_status_shows_the_summary(prepared, capsys):
    store, _ = prepared
    args = type("A", (), {"run": str(store.root), "json": True})()
    status_command.main(args)
    st = json.loads(capsys.readouterr().out)
    assert st["collection"]["sample_rates"] == {"22050": 12}
    text = status_command.format_status(st)
    assert "22.05 kHz: 12" in text and "padding with silence" in text


def test_too_small_for_three_splits_is_flagged_at_prepare(audio_fixtures, tmp_path):
    coll = build_collection(audio_fixtures, tmp_path / "audio", genres=2, clips=2, seconds=(1.0, 1.5))
    _, counts = _prepare(coll, tmp_path / "run")
    w = [w for w in counts.collection["warnings"] if "three splits" in w]
    assert w and "at least 3 clips per genre" in w[0] and "blues 2" in w[0] and "cannot help" in w[0]


def test_fmax_auto_follows_the_sources_and_is_recorded(short_collection, tmp_path):
    store, counts = _prepare(short_collection, tmp_path / "run", fmax="auto")
    assert store.stored_config().audio.fmax == 11025.0
    s = counts.collection
    assert s["empty_top_rows"] == 0 and not [w for w in s["warnings"] if "kHz, below" in w]
    img = store.load_spectrogram(store.tracks(status="ok")[0].track_id)
    assert img[:10].max() > 16  # the top rows hold music now


def test_pad_repeat_fills_the_window(short_collection):
    path = next((short_collection / "blues").iterdir())
    silent, decoded = audio.spectrogram_image(path, AudioConfig())
    repeated, _ = audio.spectrogram_image(path, AudioConfig(pad="repeat"))
    end = geometry.first_padding_column(decoded.duration, AudioConfig())
    assert silent[:, end:].max() == 0 and repeated[:, end:].mean() > 20
    assert geometry.first_padding_column(decoded.duration, AudioConfig(pad="repeat")) == 224
    with pytest.raises(ConfigError, match="audio.pad"):
        load_config(overrides={"audio.pad": "loop"})
    with pytest.raises(ConfigError, match="audio.fmax"):
        load_config(overrides={"audio.fmax": 30000})


def test_empty_regions_match_the_images(prepared):
    store, _ = prepared
    cfg = store.stored_config().audio
    for t in store.tracks(status="ok")[:4]:
        img = store.load_spectrogram(t.track_id)
        regions = geometry.empty_regions(t.sample_rate, t.duration, cfg)
        assert img[regions > 0].max() == 0  # every pixel said to be empty is black
        rows, col = geometry.empty_top_rows(t.sample_rate, cfg), geometry.first_padding_column(t.duration, cfg)
        assert img[rows : rows + 20, :col].max() > 0 and img[rows:, col - 3 : col].max() > 0  # music just beside


def test_flags_name_the_cause():
    nyq = flags.darkness_flag(flags.Darkness(0.9, 0.9, 0.8, 0.1), 0.5, nyquist_hz=11025)
    assert nyq["flag"] == "above-nyquist" and "above the source's Nyquist" in nyq["reason"] and "11 kHz" in nyq["reason"]
    pad = flags.darkness_flag(flags.Darkness(0.9, 0.9, 0.1, 0.7), 0.5, song_end="the songs end at 15-20 s")
    assert pad["flag"] == "padding" and "padding after the song ends" in pad["reason"]
    band = flags.darkness_flag(flags.Darkness(0.9, 0.8, 0.0, 0.0), 0.5)
    assert band["flag"] == "augmentation-band" and "augmentation" in band["reason"]
    quiet = flags.darkness_flag(flags.Darkness(0.9, 0.1, 0.0, 0.0), 0.5)
    assert quiet["flag"] == "silence" and "silence in the music" in quiet["reason"]
    assert flags.darkness_flag(flags.Darkness(0.2, 0.0, 0.1, 0.1), 0.5) is None


def test_flag_cause_comes_from_geometry_not_darkness(prepared):
    """A black segment in the padding is 'padding', one above Nyquist 'above-nyquist'."""
    store, _ = prepared
    cfg = store.stored_config().audio
    t = store.tracks(status="ok")[0]
    img = store.load_spectrogram(t.track_id)
    regions = geometry.empty_regions(t.sample_rate, t.duration, cfg)
    rows, col = geometry.empty_top_rows(t.sample_rate, cfg), geometry.first_padding_column(t.duration, cfg)
    black, banded = flags.band_map(img, 16)
    for mask, expected in (
        (np.s_[rows + 5 :, col + 5 :], "padding"),
        (np.s_[: rows - 2, 5 : col - 5], "above-nyquist"),
    ):
        m = np.zeros(img.shape, bool)
        m[mask] = True
        d = flags.darkness([flags.patch_darkness(black, banded, m) + flags.patch_empty(regions, m)])
        assert d.black_share > 0.9
        assert flags.darkness_flag(d, 0.5)["flag"] == expected


def test_skip_empty_keeps_segments_off_empty_regions(prepared):
    store, _ = prepared
    cfg = store.stored_config().audio
    t = store.tracks(status="ok")[0]
    img = store.load_spectrogram(t.track_id)
    regions = geometry.empty_regions(t.sample_rate, t.duration, cfg)
    everywhere = segment_masks(img, (10, 15, 25))
    share = [(m & (regions > 0)).sum() / m.sum() for m in everywhere]
    assert max(share) > 0.5  # without it, segments sit in the padding / above Nyquist
    music = segment_masks(img, (10, 15, 25), valid=regions == 0)
    assert len(music) >= 10
    assert all(not (m & (regions > 0)).any() for m in music)


@dataclass
class T:
    track_id: str
    genre: str
    split: str


def _tracks(genres: int, per_genre: int) -> list[T]:
    from whypop.datasets import stratified_split

    out = []
    for g in range(genres):
        for i, split in enumerate(stratified_split(per_genre, (0.8, 0.1, 0.1), 0, f"g{g}")):
            out.append(T(f"g{g}-{i:03d}", f"g{g}", split))
    return out


def test_small_collection_is_planned_disjoint():
    tracks = _tracks(10, 10)
    genres = [f"g{g}" for g in range(10)]
    plan = plan_images(tracks, genres, Request(12, 8, 20, 150, "all", "training", 0))
    assert plan.scaled and plan.set_size == 20 and len(plan.pool) >= 40
    images = set()
    for g in genres:
        d, s = plan.genres[g].discovery, plan.genres[g].score
        assert (len(d), len(s)) == (3, 3) and not set(d) & set(s)
        images |= set(d) | set(s)
    assert not images & set(plan.pool)
    assert not set(plan.sets[0]) & set().union(*map(set, plan.sets[1:]))
    line = plan.describe(min_songs=min_score_songs(0.01))
    assert "TCAV from 3 songs per genre: scores move in steps of 1/3" in line
    assert "asked 12 + 8" in line and "at least 8 score songs" in line


def test_large_collection_plan_is_unscaled():
    tracks = _tracks(4, 40)
    plan = plan_images(tracks, ["g0", "g1", "g2", "g3"], Request(12, 8, 20, 5, "all", "training", 0))
    assert not plan.scaled and plan.set_size == 20
    assert all((len(p.discovery), len(p.score)) == (12, 8) for p in plan.genres.values())


def test_plan_refuses_below_the_floor_naming_it():
    with pytest.raises(InputError, match=f"at least 2 discovery \\+ {MIN_SCORE} score images"):
        plan_images(_tracks(3, 10), ["g0", "g1", "g2"], Request(50, 50, 50, 20, "heldout", "training", 0))
    with pytest.raises(InputError, match="random sets of at least 4"):
        plan_images(_tracks(2, 4), ["g0", "g1"], Request(2, 2, 20, 5, "all", "training", 0))


def test_min_score_songs_rule():
    assert min_score_songs(0.01) == 8 and min_score_songs(0.05) == 6
    assert required_score_songs(0.01, -1) == 8 and required_score_songs(0.01, 0) == 0
    assert required_score_songs(0.01, 3) == 3


def test_dashboard_shows_score_songs_and_song_end():
    from whypop.app import figures
    from whypop.app.data import Concept, ExtractionView

    c = Concept(concept_id=1, genre="blues", name="blues concept 1", tcav_mean=0.9, tcav_std=0.05, p_value=0.001,
                significant=False, flags=(), cluster=0, x=0.0, y=0.0, n_patches=5)
    view = ExtractionView(1, ("blues",), (c,), {}, 0.5, {0: (0.0, 0.0)}, {}, {}, "layer2.1", 0.0, 1,
                          score_songs={"blues": 3}, min_score_songs=8, plan_line="TCAV from 3 songs per genre")
    fig = figures.importance_figure(view, {"blues": "#000"})
    assert "3 songs" in fig.layout.xaxis.ticktext[0]
    assert "TCAV from 3 songs" in fig.layout.annotations[0].text
    song = figures.song_figure("x.png", [], AudioConfig(), (224, 224), song_seconds=17.0)
    end = [s for s in song.layout.shapes if s.name == "after-end"]
    assert end and end[0].x0 == 17.0 and end[0].x1 == 30.0
    assert "silence padding" in song.layout.annotations[0].text
    narrow = figures.song_figure("x.png", [], AudioConfig(fmax=11025.0), (224, 224))
    assert "16k" not in narrow.layout.yaxis.ticktext and "8k" in narrow.layout.yaxis.ticktext


def test_wide_black_areas_are_silence_in_the_music_not_augmentation_bands():
    img = np.full((64, 64), 120, np.uint8)
    img[:, 10:15] = 0  # 5 columns: the width of an augmentation band
    img[:, 30:60] = 0  # 30 columns: a quiet stretch of the song
    black, banded = flags.band_map(img, 16, max_width=8)
    narrow, wide = np.zeros(img.shape, bool), np.zeros(img.shape, bool)
    narrow[:, 10:15] = True
    wide[:, 35:55] = True
    assert flags.darkness_flag(flags.darkness([flags.patch_darkness(black, banded, narrow)]), 0.5)["flag"] == "augmentation-band"
    assert flags.darkness_flag(flags.darkness([flags.patch_darkness(black, banded, wide)]), 0.5)["flag"] == "silence"
    _, any_width = flags.band_map(img, 16)
    assert any_width[:, 35:55].all()  # without a width, every full black column is a band


def test_empty_shares_count_each_pixel_once():
    regions = np.zeros((10, 10), np.uint8)
    regions[:4] |= flags.ABOVE_NYQUIST
    regions[:, 6:] |= flags.PADDING  # the corner is both: counted as padding
    mask = np.ones((10, 10), bool)
    nyquist, padding = flags.patch_empty(regions, mask)
    assert (nyquist, padding) == (0.24, 0.4)


def test_plan_round_trips_through_json():
    from whypop.ace.planning import ImagePlan

    plan = plan_images(_tracks(4, 10), ["g0", "g1", "g2", "g3"], Request(12, 8, 10, 5, "all", "training", 0))
    again = ImagePlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


@pytest.mark.slow
def test_short_collection_end_to_end_with_no_size_settings(audio_fixtures, tmp_path):
    """prepare, train and extract a 3 x 8 collection of 5-10 s clips at 22.05 kHz, sizes left as asked."""
    import pipelines.extract
    import pipelines.train

    coll = build_collection(audio_fixtures, tmp_path / "audio", genres=3, clips=8, seconds=(5.0, 10.0))
    cfg = load_config("demo", overrides={"audio.image_size": 64, "audio.sample_rate": 44100, "audio.duration": 30.0,
                                         "audio.hop_length": 512, "dataset.audio_features": False,
                                         "train.epochs": 1, "extract.segments": [5, 10],
                                         "extract.random_experiments": 5, "extract.n_clusters": 5,
                                         "extract.min_cluster_size": 1}, env=False)
    store = RunStore(tmp_path / "run", create=True)
    pipelines.prepare.run(cfg, store, coll, workers=1)
    pipelines.train.run(cfg, store)
    eid = pipelines.extract.run(cfg, store)
    summary = store.extraction(eid)["summary"]
    assert summary["plan"]["scaled"] and "TCAV from" in summary["plan"]["line"]
    for g, v in summary["genres"].items():
        assert v["score_songs"] >= MIN_SCORE and not set(v["discovery"]) & set(v["score"])
        assert not (set(v["discovery"]) | set(v["score"])) & set(summary["random"]["sets"][0])
    assert not any(c["significant"] for c in store.concepts(eid))  # fewer than 8 score songs
    audio_cfg = store.stored_config().audio
    tracks = {t.track_id: t for t in store.tracks(status="ok")}
    from whypop.results import load_mask

    for p in store.patches(eid):  # skip_empty: no segment reaches the padding or above Nyquist
        t = tracks[p["track_id"]]
        regions = geometry.empty_regions(t.sample_rate, t.duration, audio_cfg)
        assert not (load_mask(store, eid, p["mask"]) & (regions > 0)).any()
