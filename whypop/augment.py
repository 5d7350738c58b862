"""Training-time augmentation: the original plus copies with black bands.

For each song: the original, a copy with a black frequency band (rows), one with a
black time band (columns), and one with both; each band at most 10% of the image side.
Bands are drawn from a generator seeded by (seed, track id, epoch), so the same song
gets the same bands in every run, and a new set per epoch only when asked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from whypop.config import AugmentConfig

N_VIEWS = 4  # original, frequency band, time band, both
VIEW_NAMES = ("original", "frequency band", "time band", "both bands")


@dataclass(frozen=True)
class Bands:
    """Black bands in pixels: rows [f0, f1) and columns [t0, t1)."""

    f0: int
    f1: int
    t0: int
    t1: int


def band_rng(seed: int, track_id: str, epoch: int = 0) -> np.random.Generator:
    """A generator that depends only on the seed, the track and the epoch."""
    digest = hashlib.blake2b(f"{seed}:{track_id}:{epoch}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def draw_bands(size: int, cfg: AugmentConfig, rng: np.random.Generator) -> Bands:
    """One frequency band and one time band, each min_band..max_band of the side."""
    lo = max(1, int(round(cfg.min_band * size)))
    hi = max(lo, int(cfg.max_band * size))  # floor: never more than max_band
    fw, tw = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    f0 = int(rng.integers(0, size - fw + 1))
    t0 = int(rng.integers(0, size - tw + 1))
    return Bands(f0, f0 + fw, t0, t0 + tw)


def apply_bands(image: np.ndarray, bands: Bands) -> np.ndarray:
    """The four views of one image, stacked (4, H, W), same dtype; black = 0."""
    views = np.repeat(image[None], N_VIEWS, axis=0)
    views[1, bands.f0 : bands.f1, :] = 0
    views[2, :, bands.t0 : bands.t1] = 0
    views[3, bands.f0 : bands.f1, :] = 0
    views[3, :, bands.t0 : bands.t1] = 0
    return views


def augment(image: np.ndarray, track_id: str, cfg: AugmentConfig, epoch: int = 0) -> np.ndarray:
    """The thesis' four spectrograms of a song (original, frequency, time, both)."""
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"augment expects a square 2-D image, got shape {image.shape}")
    bands = draw_bands(image.shape[0], cfg, band_rng(cfg.seed, track_id, epoch))
    return apply_bands(image, bands)
