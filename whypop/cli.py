"""The ``whypop`` command: one subcommand per stage, each living in ``pipelines/``.

Heavy libraries (torch, dash) are imported only by the subcommand that needs them, so
``whypop --help`` and ``whypop status`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sqlite3
import sys
from typing import Callable, Iterator

from whypop import __version__
from whypop.errors import WhypopError
from whypop.text import visible

# subcommand -> (module with add_arguments/main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("pipelines.prepare", "audio files -> spectrograms and features in a run store"),
    "train": ("pipelines.train", "train (or import) the genre classifier"),
    "extract": ("pipelines.extract", "discover concepts with ACE and score them with TCAV"),
    "serve": ("pipelines.serve", "serve the dashboard for a run"),
    "demo": ("pipelines.demo", "the whole system on the synthetic demo, then the dashboard"),
    "status": ("pipelines.status", "what a run holds: tracks, failures, model, extractions, jobs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whypop", description="Explain how a deep network classifies music (ACE concepts, TCAV, dashboard)."
    )
    parser.add_argument("--version", action="version", version=f"whypop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # a stage not installed in this build
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    # spinning OpenMP threads make torch several times slower when another process holds a core
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except WhypopError as exc:
        print(f"whypop {args.command}: error: {visible(exc)}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # a run.sqlite damaged after it was opened (a truncated file)
        print(f"whypop {args.command}: error: the run store is damaged ({visible(exc)}): restore it from a copy "
              "or use another --run", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `whypop status | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush would raise again
        return 1
    except KeyboardInterrupt:
        print(f"whypop {args.command}: interrupted (finished work is kept; run it again to resume)", file=sys.stderr)
        return 130


def load_cli_config(args: argparse.Namespace, default: str | None = None, store=None):
    """The configuration a command runs with.

    Precedence, lowest first: the code defaults (or the ``default`` preset for a new
    run), the run's stored configuration, ``--config FILE``, ``WHYPOP_CONFIG``, ``--set``.
    """
    from whypop.config import config_from_dict, load_config, parse_overrides

    stored = store.get_meta("config") if store is not None else None
    base = config_from_dict(stored) if stored else None
    files = [getattr(args, "config", None)] if getattr(args, "config", None) else ([] if stored else [default])
    overrides = parse_overrides(getattr(args, "set", []) or [])
    return load_config(*files, base=base, overrides=overrides)


@contextlib.contextmanager
def tqdm_progress(desc: str, unit: str = "it") -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.n = done
        bar.refresh() if done >= total else bar.update(0)

    try:
        yield progress
    finally:
        bar.close()


class StageBars:
    """A ``progress(stage, done, total)`` drawing one tqdm bar per stage (the extraction's stages)."""

    def __enter__(self) -> Callable[[str, int, int], None]:
        self._stage: str | None = None
        self._cm = None
        self._bar = None

        def progress(stage: str, done: int, total: int) -> None:
            if stage != self._stage:
                self._close()
                self._stage = stage
                self._cm = tqdm_progress(stage)
                self._bar = self._cm.__enter__()
            self._bar(done, total)

        return progress

    def _close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None

    def __exit__(self, *exc) -> None:
        self._close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
