"""Training the genre classifier: the trainer with resume, and the evaluation metrics.

Shape (after torchvision's reference scripts): :func:`~whypop.training.data.load_data`
reads the run's splits, :func:`~whypop.training.parts.split_model` separates the frozen
part from the trainable rest, :class:`Trainer` holds the model and optimizer and runs
:meth:`Trainer.train_one_epoch` / :meth:`Trainer.evaluate` under :meth:`Trainer.fit`,
on images or on the frozen-part cache (:mod:`whypop.training.frozen_cache`). The
training stage wires this to the run store (see docs/architecture.md).

- **Resume**: after every finished epoch the full training state (weights, optimizer,
  best epoch so far, history) is written atomically to ``<run>/cache/train-state-<key>.pt``;
  ``resume=True`` continues from it when the configuration and data match.
- **Device**: CUDA when present (with float16 autocast and a gradient scaler), CPU
  otherwise.

The data, split and cache names are importable from here too (``whypop.train.load_data``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from whypop.augment import N_VIEWS
from whypop.config import Config
from whypop.errors import ConfigError, InputError
from whypop.model import build_model
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.training.data import (
    EVAL_BATCH, SPLITS, CollateViews, Originals, SongBatches, SongViews, SplitData, TrainingData, collate_originals,
    epoch_order, load_data, make_loader, read_spectrogram, view_order,
)
from whypop.training.frozen_cache import (
    CACHE_STEP, CachedBatches, CachedOriginals, FrozenCache, cache_key, prune_caches,
)
from whypop.training.parts import ModelParts, autocast, split_model

__all__ = [
    "BATCH_STEP", "CACHE_STEP", "EVAL_BATCH", "N_VIEWS", "SPLITS", "CachedBatches", "CachedOriginals", "CollateViews",
    "EpochRecord", "Evaluation", "FitResult", "FrozenCache", "ModelParts", "Originals", "Report", "SongBatches",
    "SongViews", "SplitData", "Trainer", "TrainingData", "cache_key", "collate_originals", "epoch_order",
    "evaluation_metrics", "load_data", "make_loader", "prune_caches", "read_spectrogram", "split_model", "view_order",
]

log = logging.getLogger(__name__)

STATE_FORMAT = 1
BATCH_STEP = "batches"  # the progress step of the training batches

Report = Callable[[dict], None]


@dataclass
class Evaluation:
    """Loss, accuracy and confusion matrix (rows = true genre, columns = predicted)."""

    loss: float
    accuracy: float
    confusion: np.ndarray

    def per_genre(self, genres: Sequence[str]) -> dict[str, dict[str, float | None]]:
        out = {}
        for k, g in enumerate(genres):
            predicted, actual = self.confusion[:, k].sum(), self.confusion[k].sum()
            out[g] = {
                "precision": float(self.confusion[k, k] / predicted) if predicted else None,
                "recall": float(self.confusion[k, k] / actual) if actual else None,
            }
        return out


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float  # wall time of the epoch, training and validation
    images_per_second: float  # training images through the training step


@dataclass
class FitResult:
    """The trained model (best epoch's weights loaded) and what happened."""

    model: nn.Module
    history: list[EpochRecord]
    best_epoch: int
    validation: Evaluation
    test: Evaluation
    train_seconds: float  # training steps incl. data waiting, summed over all sessions
    images_per_second: float
    cache_seconds: float
    used_cache: bool
    resumed_from: int  # epochs already done when this session started
    notes: list[str] = field(default_factory=list)


class Trainer:
    """Model, split, optimizer and data for one training configuration.

    ``Trainer(cfg, data, device).fit(epochs)``; ``cache_root`` enables the frozen-part
    cache and the resumable state file (both live in the run's ``cache/`` directory).
    """

    def __init__(self, cfg: Config, data: TrainingData, device: torch.device, cache_root: Path | None = None):
        self.cfg, self.tc, self.data, self.device = cfg, cfg.train, data, device
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.amp = device.type == "cuda"
        torch.manual_seed(self.tc.seed)
        self.model = build_model(self.tc.arch, len(data.genres), self.tc.pretrained, self.tc.weights_file).to(device)
        self._check_input_size()
        self.parts = split_model(self.model, self.tc.arch, self.tc.trainable)
        params = self.parts.trainable_parameters()
        if self.tc.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=self.tc.lr, weight_decay=self.tc.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=self.tc.lr, momentum=0.9, weight_decay=self.tc.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.tc.label_smoothing)
        self.use_cache = bool(self.tc.cache and self.parts.frozen is not None and not self.tc.random_augment
                              and self.cache_root is not None)
        self.sampler = SongBatches(len(data.splits["training"]), self.tc.songs_per_batch, self.tc.seed)
        self.cache: FrozenCache | None = None
        self._loaders: dict[str, Iterable] = {}

    def _check_input_size(self) -> None:
        """Fail early, naming the model and size, when the architecture cannot take the images."""
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}  # training mode updates BN statistics
        probe = torch.randn(2, 3, self.data.image_size, self.data.image_size, device=self.device)
        try:
            with torch.no_grad():
                self.model.train()(probe.contiguous(memory_format=torch.channels_last))
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise ConfigError(
                f"train.arch={self.tc.arch!r} cannot take {self.data.image_size}x{self.data.image_size} "
                f"spectrograms ({str(exc).splitlines()[0][:160]}); choose another architecture or audio.image_size"
            ) from None
        finally:
            with torch.no_grad():
                for k, v in self.model.named_buffers():
                    v.copy_(buffers[k])

    # -- bookkeeping ----------------------------------------------------------------
    def state_key(self) -> str:
        """What a resumable state must match: the training settings and the data."""
        tc = asdict(self.tc)
        for k in ("epochs", "device", "num_workers", "cache"):
            tc.pop(k)
        blob = json.dumps({"format": STATE_FORMAT, "train": tc, "augment": asdict(self.cfg.augment),
                           "data": self.data.fingerprint()}, sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()

    @property
    def state_path(self) -> Path | None:
        return None if self.cache_root is None else self.cache_root / f"train-state-{self.state_key()}.pt"

    def _save_state(self, epochs_done: int, history: list[EpochRecord], best: dict, train_seconds: float) -> None:
        path = self.state_path
        if path is None:
            return
        best_is_current = best["epoch"] == epochs_done
        payload = {
            "format": STATE_FORMAT, "key": self.state_key(), "epochs_done": epochs_done,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": {k: v for k, v in best.items() if k != "state" or not best_is_current},
            "best_is_current": best_is_current,
            "history": [asdict(r) for r in history], "train_seconds": train_seconds,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def _load_state(self) -> dict | None:
        path = self.state_path
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a torn or foreign file: start over rather than fail
            log.warning("ignoring unreadable training state %s (%s)", path, exc)
            return None
        if state.get("format") != STATE_FORMAT or state.get("key") != self.state_key():
            return None
        return state

    def discard_state(self) -> None:
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)

    # -- data ---------------------------------------------------------------------
    def _train_batches(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if "training" not in self._loaders:
            split = self.data.splits["training"]
            if self.cache is not None:
                self._loaders["training"] = CachedBatches(self.cache, split, self.sampler, self.tc.seed)
            else:
                ds = SongViews(split, self.data.image_size, self.cfg.augment, self.tc.random_augment)
                self._loaders["training"] = make_loader(ds, self.tc.num_workers, self.device, batch_sampler=self.sampler,
                                                        collate_fn=CollateViews(self.tc.seed))
        return self._loaders["training"]

    def _eval_batches(self, split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if split not in self._loaders:
            s = self.data.splits[split]
            if self.cache is not None:
                self._loaders[split] = CachedOriginals(self.cache, s)
            else:
                self._loaders[split] = make_loader(Originals(s, self.data.image_size), self.tc.num_workers, self.device,
                                                   batch_size=EVAL_BATCH, collate_fn=collate_originals)
        return self._loaders[split]

    def prepare_cache(self, progress: Progress = null_progress) -> float:
        """Build (or reuse) the frozen-part cache when it applies; seconds spent building."""
        if not self.use_cache:
            return 0.0
        assert self.cache_root is not None
        key = cache_key(self.parts, self.data, self.cfg.augment, self.tc.arch)
        self.cache = FrozenCache.at(self.cache_root, key)
        seconds = self.cache.build(self.parts, self.data, self.cfg.augment, self.device, self.tc.num_workers,
                                   self.amp, progress)
        prune_caches(self.cache_root, [self.cache.directory])
        self._loaders.clear()
        return seconds

    # -- one epoch, evaluation ------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts.rest(x) if self.cache is not None else self.parts.logits(x)

    def set_lr(self, epoch: int, batch: int, epochs: int) -> float:
        """The learning rate of 1-based (epoch, batch): constant, or cosine decay over all batches."""
        lr = self.tc.lr
        if self.tc.lr_schedule == "cosine":
            per_epoch = len(self.sampler)
            t = ((epoch - 1) * per_epoch + (batch - 1)) / max(1, epochs * per_epoch)
            lr = self.tc.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """One optimisation step on a batch (images, or cached frozen outputs); (loss, correct)."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            logits = self._forward(x)
            loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach()), int((logits.detach().argmax(1) == y).sum())

    def train_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches, with the model in training mode (frozen part in eval mode)."""
        self.parts.train_mode()
        self.sampler.set_epoch(epoch)
        return self._train_batches()

    def train_one_epoch(self, epoch: int, on_batch: Callable[[int, float, float], None] | None = None,
                        epochs: int | None = None) -> tuple[float, float, int, float]:
        """One pass over the training songs; (mean loss, accuracy, images, seconds)."""
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        for b, (x, y) in enumerate(self.train_batches(epoch), 1):
            self.set_lr(epoch, b, epochs or self.tc.epochs)
            loss, right = self.step(x, y)
            loss_sum += loss * len(y)
            correct += right
            seen += len(y)
            if on_batch:
                on_batch(b, loss_sum / seen, correct / seen)
        return loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start

    @torch.no_grad()
    def evaluate(self, split: str) -> Evaluation:
        """Loss, accuracy and confusion on the unaugmented spectrograms of a split."""
        self.model.eval()
        k = len(self.data.genres)
        confusion = np.zeros((k, k), dtype=np.int64)
        loss_sum, seen = 0.0, 0
        for x, y in self._eval_batches(split):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                logits = self.parts.rest(x) if self.cache is not None else self.model(x)
            loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            pred = logits.argmax(1).cpu().numpy()
            np.add.at(confusion, (y.cpu().numpy(), pred), 1)
            seen += len(y)
        return Evaluation(loss_sum / max(seen, 1), float(np.trace(confusion) / max(seen, 1)), confusion)

    # -- the whole run -----------------------------------------------------------------
    def fit(self, epochs: int | None = None, *, resume: bool = False, progress: Progress = null_progress,
            report: Report | None = None) -> FitResult:
        """Train ``epochs`` (default train.epochs), keep the best epoch by validation accuracy."""
        epochs = int(epochs or self.tc.epochs)
        history: list[EpochRecord] = []
        best: dict = {"epoch": 0, "val_accuracy": -1.0, "val_loss": math.inf, "state": None}
        train_seconds, trained_images, start_epoch = 0.0, 0, 0
        notes: list[str] = [self.parts.description]
        if not resume and self.state_path is not None and self.state_path.is_file():
            log.warning("an interrupted training of this configuration exists; starting over "
                        "(use --resume to continue it from its last finished epoch)")
        if resume:
            state = self._load_state()
            if state is None:
                log.warning("no interrupted training matches this configuration and data: starting at epoch 1")
                notes.append("--resume found no matching interrupted training: trained from epoch 1")
            else:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.scaler.load_state_dict(state["scaler"])
                history = [EpochRecord(**r) for r in state["history"]]
                best = dict(state["best"])
                if state["best_is_current"]:
                    best["state"] = copy.deepcopy(self.model.state_dict())
                start_epoch = int(state["epochs_done"])
                train_seconds = float(state["train_seconds"])
                log.info("resuming after epoch %d of %d", start_epoch, epochs)
                notes.append(f"resumed after epoch {start_epoch} (an earlier session was interrupted)")
        if report:
            report({"epoch": start_epoch, "epochs": epochs})
        cache_seconds = self.prepare_cache(progress)
        batches_per_epoch = len(self.sampler)
        total = epochs * batches_per_epoch
        trained_images = len(self.data.splits["training"]) * N_VIEWS * start_epoch
        for epoch in range(start_epoch + 1, epochs + 1):
            epoch_start = time.perf_counter()
            done_before = (epoch - 1) * batches_per_epoch

            def on_batch(b: int, loss: float, acc: float, _epoch: int = epoch) -> None:
                progress(ProgressEvent("train", BATCH_STEP, done_before + b, total))
                if report:
                    report({"epoch": _epoch, "epochs": epochs, "loss": loss, "accuracy": acc})

            loss, acc, n, seconds = self.train_one_epoch(epoch, on_batch, epochs)
            train_seconds += seconds
            trained_images += n
            val = self.evaluate("validation")
            record = EpochRecord(epoch, loss, acc, val.loss, val.accuracy, time.perf_counter() - epoch_start, n / seconds)
            history.append(record)
            if (val.accuracy, -val.loss) > (best["val_accuracy"], -best["val_loss"]):
                best = {"epoch": epoch, "val_accuracy": val.accuracy, "val_loss": val.loss,
                        "state": copy.deepcopy(self.model.state_dict())}
            log.info("epoch %d/%d: loss %.4f, accuracy %.3f; validation loss %.4f, accuracy %.3f (%.1f s)",
                     epoch, epochs, loss, acc, val.loss, val.accuracy, record.seconds)
            if report:
                report({"epoch": epoch, "epochs": epochs, "loss": loss, "accuracy": acc,
                        "val_accuracy": val.accuracy})
            self._save_state(epoch, history, best, train_seconds)
        if best["state"] is None:  # no epoch ran in this session nor before (epochs done already)
            raise InputError("nothing was trained: the resumed state has no finished epoch")
        self.model.load_state_dict(best["state"])
        validation, test = self.evaluate("validation"), self.evaluate("test")
        self.close()
        return FitResult(
            self.model, history, int(best["epoch"]), validation, test, train_seconds,
            trained_images / train_seconds if train_seconds else 0.0, cache_seconds, self.cache is not None,
            start_epoch, notes,
        )

    def close(self) -> None:
        """Stop the loaders' worker processes."""
        self._loaders.clear()


def evaluation_metrics(genres: Sequence[str], validation: Evaluation, test: Evaluation) -> dict:
    """The metrics keys shared by trained and imported models (per genre and confusion on test)."""
    return {
        "accuracy": {"validation": validation.accuracy, "test": test.accuracy},
        "loss": {"validation": validation.loss, "test": test.loss},
        "per_genre": test.per_genre(genres),
        "confusion": {"labels": list(genres), "matrix": test.confusion.tolist(), "split": "test",
                      "rows": "true genre", "columns": "predicted genre"},
        "validation_confusion": {"labels": list(genres), "matrix": validation.confusion.tolist()},
    }
