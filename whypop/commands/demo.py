"""`whypop demo`: the whole system on the synthetic demo collection, then the dashboard.

Generate the demo collection, prepare it, train a small network from scratch, extract
concepts (the stage :mod:`pipelines.demo`), and serve the dashboard.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from whypop.cli import ProgressBars, load_cli_config
from whypop.commands.serve import serve
from whypop.store import RunStore

DEFAULT_RUN = "runs/demo"


def say(message: str) -> None:
    print(f"[whypop demo] {message}", file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=DEFAULT_RUN, metavar="RUN_DIR", help=f"run store directory (default: {DEFAULT_RUN})")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: the demo preset)")
    p.add_argument("--no-serve", action="store_true", help="build everything, then exit instead of serving")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default 8050)")
    p.add_argument("--host", default=None, help="dashboard host (default 127.0.0.1)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="processes for preparation")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    p.add_argument("--make-song", metavar="GENRE", help="write one fresh demo clip of GENRE (in no run) and print "
                   "its planted region as JSON, instead of building the demo")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="with --make-song: the clip's seed (default 0)")
    p.add_argument("--out", metavar="FILE.wav", help="with --make-song: where to write the clip")


def make_song(args: argparse.Namespace) -> int:
    """`whypop demo --make-song GENRE --seed N --out FILE.wav`: one fresh clip, its planted region on stdout."""
    import json

    from whypop.demo import make_song as write_song
    from whypop.errors import InputError

    if not args.out:
        raise InputError("--make-song needs --out FILE.wav (where to write the clip)")
    run = Path(args.run)
    store = RunStore(run) if (run / "run.sqlite").is_file() else None
    cfg = load_cli_config(args, default="demo", store=store)
    try:
        clip = write_song(args.make_song, args.seed, Path(args.out), clip_seconds=cfg.demo.clip_seconds,
                          sample_rate=cfg.demo.sample_rate, genres=cfg.demo.genres)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    box = clip.signature
    print(json.dumps({"genre": clip.genre, "seed": args.seed, "path": str(clip.path), "label": box.label,
                      "start_s": round(box.t0, 4), "end_s": round(box.t1, 4), "low_hz": box.f0, "high_hz": box.f1}))
    return 0


def main(args: argparse.Namespace) -> int:
    if getattr(args, "make_song", None):
        return make_song(args)
    from pipelines import demo  # the stages load torch

    if getattr(args, "make_song", None):
        return make_song(args)
    start = time.perf_counter()
    store = RunStore(Path(args.run), create=True)
    cfg = load_cli_config(args, default="demo", store=store)
    with ProgressBars() as bars:
        timings = demo.build(cfg, store, bars, args.workers, say=say)
    say("ready in {:.0f} s ({})".format(
        time.perf_counter() - start, ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())))
    if args.no_serve:
        say(f"done; serve it with: whypop serve --run {args.run}")
        return 0
    return serve(store, cfg, host=args.host, port=args.port)
