"""`whypop extract`: discover concepts with ACE and score them with TCAV."""

from __future__ import annotations

import argparse

from whypop.cli import ProgressBars, load_cli_config
from whypop.config import CavMode, PatchMode, choices
from whypop.results import ExtractionSummary
from whypop.store import RunStore

# flag attribute -> extract.* key
FLAG_KEYS = {"layer": "layer", "clusters": "n_clusters", "segments": "segments",
             "random_experiments": "random_experiments", "discovery_images": "discovery_images",
             "patch_mode": "patch_mode", "cav_mode": "cav_mode"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (or a preset name: demo, fma_small)")
    p.add_argument("--genres", nargs="+", metavar="GENRE", help="only these genres (default: all)")
    p.add_argument("--layer", help="bottleneck layer, e.g. layer4.2.conv2")
    p.add_argument("--clusters", type=int, metavar="N", help="k-means clusters per genre")
    p.add_argument("--segments", type=int, nargs="+", metavar="N", help="SLIC resolutions, e.g. 10 15 25")
    p.add_argument("--random-experiments", type=int, metavar="N", help="random sets (TCAV experiments)")
    p.add_argument("--discovery-images", type=int, metavar="N", help="spectrograms segmented per genre")
    p.add_argument("--patch-mode", choices=choices(PatchMode), help="crop and resize, or masked full frame")
    p.add_argument("--cav-mode", choices=choices(CavMode),
                   help="batched SGD solve, sklearn per pair, or batched logistic regression")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def flag_overrides(args: argparse.Namespace) -> dict:
    """The extract.* settings given as flags (they win over --set)."""
    out = {}
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def main(args: argparse.Namespace) -> int:
    from pipelines import extract  # the stage loads torch

    store = RunStore(args.run)
    flags = flag_overrides(args)
    cfg = load_cli_config(args, store=store, sections={"extract": flags} if flags else None)
    with ProgressBars() as bars:
        extraction_id = extract.run(cfg, store, bars, genres=args.genres)
    ex = store.extraction(extraction_id)
    summary = ExtractionSummary.from_dict(ex["summary"])
    n = len(store.concepts(extraction_id))
    print(f"extraction {extraction_id} complete in {ex['timings']['total']:.1f} s: {n} concepts "
          f"(`whypop status --run {args.run}`)")
    for genre, g in summary.genres.items():
        line = f"  {genre}: {g.n_concepts} concepts, {g.n_significant} significant"
        if g.overlap is not None:
            line += f"; top concept overlaps planted signature {g.overlap:.2f} (chance {g.chance:.2f})"
        print(line)
    for f in summary.artefact.get("flagged", []):
        print(f"  concept {f['concept_id']} ({f['genre']}) flagged {f['flag']}: {f['black_share']:.0%} black")
    return 0
