"""Time of the deletion and insertion tests of one extraction, against their floor.

Setting: a copy of a complete run (default: the demo run, ``WHYPOP_TEST_DEMO_RUN`` or
``runs/demo``, as ``whypop demo`` builds it; ``--run DIR`` for another), its latest extraction, the configured
``extract.evaluate_*`` settings. Timed: ``pipelines.evaluate.run`` whole (concept bank,
placement of the concepts in every held-out song, the edited images, their forward
passes, the summaries, the file written).

The floor, measured in the same run: the forward passes of the edited images, as plain
model calls on the same number of images of the same size, at the same batch size,
once before and once after the timed stage (their mean; a shared machine's load moves).
``floor_ratio`` = stage / floor; ``inner_ratio`` = stage / the stage's own time inside
those forward passes (immune to load changes between the passes). Target: ``floor_ratio`` <= 1.5. Also reported: the
stage's own time inside the forward passes and in placement (segmentation, patches and
their passes to the layer), and ``floor_with_placement``: the floor plus the placement
patches' passes to the layer, the network work the stage cannot avoid.

Prints one JSON line. Usage: ``python benchmarks/evaluate.py [--run DIR] [--draws N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from pipelines import evaluate
    from pipelines.explain import load_model, segment_params
    from whypop.ace.activations import LayerProbe
    from whypop.ace.placement import segment
    from whypop.ace.patches import make_patches
    from whypop.config import resolve_config
    from whypop.model import preprocess
    from whypop.store import RunStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=os.environ.get("WHYPOP_TEST_DEMO_RUN", "runs/demo"))
    ap.add_argument("--draws", type=int, default=None, help="extract.evaluate_draws (default: the run's)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run)
        shutil.rmtree(run / "cache" / "explain", ignore_errors=True)  # the concept bank is built, not reused
        store = RunStore(run)
        overrides = [f"extract.evaluate_draws={args.draws}"] if args.draws else []
        cfg = resolve_config(stored=store.get_meta("config"), overrides=overrides)
        # a first pass counts the edited images (and warms the caches the stage keeps: the concept bank)
        first = evaluate.run(cfg, store)
        shutil.rmtree(run / "cache" / "explain", ignore_errors=True)
        ex = store.extraction(first.extraction_id)
        loaded = load_model(store, ex["model_id"], cfg.extract.device)
        songs = [s for g in first.genres.values() for s in g.track_ids]
        images = np.stack([store.load_spectrogram(s) for s in songs])
        bs = cfg.extract.batch_size
        n = first.forward_images

        def floor_pass() -> float:
            """The same number of forward passes, same size and batch, as plain model calls."""
            t = time.perf_counter()
            with torch.inference_mode():
                done = 0
                while done < n:
                    b = min(bs, n - done)
                    idx = np.arange(done, done + b) % len(images)
                    torch.softmax(loaded.model(preprocess(images[idx], loaded.device)).float(), dim=1).cpu().numpy()
                    done += b
            return time.perf_counter() - t

        # floor, stage, floor: the floor is the mean of the passes either side (the machine is shared)
        before = floor_pass()
        t = time.perf_counter()
        result = evaluate.run(cfg, store)
        stage = time.perf_counter() - t
        after = floor_pass()
        floor = (before + after) / 2

        # the placement's unavoidable network work: every segment's patch to the layer
        params = segment_params(store, result.extraction_id)
        probe = LayerProbe(loaded.model, ex["params"]["extract"]["layer"], loaded.device, bs)
        patches = np.concatenate([make_patches(img, segment(img, params), params.fill, params.patch_mode,
                                               params.image_size) for img in images])
        t = time.perf_counter()
        probe.activations(patches)
        patch_pass = time.perf_counter() - t

    print(json.dumps({
        "benchmark": "evaluate", "run": str(args.run), "extraction": result.extraction_id,
        "genres": len(result.genres), "songs": len(songs), "edited_images": n, "placement_patches": int(len(patches)),
        "stage_s": round(stage, 2), "floor_s": round(floor, 2), "floor_ratio": round(stage / floor, 2),
        "floor_before_s": round(before, 2), "floor_after_s": round(after, 2),
        "inner_ratio": round(stage / result.timings["forward"], 2),
        "floor_with_placement_s": round(floor + patch_pass, 2),
        "ratio_with_placement": round(stage / (floor + patch_pass), 2),
        "stage_forward_s": result.timings.get("forward"), "stage_placement_s": result.timings.get("placement"),
        "stage_bank_s": result.timings.get("bank"), "target_floor_ratio": 1.5,
        "threads": torch.get_num_threads(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
