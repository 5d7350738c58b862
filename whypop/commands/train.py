"""`whypop train`: train the genre classifier on a run's spectrograms, or import one."""

from __future__ import annotations

import argparse
import sys

from whypop.cli import ProgressBars, load_cli_config
from whypop.config import Device, choices
from whypop.errors import ConfigError
from whypop.store import RunStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory (prepared)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (or a preset name: demo, fma_small)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs (default: train.epochs)")
    p.add_argument("--device", choices=choices(Device), help="default: train.device")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its last finished epoch")
    p.add_argument("--import", dest="import_file", metavar="FILE",
                   help="import a checkpoint ({'state_dict', 'arch'} or a bare state dict with --set train.arch=...) instead of training")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def epoch_postfix(bars: ProgressBars):
    """A training report drawing epoch, loss and accuracy beside the batch bar."""

    def report(info: dict) -> None:
        parts = {"epoch": f"{info['epoch']}/{info['epochs']}"}
        if "loss" in info:
            parts.update(loss=f"{info['loss']:.3f}", acc=f"{info['accuracy']:.3f}")
        if "val_accuracy" in info:
            parts["val_acc"] = f"{info['val_accuracy']:.3f}"
        bars.postfix(parts)

    return report


def main(args: argparse.Namespace) -> int:
    from pipelines import train  # the stage loads torch

    store = RunStore(args.run)
    cfg = load_cli_config(args, store=store)
    if args.import_file:
        if args.resume or args.epochs is not None:
            raise ConfigError("--import evaluates a finished checkpoint: --resume and --epochs do not apply")
        if args.device:
            cfg = cfg.replace(train={"device": args.device})
        metrics = train.import_checkpoint(cfg, store, args.import_file)
    else:
        try:
            with ProgressBars(unit="batch") as bars:
                metrics = train.run(cfg, store, bars, resume=args.resume, epochs=args.epochs, device=args.device,
                                    report=epoch_postfix(bars))
        except KeyboardInterrupt:
            print(f"whypop train: finished epochs are saved; `whypop train --run {args.run} --resume` continues "
                  f"after the last one (the previous model stays current)", file=sys.stderr)
            raise
    model = store.current_model()
    acc = metrics["accuracy"]
    print(f"model {model['model_id']} ({model['arch']}, {model['origin']}): validation accuracy "
          f"{acc['validation']:.1%}, test accuracy {acc['test']:.1%}"
          + (f", best epoch {metrics['best_epoch']}" if metrics.get("best_epoch") else ""))
    for note in metrics["notes"]:
        print(f"  {note}")
    print(f"  saved in {model['path']} (`whypop status --run {args.run}`)")
    return 0
