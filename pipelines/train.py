"""`whypop train`: train the genre classifier on a run's spectrograms, or import one.

The model becomes the run's current model only when it is complete: weights and
metrics are written into the model's partial directory and moved into place in one
step (:meth:`RunStore.complete_model`). A failed or interrupted training marks its row
failed and leaves the previous model current; ``--resume`` continues an interrupted
training from its last finished epoch (see :mod:`whypop.train`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from whypop.config import Config
from whypop.errors import ConfigError, InputError
from whypop.store import RunStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Report = Callable[[dict], None]
METRICS_NAME = "metrics.json"


def _resolved(cfg: Config, epochs: int, device: str) -> Config:
    return cfg.replace(train={"epochs": epochs, "device": device})


def run(
    cfg: Config,
    store: RunStore,
    progress: Progress | None = None,
    *,
    resume: bool = False,
    epochs: int | None = None,
    device: str | None = None,
    report: Report | None = None,
) -> dict:
    """Train a classifier on the run's prepared tracks; returns the metrics stored with it.

    ``progress(done, total)`` counts batches (and cache-building images first, when the
    frozen-part cache is built); ``report(info)`` receives the epoch, loss and accuracy.
    """
    from whypop import train as T
    from whypop.model import CHECKPOINT_NAME, resolve_device, save_checkpoint

    epochs = cfg.train.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise InputError(f"epochs must be at least 1 (got {epochs})")
    dev = resolve_device(device or cfg.train.device)
    cfg = _resolved(cfg, epochs, device or cfg.train.device)
    data = T.load_data(store)
    trainer = T.Trainer(cfg, data, dev, cache_root=store.root / "cache")  # bad arch / weights fail here
    model_id, partial = store.begin_model(cfg.train.arch, cfg.to_dict(), origin="trained")
    log.info("training model %d: %s on %s, %d genres, %d/%d/%d songs (training/validation/test), %d epochs",
             model_id, cfg.train.arch, dev, len(data.genres), len(data.splits["training"]),
             len(data.splits["validation"]), len(data.splits["test"]), epochs)
    try:
        result = trainer.fit(epochs, resume=resume, progress=progress, report=report)
        metrics = _metrics(cfg, data, result, dev)
        save_checkpoint(partial / CHECKPOINT_NAME, result.model, cfg.train.arch, list(data.genres), data.image_size,
                        extra={"config": cfg.to_dict(), "origin": "trained", "best_epoch": result.best_epoch})
        (partial / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
        store.complete_model(model_id, metrics)
    except BaseException as exc:
        store.fail_model(model_id, _failure(exc, trainer))
        raise
    finally:
        trainer.close()
    trainer.discard_state()
    return metrics


def _failure(exc: BaseException, trainer) -> str:
    state = trainer.state_path
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; run `whypop train --resume` to continue from the last finished epoch" + (
            "" if state is None or not state.is_file() else f" (state in {state.name})")
    return f"{type(exc).__name__}: {exc}"[:500]


def _metrics(cfg: Config, data, result, device) -> dict:
    from whypop.train import N_VIEWS, evaluation_metrics

    tc = cfg.train
    notes = []
    if tc.pretrained == "none":
        notes.append('trained from scratch: no ImageNet weights (train.pretrained = "none")')
        if tc.trainable != "all":
            notes.append(f"warning: train.trainable = \"{tc.trainable}\" from scratch: the frozen layers are random")
    else:
        notes.append(f"fine-tuned from ImageNet weights ({tc.weights_file or 'torch cache'})")
    notes.extend(result.notes)  # what trains; resumed sessions
    if result.used_cache:
        built = f"built in {result.cache_seconds:.1f} s" if result.cache_seconds else "reused from an earlier training"
        notes.append(f"trained on cached frozen-part outputs (float16, {built})")
    elif tc.trainable != "all" and tc.random_augment:
        notes.append("new augmentation bands every epoch (train.random_augment): frozen-part cache not used")
    notes.append(f"best epoch {result.best_epoch} of {len(result.history)} by validation accuracy")
    return {
        **evaluation_metrics(data.genres, result.validation, result.test),
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "history": [
            {"epoch": r.epoch, "loss": r.train_loss, "accuracy": r.train_accuracy,
             "val_loss": r.val_loss, "val_accuracy": r.val_accuracy, "seconds": r.seconds,
             "images_per_second": r.images_per_second}
            for r in result.history
        ],
        "notes": notes,
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
        "cache": {"used": result.used_cache, "build_seconds": result.cache_seconds},
        "device": str(device),
        "songs": {s: len(data.splits[s]) for s in data.splits},
        "images_per_song": N_VIEWS,
        "image_size": data.image_size,
        "arch": tc.arch,
    }


def import_checkpoint(cfg: Config, store: RunStore, path: str | Path) -> dict:
    """Make a user's checkpoint the run's model after evaluating it on validation and test.

    Accepts ``{'state_dict': ..., 'arch': ...[, 'genres': [...]]}`` or a bare state dict
    (the architecture then comes from ``train.arch``). Refuses another architecture or
    another number of genres with a message naming both.
    """
    from whypop import train as T
    from whypop.model import CHECKPOINT_NAME, load_checkpoint_file, resolve_device, save_checkpoint, state_for_arch

    path = Path(path)
    payload = load_checkpoint_file(path)
    if "state_dict" in payload and isinstance(payload["state_dict"], dict):
        state, arch = payload["state_dict"], str(payload.get("arch") or cfg.train.arch)
        file_genres = payload.get("genres")
    else:
        state, arch, file_genres = payload, cfg.train.arch, None
    data = T.load_data(store, splits=("validation", "test"))
    genres = list(data.genres)
    if file_genres is not None and list(file_genres) != genres:
        raise InputError(
            f"checkpoint {path} was trained on genres {list(file_genres)}, the run has {genres} "
            f"(same names in the same order are required)"
        )
    model = state_for_arch(arch, state, len(genres), source=str(path))
    dev = resolve_device(cfg.train.device)
    cfg = cfg.replace(train={"arch": arch})
    trainer = T.Trainer(cfg.replace(train={"pretrained": "none", "trainable": "all"}), _with_empty_training(data), dev)
    trainer.model.load_state_dict(model.state_dict())
    model_id, partial = store.begin_model(arch, cfg.to_dict(), origin="imported")
    try:
        start = time.perf_counter()
        validation, test = trainer.evaluate("validation"), trainer.evaluate("test")
        metrics = {
            **T.evaluation_metrics(genres, validation, test),
            "best_epoch": None,
            "epochs": 0,
            "history": [],
            "notes": [f"imported from {path.name}: not trained here"] + (
                [] if file_genres is not None else
                [f"the checkpoint names no genres: its outputs are taken in the run's order ({', '.join(genres)})"]),
            "train_seconds": 0.0,
            "images_per_second": None,
            "evaluation_seconds": time.perf_counter() - start,
            "device": str(dev),
            "songs": {s: len(data.splits[s]) for s in ("validation", "test")},
            "image_size": data.image_size,
            "arch": arch,
            "source": str(path.resolve()),
        }
        save_checkpoint(partial / CHECKPOINT_NAME, trainer.model, arch, genres, data.image_size,
                        extra={"config": cfg.to_dict(), "origin": "imported", "source": str(path.resolve())})
        (partial / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
        store.complete_model(model_id, metrics)
    except BaseException as exc:
        store.fail_model(model_id, f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        trainer.close()
    return metrics


def _with_empty_training(data):
    """Evaluation-only data: the trainer needs a training split object, not its contents."""
    from whypop.train import SplitData, TrainingData

    splits = dict(data.splits)
    splits.setdefault("training", SplitData("training", (), (), ()))
    return TrainingData(data.genres, data.image_size, splits)


# -- command line ----------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory (prepared)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (or a preset name: demo, fma_small)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs (default: train.epochs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: train.device")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its last finished epoch")
    p.add_argument("--import", dest="import_file", metavar="FILE",
                   help="import a checkpoint ({'state_dict', 'arch'} or a bare state dict with --set train.arch=...) instead of training")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


@contextlib.contextmanager
def epoch_bar() -> Iterator[tuple[Progress, Report]]:
    """A tqdm bar over batches whose postfix shows epoch, loss and accuracy."""
    from tqdm import tqdm

    bars: list = []  # created on first use, so an early error prints no empty bar

    def get() -> "tqdm":
        if not bars:
            bars.append(tqdm(desc="train", unit="batch", file=sys.stderr, dynamic_ncols=True, mininterval=0.5))
        return bars[0]

    def progress(done: int, total: int) -> None:
        bar = get()
        if bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh() if done >= total else bar.update(0)

    def report(info: dict) -> None:
        bar = get()
        if info.get("stage") == "cache":
            bar.set_description_str("train: caching frozen layers")
            return
        bar.set_description_str("train")
        parts = {"epoch": f"{info['epoch']}/{info['epochs']}"}
        if "loss" in info:
            parts.update(loss=f"{info['loss']:.3f}", acc=f"{info['accuracy']:.3f}")
        if "val_accuracy" in info:
            parts["val_acc"] = f"{info['val_accuracy']:.3f}"
        bar.set_postfix(parts, refresh=False)

    try:
        yield progress, report
    finally:
        if bars:
            bars[0].close()


def main(args: argparse.Namespace) -> int:
    import os

    if "torch" not in sys.modules:
        # Idle OpenMP threads sleep instead of spinning: on a shared 2-core CPU, spinning
        # threads collapse training throughput 2-5x as soon as another process competes.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from whypop.cli import load_cli_config

    store = RunStore(args.run)
    cfg = load_cli_config(args, store=store)
    if args.import_file:
        if args.resume or args.epochs is not None:
            raise ConfigError("--import evaluates a finished checkpoint: --resume and --epochs do not apply")
        if args.device:
            cfg = cfg.replace(train={"device": args.device})
        metrics = import_checkpoint(cfg, store, args.import_file)
    else:
        try:
            with epoch_bar() as (progress, report):
                metrics = run(cfg, store, progress, resume=args.resume, epochs=args.epochs, device=args.device,
                              report=report)
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
