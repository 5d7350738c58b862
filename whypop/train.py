"""Training the genre classifier: data pipeline, trainable split, frozen-part cache, loop.

Shape (after torchvision's reference scripts): :func:`load_data` reads the run's splits,
:func:`split_model` separates the frozen part from the trainable rest, :class:`Trainer`
holds the model and optimizer and runs :meth:`Trainer.train_one_epoch` /
:meth:`Trainer.evaluate` under :meth:`Trainer.fit`. ``pipelines/train.py`` wires this to
the run store and the command line.

Decisions worth knowing:

- **Batches** are ``songs_per_batch`` songs x their 4 views (original, frequency band,
  time band, both; see :mod:`whypop.augment`), shuffled within the batch. The song order
  of an epoch and the view order of a batch come from generators seeded by
  ``(train.seed, epoch, ...)``, so a run is reproducible and a resumed run sees exactly
  the batches an uninterrupted one would have.
- **Trainable parts** (ResNets): ``tail`` = layer4's last block (its convolutions *and*
  their BatchNorms, whose statistics must follow the convolutions they normalise) + fc;
  ``layer4`` = all of layer4 + fc; ``all`` = everything. The frozen part runs in eval
  mode (its BatchNorms use their running statistics and are never updated) and without
  gradients, which is what makes its outputs cacheable.
- **Frozen-part cache**: when only a tail trains and the views are fixed
  (``random_augment = false``), the frozen part's outputs for every training view and
  every validation/test original are computed once and stored as float16 under
  ``<run>/cache/frozen-<key>/``. The key hashes the frozen weights, the spectrogram files,
  the augmentation parameters and the split point, so a cache never goes stale. Building
  it resumes after an interruption. Training on it gives the same result as without it
  up to float16 rounding of the cached activations.
- **Input pipeline**: PNG decoding, augmentation and preprocessing run in DataLoader
  worker processes (``train.num_workers``), overlapped with the training step.
- **Resume**: after every finished epoch the full training state (weights, optimizer,
  best epoch so far, history) is written atomically to ``<run>/cache/train-state-<key>.pt``;
  ``resume=True`` continues from it when the configuration and data match.
- **Device**: CUDA when present (with float16 autocast and a gradient scaler), CPU
  otherwise (never bf16 on the CPU: without native support it is 30x slower).
"""

from __future__ import annotations

import copy
import itertools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from whypop.augment import N_VIEWS, augment
from whypop.config import AugmentConfig, Config
from whypop.errors import ConfigError, InputError
from whypop.model import build_model, preprocess

log = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
CACHE_FORMAT = 1
STATE_FORMAT = 1
EVAL_BATCH = 32  # images per evaluation / cache-building batch

Progress = Callable[[int, int], None]
Report = Callable[[dict], None]


# -- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitData:
    """The prepared tracks of one split: ids, spectrogram paths and label indices."""

    name: str
    track_ids: tuple[str, ...]
    paths: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.track_ids)


@dataclass(frozen=True)
class TrainingData:
    """What a classifier is trained and evaluated on: genres (class order) and splits."""

    genres: tuple[str, ...]
    image_size: int  # pixels, square
    splits: dict[str, SplitData]

    def fingerprint(self) -> str:
        """A hash of genres and split membership (not of file contents)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self.genres, self.image_size]).encode())
        for name in SPLITS:
            s = self.splits[name]
            h.update(json.dumps([name, s.track_ids, s.labels]).encode())
        return h.hexdigest()


def load_data(store, splits: Sequence[str] = SPLITS) -> TrainingData:
    """The run's prepared tracks by split, labels = index in ``store.genres()``.

    Refuses, naming the problem: fewer than two genres, an empty split, a genre without
    training tracks, spectrograms that are not square or not all of one size.
    """
    genres = tuple(store.genres())
    if len(genres) < 2:
        raise InputError(
            f"training needs at least 2 genres with prepared tracks; run {store.root} has "
            f"{len(genres)} ({', '.join(genres) or 'none'}); see `whypop status`"
        )
    index = {g: i for i, g in enumerate(genres)}
    out: dict[str, SplitData] = {}
    for name in splits:
        tracks = [t for t in store.tracks(status="ok", split=name) if t.spectrogram]
        if not tracks:
            raise InputError(
                f"the {name} split of run {store.root} is empty (no prepared tracks): training needs "
                f"training, validation and test tracks; for folder collections adjust dataset.split"
            )
        out[name] = SplitData(
            name,
            tuple(t.track_id for t in tracks),
            tuple(str(store.path(t.spectrogram)) for t in tracks),
            tuple(index[t.genre] for t in tracks),
        )
    if "training" in out:
        present = set(out["training"].labels)
        missing = [g for g in genres if index[g] not in present]
        if missing:
            raise InputError(
                f"genre(s) with no training tracks: {', '.join(missing)}; the classifier cannot learn "
                f"them (add training tracks or remove the genre from the collection)"
            )
    first = next(iter(out.values()))
    image = read_spectrogram(first.paths[0])
    if image.shape[0] != image.shape[1]:
        raise InputError(f"spectrogram {first.paths[0]} is {image.shape[1]}x{image.shape[0]}: expected a square image")
    return TrainingData(genres, int(image.shape[0]), out)


def read_spectrogram(path: str, size: int | None = None) -> np.ndarray:
    """A spectrogram PNG as uint8 (H, W); with ``size``, checks it is size x size pixels."""
    from PIL import Image

    with Image.open(path) as im:
        image = np.asarray(im.convert("L"))
    if size is not None and image.shape != (size, size):
        raise InputError(
            f"spectrogram {path} is {image.shape[1]}x{image.shape[0]} pixels, expected {size}x{size} "
            f"(the run mixes image sizes: prepare it again)"
        )
    return image


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The song order of one epoch (a seeded permutation)."""
    return np.random.default_rng([seed, epoch, 0x50_4E_47]).permutation(n)


def view_order(seed: int, epoch: int, songs: Sequence[int]) -> np.ndarray:
    """The shuffle of one batch's len(songs) x 4 views, seeded by the batch itself."""
    return np.random.default_rng([seed, epoch, 0x56_49_45_57, *map(int, songs)]).permutation(len(songs) * N_VIEWS)


class SongBatches(Sampler):
    """Batches of ``songs_per_batch`` song indices, yielded as ``[(song, epoch), ...]``.

    The epoch travels with each index so persistent DataLoader workers know which
    augmentation epoch to draw without being told separately.
    """

    def __init__(self, n_songs: int, songs_per_batch: int, seed: int):
        self.n_songs, self.songs_per_batch, self.seed = n_songs, songs_per_batch, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.n_songs, self.seed, self.epoch)
        for start in range(0, self.n_songs, self.songs_per_batch):
            yield [(int(i), self.epoch) for i in order[start : start + self.songs_per_batch]]

    def __len__(self) -> int:
        return math.ceil(self.n_songs / self.songs_per_batch)


class SongViews(Dataset):
    """``(song, epoch)`` -> the song's 4 views (4, H, W) uint8, its label, song, epoch."""

    def __init__(self, split: SplitData, image_size: int, augment_cfg: AugmentConfig, random_augment: bool):
        self.split, self.image_size = split, image_size
        self.augment_cfg, self.random_augment = augment_cfg, random_augment

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int, int, int]:
        i, epoch = key
        image = read_spectrogram(self.split.paths[i], self.image_size)
        views = augment(image, self.split.track_ids[i], self.augment_cfg, epoch if self.random_augment else 0)
        return views, self.split.labels[i], i, epoch


class Originals(Dataset):
    """Song index -> its unaugmented spectrogram (H, W) uint8 and label."""

    def __init__(self, split: SplitData, image_size: int):
        self.split, self.image_size = split, image_size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return read_spectrogram(self.split.paths[i], self.image_size), self.split.labels[i]


class CollateViews:
    """Songs' views -> one shuffled, preprocessed batch (runs in the DataLoader workers)."""

    def __init__(self, seed: int, shuffle: bool = True):
        self.seed, self.shuffle = seed, shuffle

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        views = np.concatenate([v for v, *_ in items])  # (S*4, H, W)
        labels = np.repeat([label for _, label, *_ in items], N_VIEWS)
        if self.shuffle:
            perm = view_order(self.seed, items[0][3], [i for _, _, i, _ in items])
            views, labels = views[perm], labels[perm]
        return preprocess(views), torch.as_tensor(labels, dtype=torch.long)


def collate_originals(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([im for im, _ in items])
    return preprocess(images), torch.as_tensor([label for _, label in items], dtype=torch.long)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the cores belong to the training step


def make_loader(dataset: Dataset, workers: int, device: torch.device, *, batch_sampler=None,
                batch_size: int | None = None, collate_fn=None) -> Iterable:
    """A DataLoader whose workers decode, augment and preprocess ahead of the model.

    With workers, a worker that dies (out-of-memory kill, segfault) does not stop
    training: see :class:`RecoveringLoader`.
    """
    if batch_sampler is None:
        batch_sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(dataset), batch_size, drop_last=False)
    if workers > 0:
        return RecoveringLoader(dataset, batch_sampler, workers, device, collate_fn)
    return _data_loader(dataset, batch_sampler, 0, device, collate_fn)


def _data_loader(dataset: Dataset, batch_sampler, workers: int, device: torch.device, collate_fn) -> DataLoader:
    kwargs: dict = dict(num_workers=workers, collate_fn=collate_fn, pin_memory=device.type == "cuda")
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init)
    return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)


class _SkipBatches:
    """The batches of ``sampler`` after the first ``skip`` (the same order: samplers are seeded per epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


class RecoveringLoader:
    """A DataLoader with workers that survives a worker's death.

    torch stops the iteration with "DataLoader worker ... exited unexpectedly" when one
    dies; here new workers start and the pass goes on from the batch that was lost. If
    the same batch kills its worker again, the rest of the pass loads in this process.
    """

    def __init__(self, dataset: Dataset, batch_sampler, workers: int, device: torch.device, collate_fn):
        self._args = (dataset, batch_sampler, workers, device, collate_fn)
        self.loader = _data_loader(*self._args)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        dataset, batch_sampler, workers, device, collate_fn = self._args
        loader, done, lost_at = self.loader, 0, None
        while True:
            try:
                for batch in loader:
                    done += 1
                    yield batch
                return
            except RuntimeError as exc:
                if "DataLoader worker" not in str(exc) or not workers:
                    raise
                again = lost_at == done
                lost_at = done
                log.warning("%s; %s from batch %d", str(exc).splitlines()[0],
                            "loading in this process" if again else "starting new workers", done + 1)
                self.loader = _data_loader(*self._args)  # for later passes
                loader = _data_loader(dataset, _SkipBatches(batch_sampler, done), 0 if again else workers, device, collate_fn)


# -- the trainable split ---------------------------------------------------------------


class _ResNetRest(nn.Module):
    """The trainable end of a ResNet: some layer4 blocks, global pooling, fc."""

    def __init__(self, blocks: Sequence[nn.Module], avgpool: nn.Module, fc: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = avgpool
        self.fc = fc

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.blocks(h)), 1))


@dataclass
class ModelParts:
    """A model seen as frozen part -> trainable rest (both share the model's modules)."""

    model: nn.Module
    frozen: nn.Module | None  # None when everything trains
    rest: nn.Module  # frozen output (or the image) -> logits
    trainable: str  # the setting this split implements
    description: str  # which parameters train, for the notes

    def train_mode(self) -> None:
        self.model.train()
        if self.frozen is not None:
            self.frozen.eval()  # frozen BatchNorm: running statistics, never updated

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> logits, the frozen part without gradients."""
        if self.frozen is None:
            out = self.model(x)
            return out if isinstance(out, torch.Tensor) else out.logits  # GoogLeNet/Inception aux outputs
        with torch.no_grad():
            h = self.frozen(x)
        return self.rest(h)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def split_model(model: nn.Module, arch: str, trainable: str) -> ModelParts:
    """Freeze all but the chosen part; ``tail``/``layer4`` need a ResNet-style model."""
    if trainable == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return ModelParts(model, None, model, "all", "all layers trainable")
    layer4 = getattr(model, "layer4", None)
    if not (isinstance(layer4, nn.Sequential) and isinstance(getattr(model, "fc", None), nn.Linear)):
        raise ConfigError(
            f"train.trainable={trainable!r} needs a ResNet-style model (layer4 + fc); {arch} has none: "
            f"use train.trainable = \"all\" or a resnet/resnext/wide_resnet architecture"
        )
    stem = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3]
    last = len(layer4) - 1
    if trainable == "tail":
        frozen = nn.Sequential(*stem, *list(layer4)[:last])
        rest = _ResNetRest([layer4[last]], model.avgpool, model.fc)
        convs = [n for n, m in layer4[last].named_children() if isinstance(m, nn.Conv2d)]
        description = (f"trainable: layer4.{last} ({', '.join(convs)} and their BatchNorms) + fc; "
                       f"everything before is frozen (BatchNorm in eval mode)")
    elif trainable == "layer4":
        frozen = nn.Sequential(*stem)
        rest = _ResNetRest(list(layer4), model.avgpool, model.fc)
        description = "trainable: layer4 + fc; everything before is frozen (BatchNorm in eval mode)"
    else:
        raise ConfigError(f"train.trainable={trainable!r}: allowed are 'tail', 'layer4', 'all'")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in rest.parameters():
        p.requires_grad_(True)
    return ModelParts(model, frozen, rest, trainable, description)


# -- the frozen-part cache ---------------------------------------------------------------


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
              workers: int, amp: bool, progress: Progress | None = None) -> float:
        """Compute what is missing (resuming a partial build); returns the seconds spent."""
        assert parts.frozen is not None
        if self.complete:
            return 0.0
        start = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self._meta() or {"format": CACHE_FORMAT, "done": {}, "shape": {}, "complete": False}
        parts.frozen.eval()
        with torch.no_grad(), _autocast(device, amp):
            probe = parts.frozen(preprocess(np.zeros((1, data.image_size, data.image_size), np.uint8), device))
        feature_shape = list(probe.shape[1:])
        counts = {"training": len(data.splits["training"]) * N_VIEWS,
                  "validation": len(data.splits["validation"]), "test": len(data.splits["test"])}
        total, done_all = sum(counts.values()), sum(meta["done"].get(s, 0) for s in SPLITS)
        if progress:
            progress(done_all, total)
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
                with torch.no_grad(), _autocast(device, amp):
                    h = parts.frozen(x.to(device, non_blocking=True))
                array[row : row + len(h)] = h.float().cpu().contiguous().numpy().astype(np.float16)
                row += len(h)
                array.flush()
                meta["done"][split] = row
                self._write_meta(meta)
                done_all += len(h)
                if progress:
                    progress(done_all, total)
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


# -- training ------------------------------------------------------------------------


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


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

    def prepare_cache(self, progress: Progress | None = None) -> float:
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
        with _autocast(self.device, self.amp):
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
            with _autocast(self.device, self.amp):
                logits = self.parts.rest(x) if self.cache is not None else self.model(x)
            loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            pred = logits.argmax(1).cpu().numpy()
            np.add.at(confusion, (y.cpu().numpy(), pred), 1)
            seen += len(y)
        return Evaluation(loss_sum / max(seen, 1), float(np.trace(confusion) / max(seen, 1)), confusion)

    # -- the whole run -----------------------------------------------------------------
    def fit(self, epochs: int | None = None, *, resume: bool = False, progress: Progress | None = None,
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
            report({"stage": "cache" if self.use_cache else "train", "epoch": start_epoch, "epochs": epochs})
        cache_seconds = self.prepare_cache(progress)
        batches_per_epoch = len(self.sampler)
        total = epochs * batches_per_epoch
        trained_images = len(self.data.splits["training"]) * N_VIEWS * start_epoch
        for epoch in range(start_epoch + 1, epochs + 1):
            epoch_start = time.perf_counter()
            done_before = (epoch - 1) * batches_per_epoch

            def on_batch(b: int, loss: float, acc: float, _epoch: int = epoch) -> None:
                if progress:
                    progress(done_before + b, total)
                if report:
                    report({"stage": "train", "epoch": _epoch, "epochs": epochs, "loss": loss, "accuracy": acc})

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
                report({"stage": "train", "epoch": epoch, "epochs": epochs, "loss": loss, "accuracy": acc,
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
