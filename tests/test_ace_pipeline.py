"""The extract stage on a tiny synthetic run: file contract, bad inputs, cancel, failure, CLI, cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from whypop.config import load_config
from whypop.errors import Cancelled, ConfigError, InputError, StoreError
from whypop.store import PlantedRegion, RunStore, Track

GENRES = ("Alpha", "Beta", "Gamma")
SIZE = 32
SPLITS = ["training"] * 6 + ["validation"] * 3 + ["test"] * 3
BLOB_HZ = {"Alpha": (200.0, 600.0), "Beta": (1500.0, 3000.0), "Gamma": (5000.0, 9000.0)}


def _config(**extract):
    base = dict(layer="layer2.1", discovery_images=3, score_images=2, segments=[3, 6], n_clusters=4,
                min_cluster_size=1, max_concept_patches=10, random_experiments=3, random_set_size=4,
                batch_size=16, device="cpu", render_patches=2)
    base.update(extract)
    return load_config(overrides={
        **{f"extract.{k}": v for k, v in base.items()},
        "audio.image_size": SIZE, "audio.duration": 4.0, "audio.sample_rate": 22050,
    }, env=False)


def _spectrogram(genre: str, index: int, cfg) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    from whypop.geometry import box_to_pixels

    rng = np.random.default_rng([GENRES.index(genre), index])
    img = np.clip(rng.normal(110, 15, (SIZE, SIZE)), 0, 255)
    t0 = float(rng.uniform(0, 2.5))
    box = (t0, t0 + 1.2, *BLOB_HZ[genre])
    x0, y0, x1, y1 = box_to_pixels(*box, cfg.audio)
    img[y0:y1, x0:x1] = 230
    if genre == "Gamma" and index % 2 == 0:
        c = int(rng.integers(2, SIZE - 6))
        img[:, c : c + 3] = 0  # a silent gap
    return img.astype(np.uint8), box


def _build_run(root: Path, with_model: bool = True) -> RunStore:
    import torch

    from whypop.audio import encode_png
    from whypop.model import build_model, save_checkpoint

    cfg = _config()
    store = RunStore(root, create=True)
    store.set_meta("config", cfg.to_dict())
    tracks, planted = [], []
    for g in GENRES:
        for i, split in enumerate(SPLITS):
            tid = f"{g.lower()}-{i:02d}"
            tracks.append(Track(tid, g, split, f"{tid}.wav"))
    store.upsert_tracks(tracks)
    for t in tracks:
        img, box = _spectrogram(t.genre, int(t.track_id[-2:]), cfg)
        rel = f"spectrograms/{t.track_id}.png"
        store.write_bytes_atomic(rel, encode_png(img))
        store.record_track_result(t.track_id, ok=True, duration=4.0, sample_rate=22050, channels=1, spectrogram=rel)
        planted.append(PlantedRegion(t.track_id, "signature", t.genre.lower(), *box))
    store.set_planted(planted)
    if with_model:
        torch.manual_seed(0)
        model = build_model("resnet18", len(GENRES), "none")
        model_id, partial = store.begin_model("resnet18", cfg.to_dict())
        save_checkpoint(partial / "model.pt", model, "resnet18", list(GENRES), SIZE)
        store.complete_model(model_id, {"accuracy": {}})
    return store


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny run (3 genres x 12 spectrograms of 32 px, an untrained ResNet18) with one extraction."""
    import pipelines.extract

    root = tmp_path_factory.mktemp("ace") / "run"
    store = _build_run(root)
    stages = []
    pipelines.extract.run(_config(), store, lambda e: stages.append((e.stage, e.step, e.genre)))
    (root / "stages.json").write_text(json.dumps(sorted(set(stages), key=str)))
    store.close()
    return root


def _visible(store: RunStore) -> tuple[int, list[str]]:
    return len(store.extractions(status=None)), sorted(p.name for p in (store.root / "extractions").iterdir())


# -- the file contract ------------------------------------------------------------------------


def test_extraction_follows_the_file_contract(tiny_run):
    from whypop.extraction_files import load_arrays, load_mask

    store = RunStore(tiny_run)
    ex = store.extraction()
    eid = ex["extraction_id"]
    concepts = store.concepts(eid)
    assert concepts, "no concepts"
    ids = [c["concept_id"] for c in concepts]
    assert len(set(ids)) == len(ids)
    for c in concepts:
        assert set(c) >= {"concept_id", "genre", "name", "tcav_mean", "tcav_std", "p_value", "significant",
                          "flags", "cluster", "x", "y", "n_patches"}
        assert c["name"].startswith(c["genre"] + " concept ")
        assert 0 <= c["tcav_mean"] <= 1 and 0 <= c["p_value"] <= 1
        assert all(set(f) == {"flag", "reason"} for f in c["flags"])
        assert c["significant"] or any(f["flag"] == "not-significant" for f in c["flags"])
        patches = store.patches(eid, concept_id=c["concept_id"])
        assert len(patches) == c["n_patches"] and [p["rank"] for p in patches] == list(range(len(patches)))
        distances = [p["distance"] for p in patches]
        assert distances == sorted(distances)
        for p in patches[:3]:
            mask = load_mask(store, eid, p["mask"])
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert (p["x0"], p["y0"], p["x1"], p["y1"]) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    arrays = load_arrays(store, eid)
    assert set(arrays) == {"concept_ids", "mean_cavs", "similarity", "tcav_scores", "random_scores",
                           "random_genres", "cluster_ids", "cluster_xy"}
    K = len(concepts)
    assert sorted(arrays["concept_ids"].tolist()) == sorted(ids)
    assert arrays["mean_cavs"].shape[0] == K and arrays["similarity"].shape == (K, K)
    assert arrays["tcav_scores"].shape == (K, 3) and arrays["random_scores"].shape == (3, 3)
    assert arrays["random_genres"].tolist() == list(GENRES)
    assert arrays["cluster_xy"].shape == (len(arrays["cluster_ids"]), 2)
    assert {c["cluster"] for c in concepts} <= set(arrays["cluster_ids"].tolist())
    summary = ex["summary"]
    assert summary["layer"] == "layer2.1"
    for g in GENRES:
        gs = summary["genres"][g]
        assert set(gs) >= {"overlap", "chance", "top_concept", "n_concepts", "discovery"}
        assert len(gs["discovery"]) == 3 and all((Path(ex["path"]) / "segments" / f"{t}.npz").is_file() for t in gs["discovery"])
        assert 0 <= gs["chance"] <= 1 and "reliance" in gs
    assert set(summary["artefact"]) >= {"flagged", "on_planted", "flagged_on_planted"}
    assert list((Path(ex["path"]) / "patches").glob("*_0.png"))
    timings = ex["timings"]
    assert timings["total"] > 0 and {"activations", "cav", "segment"} <= set(timings)
    assert ex["code_version"].startswith(__import__("whypop").__version__)
    assert ex["params"]["extract"]["layer"] == "layer2.1"
    stages = json.loads((tiny_run / "stages.json").read_text())
    stages = [tuple(s) for s in stages]
    from whypop.ace.extractor import GENRE_STEPS, RANDOM_STEPS, SUMMARY_STEP

    steps = {step for stage, step, _ in stages if stage == "extract"}
    assert steps <= {*RANDOM_STEPS, *GENRE_STEPS, SUMMARY_STEP}  # every step is a declared one
    # then the deletion tests on held-out songs (extract.evaluate, on by default), as their own stage
    assert {stage for stage, _, _ in stages} <= {"extract", "evaluate"}
    assert steps >= {*GENRE_STEPS, SUMMARY_STEP}  # (random patches only with extract.random_kind = "patches")
    assert ("extract", "random activations", None) in stages and ("extract", "CAVs", "Alpha") in stages
    assert ("extract", "summary", None) in stages


def test_a_small_run_is_scaled_not_refused(tiny_run, tmp_path):
    """Asking for more images than the run holds scales the sizes down, with the line saying so."""
    import pipelines.extract

    shutil.copytree(tiny_run, tmp_path / "run")
    store = RunStore(tmp_path / "run")
    eid = pipelines.extract.run(_config(discovery_images=6, score_images=6, random_set_size=10), store,
                                genres=["Alpha"])
    summary = store.extraction(eid)["summary"]
    alpha = summary["genres"]["Alpha"]
    assert (alpha["discovery_songs"], alpha["score_songs"]) == (3, 3)  # the 6 held-out tracks, halved
    assert not set(alpha["discovery"]) & set(alpha["score"])
    assert summary["plan"]["scaled"] and summary["random"]["set_size"] == 9  # 18 training tracks
    assert "TCAV from 3 songs per genre: scores move in steps of 1/3" in summary["plan"]["line"]
    assert not any(c["significant"] for c in store.concepts(eid))  # fewer than 8 score songs


def test_rerun_hits_the_activation_cache_and_gives_the_same_result(tiny_run):
    import pipelines.extract

    store = RunStore(tiny_run)
    first = store.extraction()
    eid = pipelines.extract.run(_config(), store, genres=["Beta"])
    second = store.extraction(eid)
    assert second["summary"]["cache"]["misses"] == 0 and second["summary"]["cache"]["hits"] > 0
    beta = lambda e: [(c["tcav_mean"], c["p_value"], c["n_patches"]) for c in store.concepts(e["extraction_id"]) if c["genre"] == "Beta"]
    assert beta(first) == beta(second)  # same random sets and images whatever the --genres


# -- bad input, cancel, failure ---------------------------------------------------------------


@pytest.mark.parametrize(
    "extract,error,words",
    [
        ({"layer": "layer9.conv"}, ConfigError, "valid layers include"),
        # too few images is planned (scaled down), not refused; below the floor it is refused
        ({"random_split": "heldout"}, InputError, "random sets of at least 4"),
    ],
)
def test_bad_inputs_write_nothing(tiny_run, extract, error, words):
    import pipelines.extract

    store = RunStore(tiny_run)
    before = _visible(store)
    with pytest.raises(error, match=words):
        pipelines.extract.run(_config(**extract), store)
    with pytest.raises(InputError, match="the model knows"):
        pipelines.extract.run(_config(), store, genres=["Polka"])
    assert _visible(store) == before


def test_a_run_without_a_model_is_refused(tmp_path):
    import pipelines.extract

    store = _build_run(tmp_path / "run", with_model=False)
    with pytest.raises(StoreError, match="no model"):
        pipelines.extract.run(_config(), store)
    assert _visible(store) == (0, [])


def test_cancel_leaves_no_partial_extraction_and_the_previous_one_intact(tiny_run):
    import pipelines.extract

    store = RunStore(tiny_run)
    previous = store.extraction()["extraction_id"]
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(Cancelled):
        pipelines.extract.run(_config(), store, cancel=cancel, job_id="job-1")
    rows = store.extractions(status=None)
    last = rows[-1]
    assert last["status"] == "cancelled" and last["job_id"] == "job-1" and last["error"] == "cancelled"
    assert store.concepts(last["extraction_id"]) == [] and store.patches(last["extraction_id"]) == []
    assert not (store.root / "extractions" / f"{last['extraction_id']}.partial").exists()
    assert store.extraction()["extraction_id"] == previous


def test_a_failure_is_recorded_and_reraised(tiny_run, monkeypatch):
    import pipelines.extract
    from whypop.ace.extractor import ConceptExtractor

    store = RunStore(tiny_run)
    previous = store.extraction()["extraction_id"]

    def boom(self, images):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ConceptExtractor, "fit_genre", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        pipelines.extract.run(_config(), store)
    last = store.extractions(status=None)[-1]
    assert last["status"] == "failed" and "disk on fire" in last["error"]
    assert not (store.root / "extractions" / f"{last['extraction_id']}.partial").exists()
    assert store.extraction()["extraction_id"] == previous


# -- modes and the command line ---------------------------------------------------------------


def test_exact_cavs_faithful_patches_and_image_random_sets(tmp_path, tiny_run):
    import pipelines.extract

    root = tmp_path / "run"
    shutil.copytree(tiny_run, root)
    store = RunStore(root)
    eid = pipelines.extract.run(
        _config(cav_mode="exact", patch_mode="faithful", random_kind="images", tcav_gradient="loss",
                correction="bonferroni"), store, genres=["Alpha", "Gamma"])
    ex = store.extraction(eid)
    assert ex["summary"]["cav_mode"] == "exact" and set(ex["summary"]["genres"]) == {"Alpha", "Gamma"}
    assert store.concepts(eid)


def test_cli_extract(tiny_run, capsys):
    from whypop.cli import main

    rc = main(["extract", "--run", str(tiny_run), "--genres", "Alpha", "--layer", "layer2.1", "--clusters", "3",
               "--segments", "3", "6", "--random-experiments", "2", "--discovery-images", "3",
               "--patch-mode", "inplace", "--cav-mode", "fast"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Alpha:" in out.out and "complete" in out.out
    ex = RunStore(tiny_run).extraction()
    assert ex["params"]["extract"]["n_clusters"] == 3 and ex["params"]["extract"]["random_experiments"] == 2
    rc = main(["extract", "--run", str(tiny_run), "--layer", "nope"])
    assert rc == 1 and "valid layers" in capsys.readouterr().err
