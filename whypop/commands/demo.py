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


def main(args: argparse.Namespace) -> int:
    from pipelines import demo  # the stages load torch

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
