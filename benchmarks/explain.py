"""Time to explain one 30 s song at the thesis settings, against its floor.

Setting: ResNet34 with seeded random weights (no download; the timing does not depend
on the weights), 8 genres, layer ``layer4.2.conv2``, 224 px images of 30 s at 44.1 kHz
(the thesis audio settings), SLIC 10/15/25, ``faithful`` patches. The concepts: the
segment features of ``--discovery`` other fresh demo songs, clustered with k-means into
``--concepts`` concepts spread over the 8 genres (their radii calibrated on their members
as in an extraction), with random unit mean CAVs. Not timed.

Timed (median of ``--repeats``): ``whypop.explain``'s whole path for one fresh 30 s song
file: preparation (decode, mel, image), prediction with the gradient at the layer,
segments, patches, activations, placement, directional derivatives, the filled images'
forward pass, ranking.

The floor, measured in the same run: the network passes that song needs, as plain
model calls on inputs of the same counts and batch sizes: the patches' forward passes
to the layer, one forward and backward pass of the song, one forward pass per distinct
filled image. ``floor_ratio`` = explain / floor. Targets: ``floor_ratio`` <= 1.5 and
explain < 5 s.

Prints one JSON line. Usage: ``python benchmarks/explain.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GENRES = [f"genre{i}" for i in range(8)]
LAYER = "layer4.2.conv2"


def main() -> int:
    import torch

    import pipelines.explain as pe
    from whypop.ace.placement import ConceptBank, SegmentParams, patch_features, segment
    from whypop.config import Config
    from whypop.demo import make_song
    from whypop.explain import Explainer
    from whypop.model import build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--discovery", type=int, default=6, help="songs whose segments make the concepts")
    ap.add_argument("--concepts", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = Config()  # thesis settings
    model = build_model("resnet34", len(GENRES), "none").eval()
    params = SegmentParams.from_extract(cfg.extract, fill=100.0, image_size=cfg.audio.image_size)
    kinds = ["Kick", "Hats", "Pluck", "Formant"]
    with tempfile.TemporaryDirectory() as tmp:
        def song(i: int) -> Path:
            return make_song(kinds[i % 4], 5000 + i, Path(tmp) / f"s{i}.wav", clip_seconds=cfg.audio.duration,
                             sample_rate=cfg.audio.sample_rate, genres=4).path

        # -- concepts (not timed) --------------------------------------------------------------
        from whypop.ace.activations import LayerProbe
        from sklearn.cluster import KMeans

        probe = LayerProbe(model, LAYER, "cpu", args.batch_size)
        feats = []
        for i in range(args.discovery):
            image, _ = pe.prepare_song(song(i), cfg)
            feats.append(patch_features(image, segment(image, params), params, probe.activations))
        feats = np.concatenate(feats)
        k = min(args.concepts, len(feats) // 2)
        labels = KMeans(k, n_init=1, random_state=0).fit_predict(feats)
        groups = [feats[labels == j] for j in range(k) if (labels == j).sum() >= 2]
        rng = np.random.default_rng(0)
        dim = int(np.prod(probe.output_shape(cfg.audio.image_size)))
        cavs = rng.normal(size=(len(groups), dim)).astype(np.float32)
        bank = ConceptBank.from_members(range(len(groups)), [GENRES[j % len(GENRES)] for j in range(len(groups))],
                                        groups, mean_cavs=cavs)
        explainer = Explainer(model, GENRES, LAYER, bank, params, cfg.audio, "cpu", batch_size=args.batch_size)
        target = song(args.discovery)  # a song the concepts were not made from
        pe.prepare_song(target, cfg)  # warm the decoder and the mel kernel

        # -- the explanation (timed) -------------------------------------------------------------
        explain_s, counts, explanation = [], None, None
        for _ in range(args.repeats):
            t = time.perf_counter()
            image, duration = pe.prepare_song(target, cfg)
            explanation, _ = explainer.explain(image, "song", duration)
            explain_s.append(time.perf_counter() - t)
            counts = dict(explainer.last_counts)

        # -- the floor: the same network passes as plain model calls --------------------------
        floor_s = []
        patches = rng.integers(0, 256, (counts["patches"], *image.shape), dtype=np.uint8)
        filled = rng.integers(0, 256, (max(counts["filled"], 0), *image.shape), dtype=np.uint8)
        for _ in range(args.repeats):
            t = time.perf_counter()
            probe.activations(patches)
            explainer.forward_backward(image)
            if len(filled):
                explainer.probabilities(filled)
            floor_s.append(time.perf_counter() - t)

    explain_med, floor_med = float(np.median(explain_s)), float(np.median(floor_s))
    print(json.dumps({
        "benchmark": "explain", "model": "resnet34 (seeded random weights)", "layer": LAYER,
        "image_size": cfg.audio.image_size, "song_seconds": cfg.audio.duration, "genres": len(GENRES),
        "concepts": len(bank), "segments": counts["patches"], "filled_images": counts["filled"],
        "concepts_present": len(explanation.concepts),
        "explain_s": round(explain_med, 3), "floor_s": round(floor_med, 3),
        "floor_ratio": round(explain_med / floor_med, 3),
        "steps_s": {k: round(v, 3) for k, v in explanation.timings.items()},
        "explain_runs_s": [round(v, 3) for v in explain_s], "floor_runs_s": [round(v, 3) for v in floor_s],
        "torch_threads": torch.get_num_threads(),
        "targets": {"floor_ratio": 1.5, "explain_s": 5.0},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
