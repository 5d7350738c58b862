"""The frozen-part cache: the frozen part's outputs, computed once per data and weights.

When only a tail trains and the views are fixed (``random_augment = false``), the frozen
part's outputs for every training view and every validation/test original are computed
once and stored as float16 under ``<run>/cache/frozen-<key>/``. The key hashes the
frozen weights, the spectrogram files, the augmentation parameters and the split point,
so a cache never goes stale. Building it resumes after an interruption. Training on it
gives the same result as without it up to float16 rounding of the cached activations.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from whypop.augment import N_VIEWS
from whypop.config import AugmentConfig
from whypop.model import preprocess
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.training.data import (
    EVAL_BATCH, SPLITS, CollateViews, Originals, SongBatches, SongViews, SplitData, TrainingData, collate_originals,
    make_loader, view_order,
)
from whypop.training.parts import ModelParts, autocast

CACHE_FORMAT = 1
CACHE_STEP = "caching frozen layers"  # the progress step of building it


def _file_digest(path: str) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=16).digest()


def cache_key(parts: ModelParts, data: TrainingData, augment_cfg: AugmentConfig, arch: str) -> str:
    """Hash of what the cached outputs depend on: frozen weights, inputs, augmentation."""
    assert parts.frozen is not None
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({"format": CACHE_FORMAT, "arch": arch, "split": parts.trainable,
                         "image_size": data.image_size, "augment": asdict(augment_cfg)}, sort_keys=True).encode())
    for name, tensor in parts.frozen.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for split in SPLITS:
        for tid, path in zip(data.splits[split].track_ids, data.splits[split].paths):
            h.update(f"{split}/{tid}".encode())
            h.update(_file_digest(path))
    return h.hexdigest()


class FrozenCache:
    """float16 frozen-part outputs: training rows ``4 * song + view``, validation/test rows ``song``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.meta_path = self.directory / "meta.json"

    @classmethod
    def at(cls, cache_root: Path, key: str) -> "FrozenCache":
        return cls(Path(cache_root) / f"frozen-{key[:32]}")

    def _meta(self) -> dict:
        try:
            return json.loads(self.meta_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_meta(self, meta: dict) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_path)

    @property
    def complete(self) -> bool:
        return bool(self._meta().get("complete"))

    def rows(self, split: str) -> np.memmap:
        meta = self._meta()
        return np.memmap(self.directory / f"{split}.f16", dtype=np.float16, mode="r", shape=tuple(meta["shape"][split]))

    def build(self, parts: ModelParts, data: TrainingData, augment_cfg: AugmentConfig, device: torch.device,
              workers: int, amp: bool, progress: Progress = null_progress) -> float:
        """Compute what is missing (resuming a partial build); returns the seconds spent."""
        assert parts.frozen is not None
        if self.complete:
            return 0.0
        start = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self._meta() or {"format": CACHE_FORMAT, "done": {}, "shape": {}, "complete": False}
        parts.frozen.eval()
        with torch.no_grad(), autocast(device, amp):
            probe = parts.frozen(preprocess(np.zeros((1, data.image_size, data.image_size), np.uint8), device))
        feature_shape = list(probe.shape[1:])
        counts = {"training": len(data.splits["training"]) * N_VIEWS,
                  "validation": len(data.splits["validation"]), "test": len(data.splits["test"])}
        total, done_all = sum(counts.values()), sum(meta["done"].get(s, 0) for s in SPLITS)
        progress(ProgressEvent("train", CACHE_STEP, done_all, total))
        for split in SPLITS:
            shape = [counts[split], *feature_shape]
            done = int(meta["done"].get(split, 0))
            path = self.directory / f"{split}.f16"
            if meta["shape"].get(split) != shape or not path.is_file():
                done = 0
                meta["shape"][split] = shape
                meta["done"][split] = 0
                self._write_meta(meta)
                array = np.memmap(path, dtype=np.float16, mode="w+", shape=tuple(shape))
            else:
                array = np.memmap(path, dtype=np.float16, mode="r+", shape=tuple(shape))
            if done >= counts[split]:
                continue
            loader = self._source(split, data, augment_cfg, done, workers, device)
            row = done
            for x in loader:
                with torch.no_grad(), autocast(device, amp):
                    h = parts.frozen(x.to(device, non_blocking=True))
                array[row : row + len(h)] = h.float().cpu().contiguous().numpy().astype(np.float16)
                row += len(h)
                array.flush()
                meta["done"][split] = row
                self._write_meta(meta)
                done_all += len(h)
                progress(ProgressEvent("train", CACHE_STEP, done_all, total))
            del array
        meta["complete"] = True
        self._write_meta(meta)
        os.utime(self.directory)
        return time.perf_counter() - start

    @staticmethod
    def _source(split: str, data: TrainingData, augment_cfg: AugmentConfig, start_row: int,
                workers: int, device: torch.device) -> Iterable[torch.Tensor]:
        s = data.splits[split]
        if split == "training":
            first_song = start_row // N_VIEWS
            ds = SongViews(s, data.image_size, augment_cfg, random_augment=False)
            keys = [(i, 0) for i in range(first_song, len(s))]
            per_batch = max(1, EVAL_BATCH // N_VIEWS)
            batches = [keys[k : k + per_batch] for k in range(0, len(keys), per_batch)]
            loader = make_loader(ds, workers, device, batch_sampler=batches, collate_fn=CollateViews(0, shuffle=False))
            skip = start_row - first_song * N_VIEWS
            for x, _ in loader:
                yield x[skip:]
                skip = 0
        else:
            ds = torch.utils.data.Subset(Originals(s, data.image_size), range(start_row, len(s)))
            for x, _ in make_loader(ds, workers, device, batch_size=EVAL_BATCH, collate_fn=collate_originals):
                yield x


def prune_caches(cache_root: Path, keep: Sequence[Path], max_kept: int = 2) -> None:
    """Remove old frozen-part caches, keeping ``keep`` and the most recently used ones."""
    dirs = sorted(Path(cache_root).glob("frozen-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    kept = {Path(k).resolve() for k in keep}
    for d in dirs:
        if d.resolve() in kept:
            continue
        if len(kept) < max_kept:
            kept.add(d.resolve())
            continue
        shutil.rmtree(d, ignore_errors=True)


class CachedBatches:
    """Training batches read from the cache, in exactly the order and shuffle of the image path."""

    def __init__(self, cache: FrozenCache, split: SplitData, sampler: SongBatches, seed: int):
        self.rows = cache.rows("training")
        self.labels = np.asarray(split.labels)
        self.sampler, self.seed = sampler, seed

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.sampler:
            songs = [i for i, _ in batch]
            epoch = batch[0][1]
            rows = (np.repeat(songs, N_VIEWS) * N_VIEWS + np.tile(np.arange(N_VIEWS), len(songs)))
            perm = view_order(self.seed, epoch, songs)
            rows = rows[perm]
            labels = self.labels[rows // N_VIEWS]
            h = torch.from_numpy(np.asarray(self.rows[rows], dtype=np.float32))
            yield h.contiguous(memory_format=torch.channels_last), torch.as_tensor(labels, dtype=torch.long)


class CachedOriginals:
    """Validation/test batches of cached frozen-part outputs."""

    def __init__(self, cache: FrozenCache, split: SplitData):
        self.rows, self.labels = cache.rows(split.name), np.asarray(split.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), EVAL_BATCH * 2):
            h = torch.from_numpy(np.asarray(self.rows[start : start + EVAL_BATCH * 2], dtype=np.float32))
            yield (h.contiguous(memory_format=torch.channels_last),
                   torch.as_tensor(self.labels[start : start + EVAL_BATCH * 2], dtype=torch.long))
