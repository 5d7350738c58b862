"""Patches: what the network sees of one segment.

``faithful`` (the reference): everything outside the mask is set to the fill value,
the mask's bounding box is cropped and resized (bicubic) to the model's input size.
On spectrograms the resize stretches the frequency axis, so ``inplace`` keeps the full
frame, masked, unresized. The fill value is the training set's mean pixel: the most
neutral input the model knows.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from whypop.config import PatchMode, choices

MODES = choices(PatchMode)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of a boolean mask, in pixels, ends exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no bounding box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def make_patches(image: np.ndarray, masks: np.ndarray, fill: float, mode: str = "faithful", size: int | None = None) -> np.ndarray:
    """uint8 patches (P, size, size) of one uint8 image (H, W) and its masks (P, H, W)."""
    if mode not in MODES:
        raise ValueError(f"patch mode {mode!r}: allowed are {', '.join(MODES)}")
    h, w = image.shape
    size = int(size or h)
    fill_u8 = np.uint8(np.clip(round(float(fill)), 0, 255))
    out = np.empty((len(masks), size, size), dtype=np.uint8)
    for i, mask in enumerate(masks):
        masked = np.where(mask, image, fill_u8).astype(np.uint8)
        if mode == "faithful":
            x0, y0, x1, y1 = mask_bbox(mask)
            masked = masked[y0:y1, x0:x1]
        if masked.shape != (size, size):
            masked = np.asarray(Image.fromarray(masked).resize((size, size), Image.BICUBIC))
        out[i] = masked
    return out
