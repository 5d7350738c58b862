"""SLIC segments of a spectrogram at several resolutions, as ACE does.

The reference loads images as RGB and lets SLIC convert them to Lab (lightness 0..100),
which is what compactness 20 is tuned for. We replicate the grayscale spectrogram to
three channels and let SLIC do the same conversion, so the thesis settings (10/15/25
segments, compactness 20, sigma 1) behave as in the reference: segments follow content
(a black band becomes its own segment) instead of forming a regular grid.

Masks covering at most ``min_area`` of the image are dropped; a mask whose IoU with a
mask accepted at an earlier resolution exceeds ``max_iou`` is dropped. The reference's
quirks (skipping the highest label, cropping off the last row and column) are not
reproduced.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def slic_labels(image: np.ndarray, n_segments: int, compactness: float = 20.0, sigma: float = 1.0,
                valid: np.ndarray | None = None) -> np.ndarray:
    """SLIC label map (H, W) of a uint8 grayscale image, labels from 0.

    With ``valid`` (a boolean (H, W) mask), SLIC places its segments inside it only
    (skimage's ``mask``) and the pixels outside get label -1.
    """
    from skimage.segmentation import slic

    if image.ndim != 2:
        raise ValueError(f"expected a grayscale image (H, W), got shape {image.shape}")
    rgb = np.repeat(np.asarray(image)[..., None], 3, axis=-1)
    if valid is None or valid.all():
        return slic(rgb, n_segments=int(n_segments), compactness=float(compactness), sigma=float(sigma), start_label=0)
    if not valid.any():
        return np.full(image.shape, -1, dtype=np.int64)
    labels = slic(rgb, n_segments=int(n_segments), compactness=float(compactness), sigma=float(sigma),
                  start_label=1, mask=valid)
    return labels.astype(np.int64) - 1


def segment_masks(
    image: np.ndarray,
    n_segments: Sequence[int] = (10, 15, 25),
    compactness: float = 20.0,
    sigma: float = 1.0,
    min_area: float = 0.001,
    max_iou: float = 0.5,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean masks (P, H, W) of one image over all resolutions, deduplicated.

    ``min_area`` is a share of the image (masks with ``mean(mask) <= min_area`` are
    dropped); ``max_iou`` the largest intersection over union allowed with a mask
    accepted at an earlier resolution. With ``valid``, segments lie inside it only
    (``extract.skip_empty``: the regions known to be empty are left out).
    """
    h, w = image.shape
    accepted: list[np.ndarray] = []  # flattened masks of earlier resolutions
    for n in n_segments:
        labels = slic_labels(image, n, compactness, sigma, valid).ravel()
        count = int(labels.max()) + 1
        onehot = labels[None, :] == np.arange(count)[:, None]  # (L, H*W)
        onehot = onehot[onehot.mean(axis=1) > min_area]
        if accepted and len(onehot):
            prev = np.stack(accepted).astype(np.float32)
            cur = onehot.astype(np.float32)
            inter = cur @ prev.T
            union = cur.sum(1)[:, None] + prev.sum(1)[None, :] - inter
            onehot = onehot[~((inter / union) > max_iou).any(axis=1)]
        accepted.extend(onehot)
    if not accepted:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack(accepted).reshape(-1, h, w)


def random_segment(
    image: np.ndarray, n_segments: Sequence[int], rng: np.random.Generator, compactness: float = 20.0,
    sigma: float = 1.0, min_area: float = 0.001, valid: np.ndarray | None = None,
) -> np.ndarray:
    """One segment (H, W) of an image chosen at random: a random resolution, then a random mask."""
    n = int(n_segments[int(rng.integers(len(n_segments)))])
    labels = slic_labels(image, n, compactness, sigma, valid)
    if labels.max() < 0:  # nothing valid: the whole image
        return np.ones(image.shape, dtype=bool)
    counts = np.bincount(labels.ravel()[labels.ravel() >= 0])
    big = np.flatnonzero(counts > min_area * labels.size)
    if big.size == 0:
        big = np.flatnonzero(counts)
    return labels == big[int(rng.integers(len(big)))]
