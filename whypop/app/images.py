"""Server-side images (PNG bytes) for the gallery and the song view, rendered with PIL.

Inputs are the stored uint8 spectrogram (row 0 = highest frequency) and boolean segment
masks of the same size; outputs are small PNGs the routes serve with caching headers.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

PATCH_FILL = 117  # outside the segment, as ACE fills it (the ImageNet mean pixel, 117/255)
# Magma anchors: patches stitched into the song view are drawn in colour, the rest in grey.
_MAGMA = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]], float)


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A boolean mask of an (x0, y0, x1, y1) pixel box, clipped to the image."""
    h, w = shape
    x0, y0, x1, y1 = box
    m = np.zeros((h, w), dtype=bool)
    m[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return m


def patch_image(spec: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The patch as the network saw it before resizing: the box crop, outside the segment filled."""
    h, w = spec.shape
    x0, y0, x1, y1 = _clip_box(box, w, h)
    crop = spec[y0:y1, x0:x1].copy()
    crop[~mask[y0:y1, x0:x1]] = PATCH_FILL
    return crop


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (inside the mask, next to outside or the image edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1]
    eroded = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inner & ~eroded


def context_scale(shape: tuple[int, int]) -> int:
    """How much a context image is upscaled: small spectrograms 2x, real-size ones (>= 200 px) not at all."""
    return 2 if max(shape) < 200 else 1


def context_image(spec: np.ndarray, mask: np.ndarray, color: str, scale: int = 2) -> np.ndarray:
    """The source spectrogram (RGB, upscaled ``scale`` x), dimmed outside the segment, its boundary in ``color``."""
    m = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    big = np.repeat(np.repeat(spec, scale, axis=0), scale, axis=1).astype(float)
    big[~m] *= 0.55
    rgb = np.stack([big.astype(np.uint8)] * 3, axis=-1)
    edge = outline(m)
    edge |= np.roll(edge, 1, axis=0) & m | np.roll(edge, 1, axis=1) & m  # two pixels thick, inside
    rgb[edge] = _hex(color)
    return rgb


def overlay_png(mask: np.ndarray, color: str, scale: int = 2) -> bytes:
    """A transparent PNG to lay over the source spectrogram: dim outside the segment, its boundary in ``color``.

    The same look as :func:`context_image` (upscaled ``scale`` x, a two-pixel boundary
    inside the segment) without repeating the spectrogram: a palette PNG of three colours
    (clear, 45 % black, ``color``), a few hundred bytes, where the context image is tens of kB.
    """
    m = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    edge = outline(m)
    edge |= np.roll(edge, 1, axis=0) & m | np.roll(edge, 1, axis=1) & m
    index = np.where(m, 0, 1).astype(np.uint8)
    index[edge] = 2
    im = Image.fromarray(index, mode="P")
    im.putpalette([0, 0, 0, 0, 0, 0, *_hex(color)] + [0] * (3 * 253))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True, transparency=bytes([0, 115, 255]))
    return buf.getvalue()


def context_png(spec: np.ndarray, mask: np.ndarray, color: str, scale: int = 1) -> bytes:
    """:func:`context_image` encoded as a palette PNG (grey ramp + the outline colour), several times faster.

    The same picture, except that pure white (255) shows as 254: index 255 is the outline colour.
    """
    m = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1) if scale > 1 else mask
    big = np.repeat(np.repeat(spec, scale, axis=0), scale, axis=1) if scale > 1 else spec
    grey = big.astype(float)
    grey[~m] *= 0.55
    index = np.minimum(grey.astype(np.uint8), 254)  # 255 is the outline (white becomes 254)
    edge = outline(m)
    edge |= np.roll(edge, 1, axis=0) & m | np.roll(edge, 1, axis=1) & m
    index[edge] = 255
    img = Image.fromarray(np.ascontiguousarray(index), mode="P")
    img.putpalette([v for g in range(255) for v in (g, g, g)] + list(_hex(color)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def song_image(spec: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """The song view: every concept patch in colour (magma), everything else greyed out."""
    covered = np.zeros(spec.shape, dtype=bool)
    for m in masks:
        covered |= m
    grey = (70 + 0.35 * spec.astype(float)).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[covered] = _magma(spec[covered])
    return rgb


def encode(image: np.ndarray, compress_level: int = 6) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes (``compress_level`` 1: several times faster, a little bigger)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _magma(values: np.ndarray) -> np.ndarray:
    x = values.astype(float) / 255 * (len(_MAGMA) - 1)
    lo = np.clip(np.floor(x).astype(int), 0, len(_MAGMA) - 2)
    t = (x - lo)[:, None]
    return ((1 - t) * _MAGMA[lo] + t * _MAGMA[lo + 1]).astype(np.uint8)


def _clip_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    x0, y0 = min(max(0, x0), w - 1), min(max(0, y0), h - 1)
    return x0, y0, max(x0 + 1, min(w, x1)), max(y0 + 1, min(h, y1))


def _hex(color: str) -> tuple[int, int, int]:
    h = color.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
