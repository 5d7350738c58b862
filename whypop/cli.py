"""The ``whypop`` command: one subcommand per module of :mod:`whypop.commands`.

The entry point on top of the stages (``pipelines/``): it parses arguments, resolves the
configuration, renders the stages' progress events as tqdm bars and prints results.
Heavy libraries (torch, dash) are imported only by the subcommand that runs, so
``whypop --help`` and ``whypop status`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sqlite3
import sys

from whypop import __version__
from whypop.config import Config, resolve_config
from whypop.env import setup_environment
from whypop.errors import WhypopError
from whypop.text import visible
from whypop.progress import ProgressEvent

# subcommand -> (module with add_arguments/main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("whypop.commands.prepare", "audio files -> spectrograms and features in a run store"),
    "train": ("whypop.commands.train", "train (or import) the genre classifier"),
    "extract": ("whypop.commands.extract", "discover concepts with ACE and score them with TCAV"),
    "evaluate": ("whypop.commands.evaluate", "deletion and insertion tests of an extraction's concepts"),
    "serve": ("whypop.commands.serve", "serve the dashboard for a run"),
    "demo": ("whypop.commands.demo", "the whole system on the synthetic demo, then the dashboard"),
    "explain": ("whypop.commands.explain", "explain a song's predicted genre with the run's concepts"),
    "status": ("whypop.commands.status", "what a run holds: tracks, failures, model, extractions, jobs"),
    "listen": ("whypop.commands.listen", "hear a concept: an example, or its regions in a song, as a WAV file"),
    "report": ("whypop.commands.report", "one self-contained HTML report of an extraction, to share"),
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
            continue  # a command not installed in this build
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


class VisibleFormatter(logging.Formatter):
    """Log lines with control characters from file names shown as escapes, not obeyed by the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep_newlines=True)


def main(argv: list[str] | None = None) -> int:
    setup_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
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


def load_cli_config(args: argparse.Namespace, default: str | None = None, store=None,
                    sections: dict | None = None) -> Config:
    """The configuration a command runs with (:func:`whypop.config.resolve_config`).

    ``default`` is the preset of a run with no stored configuration; ``--config`` and
    ``--set`` come from ``args``; ``sections`` holds the command's own flags.
    """
    return resolve_config(
        preset=default, stored=store.get_meta("config") if store is not None else None,
        file=getattr(args, "config", None), overrides=getattr(args, "set", None) or [], sections=sections,
    )


class ProgressBars:
    """A :data:`whypop.progress.Progress` drawing one tqdm bar per step on stderr.

    A new bar opens when the event's (stage, step, genre) changes; the previous one
    closes. ``describe`` may add a postfix to the current bar (training's epoch and loss).
    """

    def __init__(self, unit: str = "it"):
        self.unit = unit
        self._key: tuple | None = None
        self._bar = None

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, event: ProgressEvent) -> None:
        key = (event.stage, event.step, event.genre)
        if key != self._key:
            self.close()
            self._key = key
            self._bar = _tqdm(f"{event.stage}: {event.label}", self.unit, event.total)
        bar = self._bar
        if bar.total != event.total:
            bar.total = event.total
            bar.refresh()
        bar.n = event.done
        bar.refresh() if event.done >= event.total else bar.update(0)

    def postfix(self, values: dict[str, str]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._key = None


def _tqdm(desc: str, unit: str, total: int):
    from tqdm import tqdm  # only commands that run a stage draw bars

    return tqdm(desc=desc, unit=unit, total=total, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
