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
    p.add_argument("--seeds", type=int, metavar="N",
                   help="run discovery N times (extract.seed + 1 .. + N-1, then extract.seed) and report how well "
                        "the concepts match across seeds")
    p.add_argument("--no-evaluate", action="store_true",
                   help="skip the deletion and insertion tests (extract.evaluate = false)")
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
    if getattr(args, "no_evaluate", False):
        flags["evaluate"] = False
    cfg = load_cli_config(args, store=store, sections={"extract": flags} if flags else None)
    stability = None
    with ProgressBars() as bars:
        if getattr(args, "seeds", None) and args.seeds != 1:
            from pipelines import stability as stability_stage

            extraction_id, stability = stability_stage.run(cfg, store, bars, seeds=args.seeds, genres=args.genres)
        else:
            extraction_id = extract.run(cfg, store, bars, genres=args.genres)
    ex = store.extraction(extraction_id)
    summary = ExtractionSummary.from_dict(ex["summary"])
    n = len(store.concepts(extraction_id))
    if summary.plan.get("line"):
        print(summary.plan["line"])
    print(f"extraction {extraction_id} complete in {ex['timings']['total']:.1f} s: {n} concepts "
          f"(`whypop status --run {args.run}`)")
    for genre, g in summary.genres.items():
        line = f"  {genre}: {g.n_concepts} concepts, {g.n_significant} significant"
        if g.overlap is not None:
            line += f"; top concept overlaps planted signature {g.overlap:.2f} (chance {g.chance:.2f})"
        print(line)
    for f in summary.artefact.get("flagged", []):
        where = {"above-nyquist": "above the source's Nyquist", "padding": "padding after the song ends"}
        print(f"  concept {f['concept_id']} ({f['genre']}) flagged {f['flag']}: "
              + (f"{f.get('empty_share', 0):.0%} {where[f['flag']]}" if f["flag"] in where
                 else f"{f['black_share']:.0%} black"))
    if cfg.extract.evaluate:
        from pipelines.evaluate import load
        from whypop.commands.evaluate import format_result

        result = load(store, extraction_id)
        print(format_result(result) if result is not None else
              "  deletion and insertion tests not run (see the warning above)")
    if stability is not None:
        print(format_stability(stability))
    return 0


def format_stability(s) -> str:
    """How well the concepts match across seeds, a line per genre."""
    lines = [f"stability over seeds {', '.join(map(str, s.seeds))} (extractions "
             f"{', '.join(map(str, s.extraction_ids))}; the first is the reference): mean best-match cosine of "
             f"significant concepts {_num(s.best_cosine)}, share matched above {s.match}: {_pct(s.matched_share)}"]
    for genre, g in s.genres.items():
        line = (f"  {genre}: {g.significant} significant; best-match cosine per other seed "
                f"{', '.join(_num(v) for v in g.best_cosine)}; matched {', '.join(_pct(v) for v in g.matched_share)}; "
                f"top concept's match {', '.join(_num(v) for v in g.top_cosine)}")
        if g.planted_found is not None:
            line += (f"; planted signature found under {sum(g.planted_found)} of {len(g.planted_found)} seeds "
                     f"(overlaps {', '.join(_num(v) for v in g.planted_overlap)})")
        lines.append(line)
    return "\n".join(lines)


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0%}"
