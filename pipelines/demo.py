"""`whypop demo`: the whole system on the synthetic demo collection, then the dashboard.

Generate the demo collection (genres told apart by planted signature sounds, one genre
with a planted silent-band artefact), prepare it, train a small network from scratch,
extract concepts, and serve the dashboard. Each stage is skipped when the run already
holds its result, so a second `whypop demo` starts serving in seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from whypop.config import Config
from whypop.store import RunStore

log = logging.getLogger(__name__)

DEFAULT_RUN = "runs/demo"


def say(message: str) -> None:
    print(f"[whypop demo] {message}", file=sys.stderr, flush=True)


def build(cfg: Config, store: RunStore, workers: int | None = None) -> dict:
    """Run every missing stage; returns seconds per stage (0 for a reused stage)."""
    import pipelines.extract
    import pipelines.prepare
    import pipelines.train
    from whypop.cli import StageBars, tqdm_progress

    timings: dict[str, float] = {}
    t = time.perf_counter()
    if store.tracks(status="ok"):
        say(f"reusing the prepared demo collection in {store.root}")
        timings["prepare"] = 0.0
    else:
        say(f"generating {cfg.demo.genres} synthetic genres x {cfg.demo.clips_per_genre} clips and preparing spectrograms")
        with tqdm_progress("prepare", unit="clip") as progress:
            pipelines.prepare.run(cfg, store, demo=True, workers=workers, progress=progress)
        timings["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    if store.current_model() is not None:
        say("reusing the trained model")
        timings["train"] = 0.0
    else:
        if cfg.train.pretrained == "none":
            say(f"training {cfg.train.arch} FROM SCRATCH (no ImageNet weights: train.pretrained = \"none\")")
        with tqdm_progress("train", unit="batch") as progress:
            metrics = pipelines.train.run(cfg, store, progress)
        acc = metrics.get("accuracy", {})
        say("test accuracy {:.1%}, validation {:.1%}".format(acc.get("test", float("nan")), acc.get("validation", float("nan"))))
        timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    if store.extractions():
        say("reusing the latest concept extraction")
        timings["extract"] = 0.0
    else:
        say("discovering concepts with ACE and scoring them with TCAV")
        with StageBars() as progress:
            extraction_id = pipelines.extract.run(cfg, store, progress)
        ex = store.extraction(extraction_id)
        for genre, g in sorted(((ex.get("summary") or {}).get("genres") or {}).items()):
            if g.get("overlap") is not None:
                say(f"{genre}: top concept overlaps its planted signature {g['overlap']:.2f} (chance {g['chance']:.2f})")
        timings["extract"] = time.perf_counter() - t
    return timings


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

    from whypop.cli import load_cli_config
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
    from whypop.cli import load_cli_config

    if getattr(args, "make_song", None):
        return make_song(args)
    start = time.perf_counter()
    store = RunStore(Path(args.run), create=True)
    cfg = load_cli_config(args, default="demo", store=store)
    timings = build(cfg, store, args.workers)
    say("ready in {:.0f} s ({})".format(
        time.perf_counter() - start, ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())))
    if args.no_serve:
        say(f"done; serve it with: whypop serve --run {args.run}")
        return 0
    import pipelines.serve

    return pipelines.serve.serve(store, cfg, host=args.host, port=args.port)
