"""`whypop explain`: a song's predicted genre and the concepts behind it (any song, or any track of the run).

``whypop explain SONG... --run RUN [--extraction ID] [--json] [--out DIR]`` explains song
files the run has never seen; ``whypop explain --run RUN --track ID`` explains a track of
the run. With ``--json`` each song is one JSON object on one line; with ``--out`` a
song-view PNG (and the JSON) is written per song.
"""

from __future__ import annotations

import argparse
import json
import sys

from whypop.cli import ProgressBars
from whypop.errors import InputError
from whypop.store import RunStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("songs", nargs="*", metavar="SONG", help="audio files to explain (mp3, ogg, flac, wav, ...)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory (model and concepts)")
    p.add_argument("--track", action="append", default=[], metavar="ID", help="a track of the run (repeatable)")
    p.add_argument("--extraction", metavar="ID", help="extraction whose concepts to use (default: the latest)")
    p.add_argument("--json", action="store_true", help="one JSON object per song on stdout")
    p.add_argument("--out", metavar="DIR", help="write <song>.png (song view) and <song>.json here")
    p.add_argument("--top", type=int, default=5, metavar="N", help="concepts listed per song (default 5; JSON has all)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")


def main(args: argparse.Namespace) -> int:
    import pipelines.explain  # the stage loads torch

    if not args.songs and not args.track:
        raise InputError("nothing to explain: give song files, or --track ID for a track of the run")
    store = RunStore(args.run)
    with ProgressBars() as bars:
        result = pipelines.explain.run(None, store, bars, songs=args.songs, track_ids=args.track,
                                       extraction_id=args.extraction, out=args.out, device=args.device)
    for e in result.explanations:
        if args.json:
            print(json.dumps(e.to_dict()))
            continue
        print(format_explanation(e, args.top))
    if args.out and not args.json:
        for p in result.pngs:
            print(f"wrote {p}", file=sys.stderr)
    return 0


def format_explanation(e, top: int = 5) -> str:
    p = e.prediction
    probs = ", ".join(f"{g} {v:.1%}" for g, v in sorted(p.probabilities.items(), key=lambda kv: -kv[1]))
    truth = f" (labelled {e.genre})" if e.genre else ""
    lines = [f"{e.song}{truth}: predicted {p.genre} ({probs})",
             f"  {len(e.concepts)} concepts of extraction {e.extraction_id} found in {e.n_segments} segments; "
             f"ranked by influence on {p.genre} (directional derivative of its logit along the concept's CAV; "
             f"p drop = probability lost when the concept's regions are filled)"]
    for i, c in enumerate(e.concepts[:top], 1):
        regions = ", ".join(f"{r.start_s:.2f}-{r.end_s:.2f} s / {r.low_hz:.0f}-{r.high_hz:.0f} Hz" for r in c.regions[:3])
        more = f" (+{len(c.regions) - 3} more)" if len(c.regions) > 3 else ""
        flags = f" [{', '.join(c.flags)}]" if c.flags else ""
        lines.append(f"  {i}. {c.name}{flags}: influence {c.influence:+.4g}, p drop {c.probability_drop:+.3f}; "
                     f"{regions}{more}")
    if not e.concepts:
        lines.append("  no concept of this extraction lies in this song")
    return "\n".join(lines)
