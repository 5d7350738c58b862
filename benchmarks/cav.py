"""CAVs and TCAV scores: whypop's fast path against the exact sklearn path and Captum's TCAV.

All three start from the same activations and gradients (computed once, not timed):
ResNet34 (seeded random weights; ImageNet weights when ``--imagenet`` and available
offline) at 224 px, layer ``layer4.2.conv2`` (25,088 dimensions), on synthetic
spectrograms. ``--concepts`` concepts of ``--concept-size`` patches (each concept a
sound drawn in its own band of a fresh background), ``--experiments`` random sets of
``--set-size`` spectrograms plus a disjoint null set, ``--score-images`` images of a
class for the gradients. Timed, per method: every CAV (concept x random set and null x
random set), every TCAV score, the paired t-tests and the Holm-corrected verdicts.

- ``fast``: :func:`whypop.ace.cav.fit_cavs` in fast mode (one Gram matrix, batched
  Newton) + one product with the gradients.
- ``exact``: the same call in exact mode (sklearn ``SGDClassifier(alpha=0.01,
  max_iter=1000, tol=1e-3)`` per pair, seeded).
- ``captum``: ``captum.concept.TCAV`` with its default classifier (sklearn's
  SGDClassifier, same settings), fed the same activations (through an identity
  layer) and the same gradients (a probe whose output's gradient at that layer is the
  stored gradient), with a fresh save directory.

Prints one JSON line: wall seconds of each, ``speedup_vs_exact``, ``speedup_vs_captum``,
``mean_cosine`` (fast vs exact CAVs), ``verdict_agreement`` (share of concepts with the
same significance verdict, fast vs exact), the same against Captum, and for scale the
cosine between the two SGD implementations (exact vs Captum), which differ only by
their random splits. Targets: both speed-ups >= 20, agreement >= 0.95. About 5-8
minutes on 2 cores with the defaults (most of it in the two SGD paths).
Usage: ``python benchmarks/cav.py [--concepts 10] [--experiments 20] ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_images(n: int, rng: np.random.Generator, size: int, band: tuple[int, int] | None = None) -> np.ndarray:
    """Noisy spectrogram-like images; with ``band``, a sound (bright strokes) drawn in those rows."""
    rows = np.linspace(1.0, 0.6, size)[:, None]
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        img = rng.normal(120, 18, (size, size)) * rows
        for _ in range(rng.integers(2, 6)):  # background events anywhere
            y, x = rng.integers(0, size - 12, 2)
            img[y : y + rng.integers(2, 8), x : x + rng.integers(6, 40)] += rng.uniform(30, 80)
        if band is not None:
            y0, y1 = band
            x0 = int(rng.integers(0, size // 2))
            for x in range(x0, x0 + size // 2, int(rng.integers(6, 14))):
                img[y0:y1, x : x + 3] = rng.uniform(200, 255)
        out[i] = np.clip(img, 0, 255)
    return out


def compute_inputs(args) -> dict:
    """Activations of concept patches, random sets and the null set; gradients of score images."""
    import torch

    from whypop.ace.activations import LayerProbe
    from whypop.model import build_model

    torch.manual_seed(args.seed)
    model = build_model("resnet34", 8, "imagenet" if args.imagenet else "none")
    probe = LayerProbe(model, args.layer, "cpu", batch_size=16)
    rng = np.random.default_rng(args.seed)
    size = args.size
    bands = [(int(y), int(y) + size // 16) for y in np.linspace(4, size - size // 16 - 4, args.concepts)]
    concepts = [probe.activations(synthetic_images(args.concept_size, rng, size, b)).reshape(args.concept_size, -1)
                for b in bands]
    pool = probe.activations(synthetic_images(args.pool, rng, size)).reshape(args.pool, -1)
    score = synthetic_images(args.score_images, rng, size, bands[0])
    grads = probe.gradients(score, 0, "logit").reshape(args.score_images, -1)
    null = rng.choice(args.pool, args.set_size, replace=False)
    rest = np.setdiff1d(np.arange(args.pool), null)
    sets = [null] + [rng.choice(rest, args.set_size, replace=False) for _ in range(args.experiments)]
    return {"concepts": concepts, "pool": pool, "sets": sets, "grads": grads, "score": score}


def _verdicts(scores: np.ndarray, K: int, R: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from whypop.ace import stats

    tcav, null = scores[: K * R].reshape(K, R), scores[K * R :]
    p = stats.paired_pvalues(tcav, null)
    return tcav, p, stats.significant(p, alpha, "holm")


def run_whypop(data: dict, mode: str, alpha: float, seed: int) -> dict:
    from whypop.ace.cav import CavPair, fit_cavs
    from whypop.ace.tcav import sign_count

    warm = np.concatenate([data["concepts"][0][:4], data["pool"][:4]])  # imports and first-call overheads
    fit_cavs(warm, [CavPair(np.arange(4), np.arange(4, 8))], mode, seed=seed).project(data["grads"][:1, : warm.shape[1]])
    start = time.perf_counter()
    X = np.concatenate([*data["concepts"], data["pool"]])
    starts = np.cumsum([0] + [len(c) for c in data["concepts"]])
    off = int(starts[-1])
    sets = data["sets"]
    pairs = [CavPair(np.arange(starts[c], starts[c + 1]), off + s) for c in range(len(data["concepts"])) for s in sets[1:]]
    pairs += [CavPair(off + sets[0], off + s) for s in sets[1:]]
    fit = fit_cavs(X, pairs, mode, seed=seed)
    scores = sign_count(fit.project(data["grads"]))
    tcav, p, sig = _verdicts(scores, len(data["concepts"]), len(sets) - 1, alpha)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cavs": fit.cavs, "tcav": tcav, "p": p, "significant": sig,
            "accuracy": float(fit.accuracy.mean())}


def run_captum(data: dict, alpha: float, seed: int, layer: str = "bottleneck") -> dict:
    import torch
    from captum.concept import TCAV, Concept

    class Probe(torch.nn.Module):
        """Output whose gradient at ``bottleneck`` is the stored gradient ``g`` of each input."""

        def __init__(self):
            super().__init__()
            self.bottleneck = torch.nn.Identity()

        def forward(self, z, g=None):
            z = self.bottleneck(z)
            return (z * g).sum(1, keepdim=True) if g is not None else z.sum(1, keepdim=True)

    def batches(x: np.ndarray, size: int = 64):
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        return [t[i : i + size] for i in range(0, len(t), size)]

    random.seed(seed)
    torch.manual_seed(seed)
    K, R = len(data["concepts"]), len(data["sets"]) - 1
    concepts = [Concept(i, f"concept{i}", batches(c)) for i, c in enumerate(data["concepts"])]
    randoms = [Concept(K + j, f"random{j}", batches(data["pool"][s])) for j, s in enumerate(data["sets"])]
    experimental = [[c, r] for c in concepts for r in randoms[1:]] + [[randoms[0], r] for r in randoms[1:]]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        tcav = TCAV(Probe(), [layer], model_id="bench", save_path=tmp)
        # inputs: any (N, D) tensor (the identity passes it on); the probe's gradient is G
        inputs = torch.zeros(data["grads"].shape, dtype=torch.float32)
        out = tcav.interpret(inputs, experimental, target=0,
                             additional_forward_args=(torch.from_numpy(data["grads"]),))
        keys = ["-".join(str(c.id) for c in s) for s in experimental]
        scores = np.array([float(out[k][layer]["sign_count"][0]) for k in keys])
        result = _verdicts(scores, K, R, alpha)
        seconds = time.perf_counter() - start
        cavs = []
        for s, k in zip(experimental, keys):
            stats = tcav.cavs[k][layer].stats
            w, classes = stats["weights"], list(stats["classes"])
            v = w[classes.index(s[0].id)].float().numpy()
            cavs.append(v / np.linalg.norm(v))
    tcav_scores, p, sig = result
    return {"seconds": seconds, "cavs": np.stack(cavs), "tcav": tcav_scores, "p": p, "significant": sig}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concepts", type=int, default=10)
    ap.add_argument("--concept-size", type=int, default=40)
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--set-size", type=int, default=50)
    ap.add_argument("--pool", type=int, default=120)
    ap.add_argument("--score-images", type=int, default=50)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--layer", default="layer4.2.conv2")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--imagenet", action="store_true", help="ImageNet weights (must be available offline)")
    ap.add_argument("--skip-captum", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    t = time.perf_counter()
    data = compute_inputs(args)
    setup = time.perf_counter() - t
    fast = run_whypop(data, "fast", args.alpha, args.seed)
    exact = run_whypop(data, "exact", args.alpha, args.seed)
    captum = None if args.skip_captum else run_captum(data, args.alpha, args.seed)

    def cos(a, b):
        return float(np.mean(np.sum(a * b, axis=1)))

    result = {
        "benchmark": "cav",
        "pairs": int(len(fast["cavs"])), "dimensions": int(fast["cavs"].shape[1]),
        "concepts": args.concepts, "experiments": args.experiments,
        "fast_seconds": round(fast["seconds"], 3),
        "exact_seconds": round(exact["seconds"], 3),
        "captum_seconds": None if captum is None else round(captum["seconds"], 3),
        "speedup_vs_exact": round(exact["seconds"] / fast["seconds"], 1),
        "speedup_vs_captum": None if captum is None else round(captum["seconds"] / fast["seconds"], 1),
        "mean_cosine": round(cos(fast["cavs"], exact["cavs"]), 4),
        "verdict_agreement": float(np.mean(fast["significant"] == exact["significant"])),
        "tcav_mean_abs_diff": round(float(np.abs(fast["tcav"] - exact["tcav"]).mean()), 4),
        "mean_cosine_vs_captum": None if captum is None else round(cos(fast["cavs"], captum["cavs"]), 4),
        "verdict_agreement_vs_captum": None if captum is None else float(np.mean(fast["significant"] == captum["significant"])),
        "exact_vs_captum_cosine": None if captum is None else round(cos(exact["cavs"], captum["cavs"]), 4),
        "significant": {"fast": int(fast["significant"].sum()), "exact": int(exact["significant"].sum()),
                        "captum": None if captum is None else int(captum["significant"].sum())},
        "cav_accuracy": {"fast": round(fast["accuracy"], 4), "exact": round(exact["accuracy"], 4)},
        "setup_seconds": round(setup, 1),
        "targets": {"speedup_vs_exact": 20, "speedup_vs_captum": 20, "verdict_agreement": 0.95},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
