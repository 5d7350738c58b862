"""`whypop train`: train the genre classifier on a run's spectrograms, or import one.

The model becomes the run's current model only when it is complete: weights and
metrics are written into the model's partial directory and moved into place in one
step (:meth:`RunStore.complete_model`). A failed or interrupted training marks its row
failed and leaves the previous model current; ``--resume`` continues an interrupted
training from its last finished epoch (see :mod:`whypop.train`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from whypop import train as T
from whypop.config import Config
from whypop.errors import InputError
from whypop.model import CHECKPOINT_NAME, load_checkpoint_file, resolve_device, save_checkpoint, state_for_arch
from whypop.progress import Progress, null_progress
from whypop.store import RunStore
from whypop.train import N_VIEWS, Report, SplitData, TrainingData, evaluation_metrics

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"


def _resolved(cfg: Config, epochs: int, device: str) -> Config:
    return cfg.replace(train={"epochs": epochs, "device": device})


def run(
    cfg: Config,
    store: RunStore,
    progress: Progress = null_progress,
    *,
    resume: bool = False,
    epochs: int | None = None,
    device: str | None = None,
    report: Report | None = None,
) -> dict:
    """Train a classifier on the run's prepared tracks; returns the metrics stored with it.

    ``progress`` receives the events of the frozen-part cache (when it is built) and of
    the batches; ``report(info)`` receives the epoch, loss and accuracy.
    """
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
            **evaluation_metrics(genres, validation, test),
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
    splits = dict(data.splits)
    splits.setdefault("training", SplitData("training", (), (), ()))
    return TrainingData(data.genres, data.image_size, splits)
