"""A small fake-but-valid run for the dashboard's tests: written through the real store API.

``make_fake_run(root)`` writes tracks with spectrogram PNGs and short audio files (WAV,
one AU to exercise transcoding), audio and Echo Nest features, a complete model with
metrics, and two complete extractions (concepts, patches with segment masks, arrays.npz,
summary) plus a failed one. Values are random but shaped like the real thing, so the
figures, routes and callbacks can be tested in seconds without training anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from whypop.audio import encode_png
from whypop.config import Config, load_config
from whypop.features import AUDIO_FEATURES, ECHONEST_FEATURES
from whypop.extraction_files import save_arrays, save_masks
from whypop.store import RunStore, Track

GENRES = ("Bells", "Kick", "Voice")
TRACKS_PER_GENRE = 6
DISCOVERY_PER_GENRE = 5
CONCEPTS_PER_GENRE = 4
CLUSTERS = 4
SEGMENTS_PER_TRACK = 8
AUDIO_SECONDS = 4.0
AUDIO_RATE = 8000  # Hz: small files, still plays in every browser


def fake_config() -> Config:
    """The demo's audio settings (4 s clips, 128 px images)."""
    return load_config("demo", env=False)


def make_fake_run(root: str | Path, seed: int = 0) -> Path:
    """Write the fake run into ``root`` (created) and return its path."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    cfg = fake_config()
    size = cfg.audio.image_size
    root = Path(root)
    store = RunStore(root, create=True)
    audio_root = root / "audio"
    audio_root.mkdir(exist_ok=True)
    store.set_meta("audio_root", str(audio_root.resolve()))
    store.set_meta("config", cfg.to_dict())
    store.set_meta("layout", "fake")

    tracks: list[Track] = []
    for g, genre in enumerate(GENRES):
        for i in range(TRACKS_PER_GENRE):
            tid = f"{genre.lower()}_{i:02d}"
            ext = ".au" if (g, i) == (0, 1) else ".wav"
            tracks.append(Track(tid, genre, "test" if i < DISCOVERY_PER_GENRE else "training",
                                f"{genre}/{tid}{ext}", title=f"{genre} song {i}", artist="Fake Artist"))
    # one track whose file lies outside the audio root: the audio route must refuse it
    outside = root.parent / f"{root.name}-outside.wav"
    tracks.append(Track("outside_00", GENRES[0], "training", str(outside.resolve()), title="Outside"))
    tracks.append(Track("broken_00", GENRES[1], "training", f"{GENRES[1]}/broken_00.wav", title="Broken"))
    store.upsert_tracks(tracks)

    images: dict[str, np.ndarray] = {}
    for t in tracks:
        if t.track_id == "broken_00":
            store.record_track_result(t.track_id, ok=False, error="cannot decode audio: not a recognised audio format")
            continue
        path = Path(t.source) if Path(t.source).is_absolute() else audio_root / t.source
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = _tone(rng, GENRES.index(t.genre))
        if path.suffix == ".au":
            sf.write(str(path), samples, AUDIO_RATE, format="AU", subtype="PCM_16")
        else:
            sf.write(str(path), samples, AUDIO_RATE, subtype="PCM_16")
        img = _spectrogram(rng, size, GENRES.index(t.genre))
        images[t.track_id] = img
        rel = f"spectrograms/{t.track_id}.png"
        store.write_bytes_atomic(rel, encode_png(img))
        echonest = t.track_id.endswith(("_00", "_02", "_04"))
        features = {"audio": {s.name: _feature(rng, s.name) for s in AUDIO_FEATURES}}
        if t.track_id.endswith("_03"):
            features["audio"]["tempo"] = None  # too short: not measurable
        if echonest:
            features["echonest"] = {s.name: _feature(rng, s.name, echonest=True) for s in ECHONEST_FEATURES}
        store.record_track_result(t.track_id, ok=True, duration=AUDIO_SECONDS, sample_rate=AUDIO_RATE,
                                  channels=1, spectrogram=rel, features=features)

    model_id, _ = store.begin_model("resnet18", {"train": cfg.train.__dict__})
    store.complete_model(model_id, {"accuracy": {"training": 0.97, "validation": 0.84, "test": 0.81},
                                    "notes": ["fake model for the dashboard tests"]})
    for n in range(2):
        _extraction(store, rng, images, cfg, model_id, variant=n)
    eid, _ = store.begin_extraction({"extract": {}, "summary": {}}, "test", model_id)
    store.fail_extraction(eid, "interrupted (fake)")
    store.close()
    return root


def _extraction(store: RunStore, rng: np.random.Generator, images: dict[str, np.ndarray], cfg: Config,
                model_id: int, variant: int) -> int:
    size = cfg.audio.image_size
    params = {"extract": {"layer": "layer4.1.conv2"}, "summary": {"similar_threshold": 0.5}}
    eid, partial = store.begin_extraction(params, "fake", model_id)
    concepts, patches = [], []
    discovery: dict[str, list[str]] = {}
    masks_by_track: dict[str, tuple[list[str], np.ndarray]] = {}
    for genre in GENRES:
        ids = [f"{genre.lower()}_{i:02d}" for i in range(DISCOVERY_PER_GENRE)]
        discovery[genre] = ids
        for tid in ids:
            masks = _masks(rng, size, SEGMENTS_PER_TRACK)
            masks_by_track[tid] = (save_masks(partial, tid, masks), masks)
    K = len(GENRES) * CONCEPTS_PER_GENRE
    D = 32
    bases = rng.normal(size=(CLUSTERS, D))
    cavs = np.zeros((K, D), dtype=np.float32)
    cluster_of = np.zeros(K, dtype=np.int64)
    concept_ids = np.arange(1, K + 1, dtype=np.int64) + 100 * variant
    random_experiments = 6
    tcav_scores = np.zeros((K, random_experiments), dtype=np.float32)
    k = 0
    for g, genre in enumerate(GENRES):
        for j in range(CONCEPTS_PER_GENRE):
            cid = int(concept_ids[k])
            cluster = (g + j) % CLUSTERS
            cluster_of[k] = cluster
            cavs[k] = bases[cluster] + 0.35 * rng.normal(size=D)
            mean = float(np.clip(0.5 + 0.45 * math.cos(k + variant), 0.02, 0.98))
            tcav_scores[k] = np.clip(mean + 0.05 * rng.normal(size=random_experiments), 0, 1)
            p = float(10 ** -rng.uniform(0.1, 6))
            flags = [{"flag": "artefact", "reason": "overlaps silent bands painted by augmentation"}] if (g, j) == (2, 1) else []
            concepts.append({
                "concept_id": cid, "genre": genre, "name": f"{genre} concept {j + 1}",
                "tcav_mean": float(tcav_scores[k].mean()), "tcav_std": float(tcav_scores[k].std()),
                "p_value": p, "significant": p < 0.01, "flags": flags, "cluster": cluster,
                "x": None, "y": None, "n_patches": 12,
            })
            for rank in range(12):
                tid = discovery[genre][(rank + j) % DISCOVERY_PER_GENRE]
                refs, masks = masks_by_track[tid]
                m = (rank * 3 + j) % SEGMENTS_PER_TRACK
                ys, xs = np.nonzero(masks[m])
                patches.append({"concept_id": cid, "rank": rank, "track_id": tid,
                                "x0": int(xs.min()), "y0": int(ys.min()), "x1": int(xs.max()) + 1,
                                "y1": int(ys.max()) + 1, "mask": refs[m], "distance": 0.1 * rank})
            k += 1
    norms = np.linalg.norm(cavs, axis=1, keepdims=True)
    similarity = (cavs / norms) @ (cavs / norms).T
    cluster_xy = rng.uniform(-30, 30, size=(CLUSTERS, 2)).astype(np.float32)
    for i, c in enumerate(concepts):
        cx, cy = cluster_xy[c["cluster"]]
        angle = 2 * math.pi * i / len(concepts)
        c["x"], c["y"] = float(cx + 4 * math.cos(angle)), float(cy + 4 * math.sin(angle))
    save_arrays(
        partial, concept_ids=concept_ids, mean_cavs=cavs, similarity=similarity.astype(np.float32),
        tcav_scores=tcav_scores, random_scores=rng.uniform(0.4, 0.6, size=(len(GENRES), random_experiments)).astype(np.float32),
        random_genres=np.array(GENRES), cluster_ids=np.arange(CLUSTERS, dtype=np.int64), cluster_xy=cluster_xy,
    )
    summary = {"layer": "layer4.1.conv2",
               "genres": {g: {"overlap": None, "chance": None, "top_concept": None,
                              "n_concepts": CONCEPTS_PER_GENRE, "discovery": discovery[g]} for g in GENRES}}
    store.complete_extraction(eid, concepts, patches, timings={"total": 1.0}, summary=summary)
    return eid


def _tone(rng: np.random.Generator, genre: int) -> np.ndarray:
    t = np.arange(int(AUDIO_SECONDS * AUDIO_RATE)) / AUDIO_RATE
    f = (220.0, 440.0, 660.0)[genre % 3] * (1 + 0.05 * rng.random())
    env = 0.5 + 0.5 * np.sin(2 * math.pi * 2 * t)
    return (0.3 * env * np.sin(2 * math.pi * f * t)).astype(np.float32)


def _spectrogram(rng: np.random.Generator, size: int, genre: int) -> np.ndarray:
    img = rng.normal(60, 20, size=(size, size))
    band = int(size * (0.2 + 0.25 * genre))
    img[band:band + 6] += 120
    for x in range(0, size, 16):
        img[:, x:x + 3] += 50
    return np.clip(img, 0, 255).astype(np.uint8)


def _masks(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """Disjoint-ish blobs (ellipses) as segment masks."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(0.15, 0.85, size=2) * size
        ry, rx = rng.uniform(0.06, 0.16, size=2) * size
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


def _feature(rng: np.random.Generator, name: str, echonest: bool = False) -> float:
    if name == "tempo":
        return float(rng.uniform(70, 170))
    if name == "loudness":
        return float(rng.uniform(-30, -6))
    if name == "brightness":
        return float(rng.uniform(500, 4000))
    if name == "onset_rate":
        return float(rng.uniform(0.5, 8))
    if name == "dynamic_range":
        return float(rng.uniform(3, 30))
    return float(rng.uniform(0, 1))


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory) -> Path:
    """The fake run, written once per test session (import this fixture into a test module)."""
    return make_fake_run(tmp_path_factory.mktemp("fake") / "run")
