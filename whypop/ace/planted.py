"""Ground truth checks on the demo: do concepts sit where the signatures were planted?

Overlap of a patch with a region = the share of the patch's mask pixels inside the
region; a concept's overlap is that share averaged over its patches. The chance level
is the same measure for the patches of the same discovery songs taken at random, i.e.
averaged over all their segments.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from whypop.model import preprocess


def region_mask(shape: tuple[int, int], boxes: Iterable[tuple[int, int, int, int]]) -> np.ndarray:
    """Boolean (H, W) union of pixel boxes (x0, y0, x1, y1), ends exclusive."""
    out = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        out[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return out


def mask_overlap(masks: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(P,) share of each mask's pixels inside ``region`` (0 for empty masks)."""
    masks = np.asarray(masks, dtype=bool)
    area = masks.reshape(len(masks), -1).sum(1)
    inside = (masks & region[None]).reshape(len(masks), -1).sum(1)
    return np.where(area > 0, inside / np.maximum(area, 1), 0.0)


def signature_reliance(
    model, images: np.ndarray, regions: list[np.ndarray], class_index: int, fill: float, device="cpu",
) -> tuple[float, float]:
    """Does the model need the planted signature? Mean p(class) with and without it.

    ``regions`` are the images' signature masks (H, W); "without" fills them with the
    fill value (the training set's mean pixel). The demo's ground truth assumes each
    genre is recognised by its signature; a genre the model recognises by the absence
    of the others' signatures (a default class) keeps its probability when its own
    signature is hidden, and then no concept can honestly be expected on it.
    """
    import torch

    occluded = np.array(images, copy=True)
    value = np.uint8(np.clip(round(float(fill)), 0, 255))
    for img, region in zip(occluded, regions):
        img[region] = value
    with torch.inference_mode():
        p = [float(torch.softmax(model(preprocess(x, device)).float(), dim=1)[:, class_index].mean())
             for x in (np.asarray(images), occluded)]
    return p[0], p[1]
