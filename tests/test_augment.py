"""Augmentation: original + frequency band + time band + both, seeded per (seed, track, epoch)."""

from __future__ import annotations

import numpy as np
import pytest

from whypop.augment import N_VIEWS, augment, band_rng, draw_bands
from whypop.config import AugmentConfig
from whypop.errors import ConfigError


def _image(size: int = 224) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(1, 256, size=(size, size), dtype=np.uint8)  # no black pixel anywhere


def _black_rows(view: np.ndarray) -> np.ndarray:
    return np.flatnonzero((view == 0).all(axis=1))


def _black_cols(view: np.ndarray) -> np.ndarray:
    return np.flatnonzero((view == 0).all(axis=0))


def _is_one_band(idx: np.ndarray) -> bool:
    return idx.size > 0 and np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))


@pytest.mark.parametrize("size", [224, 128, 64])
def test_four_views_with_bands_of_the_allowed_width(size):
    cfg = AugmentConfig()
    img = _image(size)
    lo, hi = max(1, round(cfg.min_band * size)), int(cfg.max_band * size)
    for track in (f"t{i}" for i in range(40)):
        views = augment(img, track, cfg)
        assert views.shape == (N_VIEWS, size, size) and views.dtype == np.uint8
        assert np.array_equal(views[0], img), "view 0 is the original"
        rows, cols = _black_rows(views[1]), _black_cols(views[2])
        assert _is_one_band(rows) and _black_cols(views[1]).size == 0, "view 1: one frequency band"
        assert _is_one_band(cols) and _black_rows(views[2]).size == 0, "view 2: one time band"
        for band in (rows, cols):
            assert lo <= band.size <= hi
            assert band.size <= 0.10 * size
        both = views[3]
        assert np.array_equal(_black_rows(both), rows) and np.array_equal(_black_cols(both), cols)
        # black = 0 exactly where the bands are, the rest untouched
        mask = np.zeros((size, size), bool)
        mask[rows, :] = True
        mask[:, cols] = True
        assert (both[mask] == 0).all() and np.array_equal(both[~mask], img[~mask])


def test_deterministic_per_seed_track_epoch():
    cfg = AugmentConfig(seed=3)
    img = _image()
    a = augment(img, "000010", cfg, epoch=2)
    assert np.array_equal(a, augment(img, "000010", cfg, epoch=2))
    assert not np.array_equal(a, augment(img, "000010", cfg, epoch=3))
    assert not np.array_equal(a, augment(img, "000010", AugmentConfig(seed=4), epoch=2))


def test_different_across_tracks():
    cfg = AugmentConfig()
    bands = {draw_bands(224, cfg, band_rng(cfg.seed, f"track-{i}")) for i in range(50)}
    assert len(bands) > 40


def test_the_input_is_not_modified():
    img = _image()
    before = img.copy()
    augment(img, "x", AugmentConfig())
    assert np.array_equal(img, before)


def test_bands_never_leave_the_image():
    cfg = AugmentConfig(min_band=0.10, max_band=0.10)
    for i in range(200):
        b = draw_bands(20, cfg, band_rng(0, str(i)))
        assert 0 <= b.f0 < b.f1 <= 20 and 0 <= b.t0 < b.t1 <= 20
        assert b.f1 - b.f0 == 2 and b.t1 - b.t0 == 2


def test_non_square_input_is_refused():
    with pytest.raises(ValueError, match="square"):
        augment(np.zeros((10, 12), np.uint8), "x", AugmentConfig())


def test_bands_wider_than_ten_percent_are_not_allowed():
    with pytest.raises(ConfigError):
        AugmentConfig(max_band=0.2).validate()
