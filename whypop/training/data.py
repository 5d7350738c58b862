"""The training data: a run's splits, the song batches and their views, the loaders.

Batches are ``songs_per_batch`` songs x their 4 views (original, frequency band, time
band, both; see :mod:`whypop.augment`), shuffled within the batch. The song order of an
epoch and the view order of a batch come from generators seeded by ``(train.seed,
epoch, ...)``, so a run is reproducible and a resumed run sees exactly the batches an
uninterrupted one would have. PNG decoding, augmentation and preprocessing run in
DataLoader worker processes (``train.num_workers``), overlapped with the training step.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from whypop.augment import N_VIEWS, augment
from whypop.config import AugmentConfig
from whypop.errors import InputError
from whypop.model import preprocess

SPLITS = ("training", "validation", "test")
EVAL_BATCH = 32  # images per evaluation / cache-building batch


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
                f"training, validation and test tracks: at least 3 clips per genre, and for folder collections "
                f"a dataset.split giving each split a share (see the warnings of `whypop status`)"
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
                batch_size: int | None = None, collate_fn=None) -> DataLoader:
    """A DataLoader whose workers decode, augment and preprocess ahead of the model."""
    kwargs: dict = dict(num_workers=workers, collate_fn=collate_fn, pin_memory=device.type == "cuda")
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)
