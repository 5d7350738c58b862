"""Synthetic runs at real scale, for the dashboard's tests and benchmarks (no training, no ACE).

``build_synthetic_run(root, SyntheticSpec(...))`` writes, through the real store API, a
complete run shaped like one of the thesis: tracks with spectrogram PNGs and audio,
audio and Echo Nest features, a complete model with metrics, and one complete extraction
(concepts with TCAV scores, p-values, flags and clusters; example patches with segment
masks; ``arrays.npz``; summary). Values are random but plausible: TCAV scores spread
around the genre's random-concept mean, about a third of the concepts not significant,
a few flagged, cluster sizes skewed the way ACE's are (a few clusters hold dozens of
concepts), and the concept map's stored positions drawn the way the extraction draws
them (a ring of fixed radius around each cluster centre).

To stay fast at thousands of tracks, the tracks of a genre that are not discovery songs
share one spectrogram PNG and one audio file; each discovery song has its own.

    SCALES["thesis"]  # 8 genres x 25 concepts, 10 examples each, 8,000 tracks
    SCALES["wide"]    # 16 genres x 25 concepts, 8,000 tracks
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from whypop.audio import encode_png
from whypop.config import load_config
from whypop.extraction_files import save_arrays, save_masks
from whypop.features import AUDIO_FEATURES, ECHONEST_FEATURES
from whypop.store import RunStore, Track

GENRE_NAMES = (
    "Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock",
    "Blues", "Classical", "Country", "Jazz", "Metal", "Reggae", "Soul-RnB", "Spoken",
)
AUDIO_RATE = 8000  # Hz: small files that still play in every browser
AUDIO_SECONDS = 6.0
SEGMENTS = 16  # segment masks per discovery song
RANDOM_EXPERIMENTS = 10
LAYER = "layer4.1.conv2"
PATCH_FILL = 117  # outside a patch's segment, as ACE fills it


@dataclass(frozen=True)
class SyntheticSpec:
    """How big the synthetic run is."""

    genres: int = 8
    concepts: int = 25  # per genre
    examples: int = 10  # patches per concept
    tracks: int = 8000  # in all
    discovery: int = 20  # discovery songs per genre
    clusters: int | None = None  # None: one per 8 concepts
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.genres <= len(GENRE_NAMES):
            raise ValueError(f"genres must be 1..{len(GENRE_NAMES)}, got {self.genres}")
        if self.tracks < self.genres * self.discovery:
            raise ValueError(f"tracks ({self.tracks}) must cover {self.discovery} discovery songs per genre")


SCALES = {
    "thesis": SyntheticSpec(),
    "wide": SyntheticSpec(genres=16),
    "small": SyntheticSpec(genres=4, concepts=8, tracks=200, discovery=6),
}


def build_synthetic_run(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write a synthetic run of ``spec``'s size into ``root`` (created) and return its path."""
    rng = np.random.default_rng(spec.seed)
    cfg = load_config("default", env=False)
    size = cfg.audio.image_size
    root = Path(root)
    store = RunStore(root, create=True)
    audio_root = root / "audio"
    audio_root.mkdir(parents=True, exist_ok=True)
    store.set_meta("audio_root", str(audio_root.resolve()))
    store.set_meta("config", cfg.to_dict())
    store.set_meta("layout", "synthetic")
    genres = list(GENRE_NAMES[: spec.genres])

    # tracks: discovery songs first in each genre, then the rest sharing one file per genre
    per_genre = [spec.tracks // spec.genres + (1 if g < spec.tracks % spec.genres else 0) for g in range(spec.genres)]
    tracks: list[Track] = []
    discovery: dict[str, list[str]] = {}
    for g, genre in enumerate(genres):
        slug = genre.lower().replace("-", "")
        discovery[genre] = []
        for i in range(per_genre[g]):
            tid = f"{slug}_{i:05d}"
            own = i < spec.discovery
            split = "test" if own else ("validation" if i % 10 == 1 else "test" if i % 10 == 2 else "training")
            source = f"{slug}/{tid}.wav" if own else f"{slug}/shared.wav"
            tracks.append(Track(tid, genre, split, source, title=f"{genre} track {i}", artist=f"Artist {i % 97}"))
            if own:
                discovery[genre].append(tid)
    store.upsert_tracks(tracks)

    images: dict[str, np.ndarray] = {}
    for g, genre in enumerate(genres):
        slug = genre.lower().replace("-", "")
        (audio_root / slug).mkdir(exist_ok=True)
        shared = _spectrogram(rng, size, g, spec.genres)
        store.write_bytes_atomic(f"spectrograms/{slug}.png", encode_png(shared))
        (audio_root / slug / "shared.wav").write_bytes(_wav(rng, g))
        for tid in discovery[genre]:
            img = _spectrogram(rng, size, g, spec.genres)
            images[tid] = img
            store.write_bytes_atomic(f"spectrograms/{tid}.png", encode_png(img))
            (audio_root / slug / f"{tid}.wav").write_bytes(_wav(rng, g))
    own = {tid for ids in discovery.values() for tid in ids}
    for n, t in enumerate(tracks):
        slug = t.genre.lower().replace("-", "")
        rel = f"spectrograms/{t.track_id}.png" if t.track_id in own else f"spectrograms/{slug}.png"
        features = {"audio": {s.name: _feature(rng, s.name) for s in AUDIO_FEATURES}}
        if n % 3 == 0:  # Echo Nest covers about a third of the collection, as in FMA
            features["echonest"] = {s.name: _feature(rng, s.name) for s in ECHONEST_FEATURES}
        store.record_track_result(t.track_id, ok=True, duration=cfg.audio.duration, sample_rate=AUDIO_RATE,
                                  channels=1, spectrogram=rel, features=features)

    model_id, _ = store.begin_model("resnet18", {"train": cfg.train.__dict__}, origin="synthetic")
    store.complete_model(model_id, {"accuracy": {"training": 0.93, "validation": 0.61, "test": 0.58},
                                    "notes": ["synthetic model: no network was trained"]})
    _extraction(store, rng, spec, genres, discovery, images, size, model_id)
    store.close()
    return root


def _extraction(store: RunStore, rng: np.random.Generator, spec: SyntheticSpec, genres: list[str],
                discovery: dict[str, list[str]], images: dict[str, np.ndarray], size: int, model_id: int) -> int:
    params = {"extract": {"layer": LAYER}, "summary": {"similar_threshold": 0.6}}
    eid, partial = store.begin_extraction(params, "synthetic", model_id)
    masks_by_track = {}
    for genre in genres:
        for tid in discovery[genre]:
            masks = _masks(rng, size, SEGMENTS)
            masks_by_track[tid] = (save_masks(partial, tid, masks), masks)

    G, C = len(genres), spec.concepts
    K = G * C
    n_clusters = spec.clusters or max(2, K // 8)
    # skewed cluster sizes: a few clusters gather most concepts, as ACE's do on real runs
    weights = rng.dirichlet(np.full(n_clusters, 0.6))
    D = 64
    bases = rng.normal(size=(n_clusters, D))
    cavs = np.zeros((K, D), dtype=np.float32)
    cluster_of = np.zeros(K, dtype=np.int64)
    concept_ids = np.arange(1, K + 1, dtype=np.int64)
    tcav_scores = np.zeros((K, RANDOM_EXPERIMENTS), dtype=np.float32)
    random_scores = np.clip(0.5 + 0.04 * rng.normal(size=(G, RANDOM_EXPERIMENTS)), 0, 1).astype(np.float32)
    concepts, patches = [], []
    k = 0
    for g, genre in enumerate(genres):
        # each genre leans towards a few clusters
        affinity = weights * rng.dirichlet(np.full(n_clusters, 0.8))
        affinity /= affinity.sum()
        for j in range(C):
            cid = int(concept_ids[k])
            cluster = int(rng.choice(n_clusters, p=affinity))
            cluster_of[k] = cluster
            cavs[k] = bases[cluster] + 0.45 * rng.normal(size=D)
            strength = rng.beta(2.0, 2.0)
            mean = float(np.clip(0.5 + (strength - 0.5) * 0.9 + 0.1 * (j < 3), 0.01, 0.99))
            tcav_scores[k] = np.clip(mean + 0.06 * rng.normal(size=RANDOM_EXPERIMENTS), 0, 1)
            gap = abs(float(tcav_scores[k].mean()) - float(random_scores[g].mean()))
            p = float(min(1.0, 10 ** -(gap * 25 * rng.uniform(0.3, 1.2))))
            flags = []
            if rng.random() < 0.1:
                flags.append({"flag": "artefact", "reason": "overlaps silent bands painted by augmentation"})
            if rng.random() < 0.04:
                flags.append({"flag": "low-band", "reason": "lies below 60 Hz, where the mel scale has few rows"})
            concepts.append({
                "concept_id": cid, "genre": genre, "name": f"{genre} concept {j + 1}",
                "tcav_mean": float(tcav_scores[k].mean()), "tcav_std": float(tcav_scores[k].std()),
                "p_value": p, "significant": p < 0.01, "flags": flags, "cluster": cluster,
                "x": None, "y": None, "n_patches": int(spec.examples * rng.integers(3, 8)),
            })
            songs = discovery[genre]
            for rank in range(spec.examples):
                tid = songs[int(rng.integers(len(songs)))]
                refs, masks = masks_by_track[tid]
                m = int(rng.integers(SEGMENTS))
                ys, xs = np.nonzero(masks[m])
                x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                patches.append({"concept_id": cid, "rank": rank, "track_id": tid, "x0": x0, "y0": y0, "x1": x1,
                                "y1": y1, "mask": refs[m], "distance": round(0.05 * rank + 0.1 * rng.random(), 4)})
                # the patch image as the extraction stores it: the crop, outside the segment filled
                crop = images[tid][y0:y1, x0:x1].copy()
                crop[~masks[m][y0:y1, x0:x1]] = PATCH_FILL
                store.write_bytes_atomic(str((partial / "patches" / f"{cid}_{rank}.png").relative_to(store.root)),
                                         encode_png(crop))
            k += 1
    norms = np.linalg.norm(cavs, axis=1, keepdims=True)
    similarity = ((cavs / norms) @ (cavs / norms).T).astype(np.float32)
    # the map as the extraction draws it: centres spread out, members on a fixed-radius ring
    cluster_xy = (rng.normal(size=(n_clusters, 2)) * 12).astype(np.float32)
    gaps = np.linalg.norm(cluster_xy[:, None] - cluster_xy[None], axis=-1)
    radius = 0.3 * float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
    for ci in range(n_clusters):
        members = np.nonzero(cluster_of == ci)[0]
        for n, i in enumerate(members):
            angle = 2 * math.pi * n / len(members) + math.pi / 2
            concepts[i]["x"] = float(cluster_xy[ci, 0] + radius * math.cos(angle))
            concepts[i]["y"] = float(cluster_xy[ci, 1] + radius * math.sin(angle))
    save_arrays(partial, concept_ids=concept_ids, mean_cavs=cavs, similarity=similarity, tcav_scores=tcav_scores,
                random_scores=random_scores, random_genres=np.array(genres),
                cluster_ids=np.arange(n_clusters, dtype=np.int64), cluster_xy=cluster_xy)
    summary = {"layer": LAYER, "clusters": n_clusters, "genres": {}}
    for genre in genres:
        mine = [c for c in concepts if c["genre"] == genre]
        sig = [c for c in mine if c["significant"]]
        top = max(sig or mine, key=lambda c: c["tcav_mean"])
        summary["genres"][genre] = {"discovery": discovery[genre], "n_concepts": len(mine), "n_significant": len(sig),
                                    "n_patches": spec.examples * len(mine), "top_concept": top["concept_id"],
                                    "overlap": None, "chance": None}
    store.complete_extraction(eid, concepts, patches, timings={"total": 0.0}, summary=summary)
    return eid


def _spectrogram(rng: np.random.Generator, size: int, genre: int, genres: int) -> np.ndarray:
    """A spectrogram-like image: smooth texture (compresses like a real one), a genre band, onsets."""
    coarse = rng.normal(60, 22, size=(size // 4 + 1, size // 4 + 1))
    img = np.kron(coarse, np.ones((4, 4)))[:size, :size]
    img += rng.normal(0, 4, size=(size, size))
    band = int(size * (0.1 + 0.75 * genre / max(1, genres)))
    img[band:band + 8] += 110
    step = 8 + 4 * (genre % 4)
    for x in range(0, size, step):
        img[:, x:x + 2] += 45
    return np.clip(img, 0, 255).astype(np.uint8)


def _wav(rng: np.random.Generator, genre: int) -> bytes:
    t = np.arange(int(AUDIO_SECONDS * AUDIO_RATE)) / AUDIO_RATE
    f = 110.0 * 2 ** (genre / 4) * (1 + 0.03 * rng.random())
    env = 0.5 + 0.5 * np.sin(2 * math.pi * (1 + genre % 3) * t)
    samples = (0.3 * env * np.sin(2 * math.pi * f * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _masks(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(0.1, 0.9, size=2) * size
        ry, rx = rng.uniform(0.04, 0.12, size=2) * size
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


def _feature(rng: np.random.Generator, name: str) -> float:
    ranges = {"tempo": (70, 170), "loudness": (-30, -6), "brightness": (500, 4000), "onset_rate": (0.5, 8),
              "dynamic_range": (3, 30)}
    lo, hi = ranges.get(name, (0, 1))
    return float(rng.uniform(lo, hi))


def scaled(name: str, **changes) -> SyntheticSpec:
    """A named scale with some fields changed (``scaled("thesis", tracks=2000)``)."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r} (known: {', '.join(SCALES)})")
    return replace(SCALES[name], **changes)
