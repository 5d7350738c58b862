"""Placing concepts in an unseen song: the rule on synthetic features, fills, the bank file."""

from __future__ import annotations

import numpy as np
import pytest

from whypop.ace.patches import make_patches
from whypop.ace.placement import (
    ConceptBank, SegmentParams, assign, concept_masks, fill_masks, fill_value, place_concepts, present_concepts,
)


def two_halves(size: int = 64, seed: int = 0) -> np.ndarray:
    """Bright upper half, dark lower half, light noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size))
    img[: size // 2] = 200
    img[size // 2 :] = 30
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def mean_embed(patches: np.ndarray) -> np.ndarray:
    """A stand-in network: one channel, the patch's mean intensity, on a 2x2 grid."""
    m = patches.reshape(len(patches), -1).mean(1).astype(np.float32)
    return np.repeat(m[:, None, None, None], 4, axis=-1).reshape(len(patches), 1, 2, 2)


def bank(spread: float = 5.0) -> ConceptBank:
    rng = np.random.default_rng(1)
    bright = rng.normal(200, spread, (50, 1))
    dark = rng.normal(30, spread, (50, 1))
    mid = rng.normal(115, spread, (50, 1))
    return ConceptBank.from_members([3, 7, 9], ["pop", "rock", "rock"], [bright, dark, mid])


def test_bank_centres_and_calibrated_radii():
    b = bank()
    assert b.centres.shape == (3, 1)
    assert b.centres[0, 0] == pytest.approx(200, abs=2)
    # the radius is the 90th percentile of the members' own distances: 90% of them lie within
    for k in range(3):
        assert 0.9 <= b.member_share_within(k, b.thresholds[k]) <= 0.92
    wider = ConceptBank.from_members([1], ["x"], [np.random.default_rng(1).normal(0, 50, (50, 1))])
    assert wider.thresholds[0] > 5 * b.thresholds[0]  # calibrated per concept, no fixed number


def test_assign_within_radius_and_one_match_per_genre():
    b = bank()
    out = assign(np.array([[201.0], [31.0], [116.0], [160.0]]), b)
    assert [o[0] for o in out] == [3, 7, 9, None]
    assert out[3][3] == () and out[3][2] in (3, 9)  # nearest concept named even when none matches
    # a feature between two rock concepts matches at most one of them
    for _, _, _, matches in out:
        genres = [m.genre for m in matches]
        assert len(genres) == len(set(genres))
    # a concept of another genre on the same spot: the segment matches one concept per genre
    twin = ConceptBank.from_members([1, 2], ["pop", "rock"], [np.full((10, 1), 100.0) + np.arange(10)[:, None],
                                                              np.full((10, 1), 101.0) + np.arange(10)[:, None]])
    (_, _, _, matches), = assign(np.array([[104.0]]), twin)
    assert sorted(m.concept_id for m in matches) == [1, 2]


def test_place_concepts_on_a_song():
    img = two_halves()
    params = SegmentParams(segments=(4, 8), compactness=20.0, sigma=1.0, patch_mode="faithful", fill=115.0, image_size=64)
    placements = place_concepts(img, bank(spread=8.0), mean_embed, params)
    assert placements and all(p.mask.shape == img.shape for p in placements)
    for p in placements:
        share_top = p.mask[:32].sum() / p.mask.sum()
        if share_top > 0.98:
            assert p.concept_id == 3 and p.genre == "pop"
        elif share_top < 0.02:
            assert p.concept_id == 7 and p.genre == "rock"
    assert 3 in present_concepts(placements) and 7 in present_concepts(placements)
    top = concept_masks(placements, 3)
    assert top.any(axis=0)[:32].mean() > 0.5 and not top.any(axis=0)[40:].any()
    assert concept_masks(placements, 12345).shape == (0, 64, 64)
    d = placements[0].to_dict()
    assert set(d) >= {"segment", "concept_id", "distance", "bbox", "matches"}


def test_inplace_mode_uses_the_masked_mean():
    img = two_halves()
    params = SegmentParams(segments=(4,), patch_mode="inplace", fill=30.0, image_size=64)
    placements = place_concepts(img, bank(spread=8.0), mean_embed, params)
    assert any(p.concept_id is not None for p in placements)


def test_fill_masks_matches_patch_fill():
    img = two_halves()
    masks = np.zeros((2, 64, 64), bool)
    masks[0, :10, :10] = True
    masks[1, 50:, 50:] = True
    out = fill_masks(img, masks, 117.6)
    assert out.dtype == np.uint8 and (out[:10, :10] == 118).all() and (out[50:, 50:] == 118).all()
    assert (out[20:40, 20:40] == img[20:40, 20:40]).all() and (img[:10, :10] != 118).any()  # a copy
    # the same pixel value the patches are filled with
    patch = make_patches(img, ~masks[:1], 117.6, "inplace", 64)[0]
    assert (patch[:10, :10] == fill_value(117.6)).all()
    assert (fill_masks(img, np.zeros((0, 64, 64), bool), 5) == img).all()


def test_bank_file_round_trip(tmp_path):
    b = bank()
    b.mean_cavs = np.ones((3, 4), np.float32)
    path = b.save(tmp_path / "bank.npz")
    c = ConceptBank.load(path)
    assert (c.concept_ids == b.concept_ids).all() and c.genres == b.genres
    assert np.allclose(c.centres, b.centres) and np.allclose(c.thresholds, b.thresholds)
    assert all(np.allclose(x, y) for x, y in zip(c.member_distances, b.member_distances))
    assert c.mean_cavs.shape == (3, 4) and c.quantile == b.quantile


def test_params_from_extract_config():
    from whypop.config import ExtractConfig

    p = SegmentParams.from_extract(ExtractConfig(segments=(5, 9), patch_mode="inplace"), fill=99.5, image_size=128)
    assert p.segments == (5, 9) and p.patch_mode == "inplace" and p.fill == 99.5 and p.image_size == 128
    assert SegmentParams.from_dict(p.to_dict()) == p
    assert SegmentParams.from_extract({"segments": [3]}, 1.0, 64).segments == (3,)
    with pytest.raises(ValueError):
        SegmentParams(patch_mode="stretch")
