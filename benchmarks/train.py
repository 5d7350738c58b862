"""Training throughput: the input pipeline against the bare step, and the frozen-part cache.

Prints one JSON line:

- ``pipeline_images_per_second`` / ``bare_images_per_second`` / ``ratio``: the demo's
  training configuration (ResNet18, 128 px, everything trainable) through whypop's full
  input pipeline (PNG decoding, augmentation, preprocessing in DataLoader workers), and
  the same model's training step on the same batches already in memory, alternated in
  one process. Target: ratio >= 0.9 (the data pipeline is never the bottleneck).
- ``cache_speedup``: the thesis configuration (ResNet34, 224 px, layer4's last block +
  fc trainable) for one epoch from the same initial weights, without and with the
  frozen-part cache (the one-off cache build is reported apart, as ``cache_build_seconds``);
  ``loss_max_rel_diff`` compares the two runs' per-batch losses (float16 rounding of the
  cached activations is the only difference). Target: cache_speedup >= 2.

Synthetic spectrograms are written to a temporary run store; about 3-5 minutes on 2 cores.
Usage: ``python benchmarks/train.py [--songs N] [--rounds R] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whypop.env import setup_environment  # noqa: E402

setup_environment()  # as `whypop train` does, before torch loads

GENRES = ("alpha", "beta", "gamma", "delta")


def synthetic_run(root: Path, size: int, train_songs: int, eval_songs: int = 2, seed: int = 0):
    """A run store of noise spectrograms with a genre-specific bright band."""
    from PIL import Image

    from whypop.store import RunStore, Track

    store = RunStore(root, create=True)
    rng = np.random.default_rng(seed)
    tracks = []
    for g, genre in enumerate(GENRES):
        for split, n in (("training", train_songs), ("validation", eval_songs), ("test", eval_songs)):
            for i in range(n):
                tracks.append(Track(f"{genre}-{split[:2]}-{i:03d}", genre, split, f"{genre}/{i}.wav"))
    store.upsert_tracks(tracks)
    for t in tracks:
        g = GENRES.index(t.genre)
        image = rng.integers(0, 140, (size, size), dtype=np.uint8)
        row = int((g + 0.5) * size / len(GENRES))
        image[row - size // 32 : row + size // 32] += 100
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        rel = f"spectrograms/{t.track_id}.png"
        store.write_bytes_atomic(rel, buf.getvalue())
        store.record_track_result(t.track_id, ok=True, spectrogram=rel, duration=30.0, sample_rate=22050, channels=1)
    return store


def pipeline_vs_bare(workdir: Path, songs: int, rounds: int) -> dict:
    """Demo config: full input pipeline vs the bare step on in-memory batches."""
    import torch

    from whypop import train as T
    from whypop.config import load_config

    cfg = load_config("demo")
    size = cfg.audio.image_size
    store = synthetic_run(workdir / "pipeline", size, songs)
    data = T.load_data(store)
    trainer = T.Trainer(cfg, data, torch.device("cpu"))
    batches = list(trainer.train_batches(1))  # the same batches, materialised in memory
    for x, y in batches[:3]:  # warm the kernels
        trainer.step(x, y)
    images = sum(len(y) for _, y in batches)
    piped, bare = [], []
    for r in range(rounds):
        start = time.perf_counter()
        for x, y in trainer.train_batches(1):  # decode + augment + preprocess in the workers
            trainer.step(x, y)
        piped.append(images / (time.perf_counter() - start))
        start = time.perf_counter()
        for x, y in batches:
            trainer.step(x, y)
        bare.append(images / (time.perf_counter() - start))
    trainer.close()
    p, b = statistics.median(piped), statistics.median(bare)
    return {
        "pipeline_config": f"{cfg.train.arch} {size}px trainable={cfg.train.trainable} batch {cfg.train.songs_per_batch}x4, "
                           f"{cfg.train.num_workers} workers",
        "pipeline_images_per_second": round(p, 2),
        "bare_images_per_second": round(b, 2),
        "ratio": round(p / b, 3),
        "pipeline_rounds": [round(v, 2) for v in piped],
        "bare_rounds": [round(v, 2) for v in bare],
        "images_per_round": images,
    }


def cache_speedup(workdir: Path, songs: int) -> dict:
    """Thesis config: one epoch without and with the frozen-part cache, same start."""
    import torch

    from whypop import train as T
    from whypop.config import Config

    cfg = Config().replace(train={"pretrained": "none", "epochs": 1})  # weights' values do not change the cost
    store = synthetic_run(workdir / "cache", cfg.audio.image_size, songs, eval_songs=1)
    data = T.load_data(store)
    results = {}
    for use_cache in (False, True):
        trainer = T.Trainer(cfg, data, torch.device("cpu"), cache_root=store.root / "cache" if use_cache else None)
        build = trainer.prepare_cache()
        warm = T.Trainer(cfg, data, torch.device("cpu"), cache_root=store.root / "cache" if use_cache else None)
        warm.prepare_cache()
        for i, (x, y) in enumerate(warm.train_batches(1)):  # warm kernels and workers on a throwaway model
            warm.step(x, y)
            if i == 1:
                break
        warm.close()
        losses = []
        start = time.perf_counter()
        for x, y in trainer.train_batches(1):
            losses.append(trainer.step(x, y)[0])
        seconds = time.perf_counter() - start
        results[use_cache] = {"seconds": seconds, "build": build, "losses": losses,
                              "images": len(data.splits["training"]) * T.N_VIEWS}
        trainer.close()
    a, b = np.array(results[False]["losses"]), np.array(results[True]["losses"])
    rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6)))
    epoch_plain, epoch_cached = results[False]["seconds"], results[True]["seconds"]
    return {
        "cache_config": "resnet34 224px trainable=tail (layer4.2 + fc), batch 4x4",
        "epoch_images": results[False]["images"],
        "epoch_seconds_without_cache": round(epoch_plain, 2),
        "epoch_seconds_with_cache": round(epoch_cached, 3),
        "cache_build_seconds": round(results[True]["build"], 2),
        "cache_speedup": round(epoch_plain / epoch_cached, 2),
        "cache_speedup_50_epochs_incl_build": round(50 * epoch_plain / (50 * epoch_cached + results[True]["build"]), 2),
        "loss_max_rel_diff": rel,
        "losses_equal_within_float16": rel < 5e-3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, default=24, help="training songs per genre for the pipeline comparison")
    ap.add_argument("--cache-songs", type=int, default=8, help="training songs per genre for the cache comparison")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="write the temporary runs here and keep them")
    args = ap.parse_args()
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="whypop-bench-train-"))
    try:
        load = os.getloadavg()[0]
        out = {"benchmark": "train", "threads": torch.get_num_threads(), "load_before": round(load, 2)}
        out.update(pipeline_vs_bare(workdir, args.songs, args.rounds))
        out.update(cache_speedup(workdir, args.cache_songs))
        out["load_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps(out))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
