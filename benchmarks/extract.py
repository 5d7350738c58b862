"""A full extraction with the thesis settings, against its floor (the patches' forward passes).

Builds a temporary run store of synthetic 224 px spectrograms (each genre a sound in its
own band over noisy backgrounds) and a seeded, randomly initialised ResNet34, then runs
``pipelines.extract.run`` with the thesis settings (``config/default.toml``:
``layer4.2.conv2``, SLIC 10/15/25, 25 clusters, 20 random experiments of 50, 50 score
images per genre, fast CAVs) on ``--genres`` genres with ``--discovery`` discovery
spectrograms each; ACE's ``min_cluster_size`` (40 of 50 images) is scaled with the
number of discovery images. Then, in the same process, it times the floor: one batched
forward pass of the whole network over every patch of the extraction (what any ACE
must at least do), and prints one JSON line:

``wall`` (seconds, the extraction), ``floor`` (seconds), ``floor_ratio`` = wall / floor,
``peak_rss_mb`` (the process's peak resident memory during the extraction), the same
ratio in CPU seconds (``floor_ratio_cpu``: on a shared machine, other users' load skews
wall times, less so CPU time), ``patches``,
the extraction's own stage timings and concept counts. Targets on a 2-core CPU:
floor_ratio <= 1.5; peak_rss_mb < 2048 and flat in the number of genres (compare
``--genres 2`` with ``--genres 4``). The defaults (2 genres x 16 discovery images) take
about 5 minutes here; ``--genres 8 --discovery 50`` is the thesis scale (a GPU job).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _image(rng: np.random.Generator, size: int, band: tuple[int, int]) -> np.ndarray:
    rows = np.linspace(1.0, 0.6, size)[:, None]
    img = rng.normal(120, 18, (size, size)) * rows
    for _ in range(rng.integers(2, 6)):
        y, x = rng.integers(0, size - 12, 2)
        img[y : y + rng.integers(2, 8), x : x + rng.integers(6, 40)] += rng.uniform(30, 80)
    y0, y1 = band
    x0 = int(rng.integers(0, size // 2))
    for x in range(x0, x0 + size // 2, int(rng.integers(6, 14))):
        img[y0:y1, x : x + 3] = rng.uniform(200, 255)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_store(root: Path, genres: int, discovery: int, score: int, training: int, size: int, seed: int):
    """A run store with synthetic spectrograms and an untrained ResNet34 as its model."""
    import torch

    from whypop.audio import encode_png
    from whypop.config import load_config
    from whypop.model import build_model, save_checkpoint
    from whypop.store import RunStore, Track

    store = RunStore(root, create=True)
    store.set_meta("config", load_config(env=False).to_dict())
    rng = np.random.default_rng(seed)
    names = [f"Genre{i}" for i in range(genres)]
    heldout = discovery + score
    tracks = []
    for gi, g in enumerate(names):
        band = (int(8 + gi * (size - 24) / max(genres, 1)), int(8 + gi * (size - 24) / max(genres, 1)) + size // 16)
        for i in range(heldout + training):
            split = "training" if i < training else ("validation" if i % 2 else "test")
            tid = f"g{gi}-{i:04d}"
            tracks.append(Track(tid, g, split, f"{tid}.wav"))
            store.write_bytes_atomic(f"spectrograms/{tid}.png", encode_png(_image(rng, size, band)))
    store.upsert_tracks(tracks)
    for t in tracks:
        store.record_track_result(t.track_id, ok=True, duration=30.0, sample_rate=44100, channels=1,
                                  spectrogram=f"spectrograms/{t.track_id}.png")
    torch.manual_seed(seed)
    model = build_model("resnet34", genres, "none")
    model_id, partial = store.begin_model("resnet34", {})
    save_checkpoint(partial / "model.pt", model, "resnet34", names, size)
    store.complete_model(model_id, {})
    return store


def floor_seconds(store, extraction: dict, cfg, batch_size: int) -> tuple[float, float, int]:
    """Time one forward pass of the whole model over every patch the extraction made."""
    import torch

    import pipelines.extract as E
    from whypop.ace.patches import make_patches
    from whypop.ace.segment import segment_masks
    from pipelines.common import load_current
    from whypop.model import preprocess

    ex = cfg.extract
    fill = E.training_mean(store, sorted(t.track_id for t in store.tracks(split="training")))
    patches = []
    for g in extraction["summary"]["genres"].values():
        for tid in g["discovery"]:
            img = store.load_spectrogram(tid)
            masks = segment_masks(img, ex.segments, ex.compactness, ex.sigma)
            patches.append(make_patches(img, masks, fill, ex.patch_mode, img.shape[0]))
    patches = np.concatenate(patches)
    model = load_current(store, "cpu").model
    with torch.inference_mode():
        model(preprocess(patches[:2]))  # warm-up
        start, cpu = time.perf_counter(), _cpu()
        for i in range(0, len(patches), batch_size):
            model(preprocess(patches[i : i + batch_size]))
        return time.perf_counter() - start, _cpu() - cpu, len(patches)


def _cpu() -> float:
    """CPU seconds of this process (all threads): less sensitive than wall time to other users."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genres", type=int, default=2)
    ap.add_argument("--discovery", type=int, default=16, help="discovery spectrograms per genre (thesis: 50)")
    ap.add_argument("--training", type=int, default=60, help="training spectrograms per genre (the random pool)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", metavar="DIR", help="build the run here and keep it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import pipelines.extract as E
    from whypop.config import load_config

    min_size = max(1, round(40 * args.discovery / 50))
    cfg = load_config(overrides={"extract.discovery_images": args.discovery, "extract.min_cluster_size": min_size,
                                 "extract.device": "cpu"}, env=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "run"
        store = build_store(root, args.genres, args.discovery, cfg.extract.score_images, args.training,
                            args.size, args.seed)
        start, cpu = time.perf_counter(), _cpu()
        eid = E.run(cfg, store)
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB (Linux)
        extraction = store.extraction(eid)
        floor, floor_cpu, n_patches = floor_seconds(store, extraction, cfg, cfg.extract.batch_size)
        n_concepts = len(store.concepts(eid))
        store.close()
    result = {
        "benchmark": "extract",
        "genres": args.genres, "discovery": args.discovery, "patches": n_patches, "concepts": n_concepts,
        "layer": cfg.extract.layer, "image_size": args.size,
        "wall": round(wall, 2), "floor": round(floor, 2), "floor_ratio": round(wall / floor, 3),
        "cpu": round(cpu, 1), "floor_cpu": round(floor_cpu, 1), "floor_ratio_cpu": round(cpu / floor_cpu, 3),
        "peak_rss_mb": round(peak, 1),
        "stages": extraction["timings"],
        "targets": {"floor_ratio": 1.5, "peak_rss_mb": 2048},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
