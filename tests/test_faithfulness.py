"""Deletion and insertion tests (whypop.ace.faithfulness) and concept matching across seeds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from whypop.ace import faithfulness as fm
from whypop.ace import stability as st

H = W = 32


def _toy(n=6, seed=0):
    """Songs whose class-0 score is the brightness of one box (the true concept 0)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 120, size=(n, H, W)).astype(np.uint8)
    images[:, 4:12, 4:12] = 250  # the evidence
    regions = np.zeros((n, 4, H, W), bool)
    regions[:, 0, 4:12, 4:12] = True  # concept 0: the evidence
    regions[:, 1, 20:28, 4:12] = True  # concepts 1-3: elsewhere, same area
    regions[:, 2, 4:12, 20:28] = True
    regions[:, 3, 20:28, 20:28] = True
    segments = [np.stack([regions[i, c] for c in range(4)] + [np.pad(np.ones((8, 8), bool), ((12, 12), (12, 12)))])
                for i in range(n)]
    return images, regions, segments


def _predict(images):
    box = images[:, 4:12, 4:12].astype(float).mean(axis=(1, 2)) / 255.0
    logit = 12 * (box - 0.6)
    p0 = 1 / (1 + np.exp(-logit))
    return np.stack([p0, 1 - p0], axis=1)


def test_deleting_the_true_concept_drops_the_class_more_than_random_regions():
    images, regions, segments = _toy()
    r = fm.evaluate_genre("Rock", 0, images, regions, [0, 1, 2, 3], [10, 11, 12, 13], 90.0, _predict,
                          segments=segments, max_k=3, draws=3)
    d, i = r.deletion.probability, r.insertion.probability
    assert d.baseline > 0.95
    assert d.top[0] < 0.1 < d.random[0]  # the evidence removed vs other regions removed
    assert d.bottom[0] > 0.9  # concept 3 is not the evidence
    assert i.top[0] > 0.95 and i.random[0] < 0.1 and i.empty < 0.1
    assert r.deletion.accuracy.top[0] == 0.0 and r.deletion.accuracy.baseline == 1.0
    assert r.deletion.area["top"][0] == pytest.approx(r.deletion.area["random"][0], rel=0.05)
    effects = {c.concept_id: c for c in r.concepts}
    assert not effects[10].changes_nothing and effects[10].drop > 0.8
    assert effects[13].changes_nothing
    assert r.ranking == [10, 11, 12, 13] and r.songs == 6
    assert "from 100% to 0%" in r.verdict(1)


def test_a_concept_placed_nowhere_changes_nothing_and_areas_stay_matched():
    images, regions, segments = _toy()
    regions[:, 1] = False
    r = fm.evaluate_genre("Rock", 0, images, regions, [1, 0, 2, 3], [10, 11, 12, 13], 90.0, _predict,
                          segments=segments, max_k=2, draws=2)
    e = {c.concept_id: c for c in r.concepts}[11]
    assert e.songs == 0 and e.drop is None and e.changes_nothing
    assert r.deletion.probability.top[0] == pytest.approx(r.deletion.probability.baseline)
    assert r.deletion.area["random"][0] == 0.0  # nothing to match in any song


def test_random_regions_stay_outside_and_match_the_area():
    rng = np.random.default_rng(0)
    segs = np.zeros((40, H, W), bool)
    for k in range(40):
        y, x = rng.integers(0, 28, 2)
        segs[k, y : y + 4, x : x + 4] = True
    avoid = np.zeros((H, W), bool)
    avoid[10:20, 10:20] = True
    out = fm.random_regions(segs, avoid, rng)
    assert not (out & avoid).any()
    assert abs(int(out.sum()) - 100) <= 16


def test_results_round_trip_through_json():
    images, regions, segments = _toy(n=3)
    r = fm.evaluate_genre("Rock", 0, images, regions, [0, 1, 2, 3], [1, 2, 3, 4], 90.0, _predict,
                          segments=segments, max_k=2, draws=2)
    f = fm.Faithfulness(7, 90.0, "held-out", {"Rock": r}, {"total": 1.0}, 10)
    back = fm.Faithfulness.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back.to_dict() == f.to_dict()
    d = f.to_dict()["genres"]["Rock"]
    for kind in ("deletion", "insertion"):
        assert set(d[kind]) >= {"top", "random", "bottom", "baseline"} and len(d[kind]["top"]) == 2
        assert set(d["accuracy"][kind]) >= {"top", "random", "bottom", "baseline"}
    assert d["songs"] == 3


def test_ranking_must_cover_every_concept():
    images, regions, _ = _toy(n=2)
    with pytest.raises(ValueError):
        fm.evaluate_genre("Rock", 0, images, regions, [0, 1], [1, 2, 3, 4], 90.0, _predict)


def _run(eid, seed, cavs, genres, sig, top, planted=None):
    return st.Run(eid, seed, np.arange(len(cavs)) + 10 * eid, genres, np.array(sig), np.array(cavs, float),
                  top, planted or {})


def test_stability_matches_concepts_by_the_best_cosine():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 50))
    a = _run(1, 0, base, ["A", "A", "B"], [True, True, True], {"A": 10, "B": 12},
             {"A": (0.6, 0.1), "B": (0.5, 0.1)})
    noisy = base[[1, 0, 2]] + 0.1 * rng.normal(size=(3, 50))
    noisy[2] = rng.normal(size=50)  # B's concept is not found again
    b = _run(2, 1, noisy, ["A", "A", "B"], [True, False, True], {"A": 21, "B": 22},
             {"A": (0.5, 0.1), "B": (0.2, 0.1)})
    s = st.compare([a, b])
    assert s.genres["A"].matched_share == [1.0] and s.genres["A"].best_cosine[0] > 0.95
    assert s.genres["A"].top_cosine[0] > 0.95
    assert s.genres["B"].matched_share == [0.0]
    assert s.genres["A"].planted_found == [True, True] and s.genres["B"].planted_found == [True, False]
    assert s.planted_everywhere is False
    assert st.Stability.from_dict(json.loads(json.dumps(s.to_dict()))).to_dict() == s.to_dict()


@pytest.mark.slow
def test_evaluate_on_the_demo_run(demo_run, tmp_path):
    """The stage on the demo: stored with the extraction, shown by status --json."""
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    out = subprocess.run([sys.executable, "-m", "whypop.cli", "evaluate", "--run", str(run),
                          "--set", "extract.evaluate_draws=2"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "takes its accuracy from" in out.stdout
    status = subprocess.run([sys.executable, "-m", "whypop.cli", "status", "--run", str(run), "--json"],
                            capture_output=True, text=True, timeout=120)
    f = json.loads(status.stdout)["faithfulness"]
    assert set(f["genres"]) == {"Formant", "Hats", "Kick", "Pluck"}
    for g in f["genres"].values():
        assert g["songs"] > 0
        for kind in ("deletion", "insertion"):
            for key in ("top", "random", "bottom"):
                assert len(g[kind][key]) == 5 and len(g["accuracy"][kind][key]) == 5
            assert 0 <= g[kind]["baseline"] <= 1


def test_panel_one_shows_curves_verdicts_and_crosses_concepts_that_fail_deletion():
    from whypop.app import figures
    from whypop.app.data import Concept

    images, regions, segments = _toy()
    r = fm.evaluate_genre("Rock <b>", 0, images, regions, [0, 1, 2, 3], [10, 11, 12, 13], 90.0, _predict,
                          segments=segments, max_k=3, draws=2)
    faith = fm.Faithfulness(1, 90.0, "held-out", {"Rock <b>": r})
    fig = figures.faithfulness_figure(faith, {"Rock <b>": "#f00"})
    names = {t.name for t in fig.data}
    assert names == {"top concepts", "random regions, same area", "bottom concepts"}
    top = next(t for t in fig.data if t.name == "top concepts")
    assert list(top.x) == [0, 1, 2, 3] and top.y[1] < 0.1 < top.y[0]
    assert "&lt;b&gt;" in fig.layout.annotations[0].text
    lines = figures.verdict_lines(faith)
    assert len(lines) == 1 and "top 3 concepts" in lines[0] and "random regions of the same area" in lines[0]

    def concept(cid, significant=True):
        return Concept(cid, "Rock <b>", f"c{cid}", 0.9, 0.1, 0.001, significant, (), None, None, None, 5)

    fails = figures.deletion_failures(faith, [concept(10), concept(13), concept(12, significant=False)])
    assert set(fails) == {13} and "changes nothing" in fails[13]
    assert figures.deletion_failures(faith, [concept(13)], {"Rock <b>": 0.95}) == {}  # not raising the genre
    trace = figures._concept_trace([concept(10), concept(13)], [0, 0], [0.9, 0.9], "Rock <b>", "#f00", fails)
    assert list(trace["marker"]["symbol"]) == ["circle", "circle-x-open"] and "changes nothing" in trace["hovertext"][1]
    assert "no deletion test" in figures.faithfulness_figure(None, {}).layout.annotations[0].text


@pytest.mark.slow
def test_extract_with_two_seeds_evaluates_and_matches(demo_run, tmp_path):
    """`whypop extract --seeds 2`: two extractions, the reference (latest) tested and matched to the other."""
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    out = subprocess.run([sys.executable, "-m", "whypop.cli", "extract", "--run", str(run), "--seeds", "2",
                          "--set", "extract.random_experiments=30", "--set", "extract.evaluate_draws=1",
                          "--set", "extract.evaluate_songs=3"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stability over seeds 0, 1" in out.stdout and "takes its accuracy from" in out.stdout
    st_ = json.loads(subprocess.run([sys.executable, "-m", "whypop.cli", "status", "--run", str(run), "--json"],
                                    capture_output=True, text=True, timeout=120).stdout)
    ids = [e["extraction_id"] for e in st_["extractions"] if e["status"] == "complete"]
    s = st_["stability"]
    assert s["extraction_ids"] == [ids[-1], ids[-2]] and s["seeds"] == [0, 1]
    assert set(s["genres"]) == {"Formant", "Hats", "Kick", "Pluck"}
    assert all(len(g["best_cosine"]) == 1 and len(g["planted_found"]) == 2 for g in s["genres"].values())
    assert st_["faithfulness"]["extraction_id"] == ids[-1]
    assert all(g["songs"] == 3 for g in st_["faithfulness"]["genres"].values())
    other = next(e for e in st_["extractions"] if e["extraction_id"] == ids[-2])
    assert other["faithfulness"] is None  # only the reference is tested


def test_concepts_are_ranked_like_the_top_concept_rule():
    from pipelines.evaluate import rank_concepts

    def c(cid, tcav, sig=True):
        return {"concept_id": cid, "tcav_mean": tcav, "significant": sig}

    concepts = [c(1, 1.0), c(2, 0.9), c(3, 0.55), c(4, 1.0, sig=False), c(5, 0.1)]
    extra = {1: {"magnitude": 0.1}, 2: {"magnitude": 0.5}, 3: {"magnitude": 2.0}, 4: {"magnitude": 9.0},
             5: {"magnitude": -1.0}}
    # 3 is significant but below the null (0.6): not "raising"; 4 is not significant
    assert rank_concepts(concepts, extra, null_mean=0.6) == [2, 1, 4, 3, 5]
