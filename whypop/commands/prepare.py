"""`whypop prepare`: audio files -> spectrograms and features in a run store."""

from __future__ import annotations

import argparse
from pathlib import Path

from whypop.cli import ProgressBars, load_cli_config
from whypop.collection import CollectionSummary
from whypop.errors import InputError
from whypop.store import DB_NAME, RunStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio_dir", nargs="?", metavar="AUDIO_DIR", help="the audio collection")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory (created if missing)")
    p.add_argument("--metadata", metavar="META_DIR", help="FMA metadata folder (tracks.csv, echonest.csv)")
    p.add_argument("--layout", choices=("fma", "folders"), help="collection layout (default: fma when --metadata is given)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (or a preset name: demo, fma_small)")
    p.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    p.add_argument("--demo", action="store_true", help="generate the demo collection into the run and prepare it")
    p.add_argument("--retry-failed", action="store_true", help="try tracks that failed before again")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def main(args: argparse.Namespace) -> int:
    from pipelines import prepare  # the stage loads the audio libraries

    # a re-run without --config keeps the run's own settings (--set still applies)
    existing = RunStore(args.run) if (Path(args.run) / DB_NAME).is_file() else None
    cfg = load_cli_config(args, default="demo" if args.demo else None, store=existing)
    store = existing or RunStore(args.run, create=True)
    layout = args.layout or ("fma" if args.metadata else "folders")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {args.workers})")
    with ProgressBars(unit="clip") as bars:
        counts = prepare.run(cfg, store, args.audio_dir, layout, args.metadata, args.workers, args.demo, bars,
                             retry_failed=args.retry_failed)
    print(f"prepared {counts.new} new, skipped {counts.skipped} already done, {counts.failed} failed now; "
          f"{counts.ok} usable, {counts.failed_total} failed in all (`whypop status --run {args.run}`)")
    if counts.collection:
        summary = CollectionSummary.from_dict(counts.collection)
        print("\n".join(summary.lines()))
        for w in summary.warnings:
            print(f"warning: {w}")
    return 0
