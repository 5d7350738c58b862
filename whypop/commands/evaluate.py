"""`whypop evaluate`: deletion and insertion tests of an extraction's concepts on held-out songs."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory")
    p.add_argument("--extraction", metavar="ID", help="extraction to test (default: the latest complete one)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (or a preset name: demo, fma_small)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a setting, e.g. extract.evaluate_songs=20")


def main(args: argparse.Namespace) -> int:
    from pipelines.evaluate import run
    from whypop.cli import ProgressBars, load_cli_config
    from whypop.store import RunStore

    store = RunStore(args.run)
    cfg = load_cli_config(args, store=store)
    with ProgressBars() as progress:
        result = run(cfg, store, progress, args.extraction)
    print(format_result(result))
    return 0


def format_result(result) -> str:
    """What the tests show, a few lines per genre."""
    lines = [f"extraction {result.extraction_id}: deletion and insertion tests in {result.timings.get('total', 0):.1f} s "
             f"({result.forward_images} edited images; songs: {result.songs})"]
    for genre, g in result.genres.items():
        d, i = g.deletion.probability, g.insertion.probability
        lines.append(f"  {g.verdict(min(3, g.max_k))}")
        lines.append(f"    p({genre}) deleting the top concept: {d.baseline:.2f} -> {d.top[0]:.2f} "
                     f"(random regions of the same area: {d.random[0]:.2f}; a random concept of about the same area: "
                     f"{d.random_concepts[0]:.2f}; the bottom one: {d.bottom[0]:.2f})")
        lines.append(f"    p({genre}) keeping only the top concept: {i.top[0]:.2f} "
                     f"(random regions of the same area: {i.random[0]:.2f}; a random concept: {i.random_concepts[0]:.2f}; "
                     f"the bottom one: {i.bottom[0]:.2f}; nothing kept: {i.empty:.2f})")
        weak = [c.concept_id for c in g.concepts if c.changes_nothing and c.rank < g.max_k]
        if weak:
            lines.append(f"    among the top {g.max_k}, deleting alone changes nothing for concept(s) "
                         + ", ".join(map(str, weak)))
    if not result.genres:
        lines.append("  no genre had both concepts and held-out songs to test")
    return "\n".join(lines)
