"""``whypop report``: one self-contained HTML file of an extraction, to share without a server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from whypop.errors import WhypopError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--extraction", type=int, default=None, help="extraction id (default: the latest complete one)")
    parser.add_argument("--out", required=True, help="the HTML file to write (images go in OUT_files/ if too large)")
    parser.add_argument("--no-audio", action="store_true",
                        help="leave out the examples' audio clips (smaller, and quick on a run whose clips are not cached)")
    parser.add_argument("--json", action="store_true", help="print what was written as one JSON line")


def main(args: argparse.Namespace) -> int:
    from whypop.app.report import build_report
    from whypop.cli import ProgressBars
    from whypop.store import RunStore

    run = Path(args.run)
    if not (run / "run.sqlite").is_file():
        raise WhypopError(f"--run {args.run!r} is not a run directory (no run.sqlite): give the directory "
                          "`whypop prepare` wrote")
    out = Path(args.out)
    if out.is_dir():
        raise WhypopError(f"--out {args.out!r} is a directory: give a file name such as report.html")
    with ProgressBars() as bars:
        result = build_report(RunStore(run), out, extraction_id=args.extraction, audio=not args.no_audio,
                              progress=bars)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        f = result.file
        where = f" (media in {f.media_folder})" if f.media_folder else ""
        print(f"wrote {f.path}: {f.total_bytes / 1e6:.1f} MB{where}, {f.figures} figures, {f.images} images; "
              f"extraction {result.extraction_id}, {result.significant} of {result.concepts} concepts significant")
    return 0
