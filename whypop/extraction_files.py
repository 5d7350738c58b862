"""The files of an extraction: the contract between concept discovery and the dashboard.

Rows (concepts, patches) live in the run database; the larger data lives in the
extraction's directory, ``extractions/<id>/``:

``arrays.npz``
    ``concept_ids`` (K,) int64, the order of every array below;
    ``mean_cavs`` (K, D) float32, each concept's CAV averaged over random experiments;
    ``similarity`` (K, K) float32, cosine of mean CAVs;
    ``tcav_scores`` (K, R) float32, one TCAV score per random experiment;
    ``random_scores`` (G, R) float32, per genre the random-vs-random null scores
    (``random_genres`` (G,) names their order);
    ``cluster_ids`` (C,) int64 and ``cluster_xy`` (C, 2) float32, the concept map's
    cluster centres.
``segments/<track_id>.npz``
    ``masks``: the bit-packed (P, H, W) boolean segment masks of one discovery song;
    a patch row's ``mask`` column holds ``segments/<track_id>.npz#<index>``.
``patches/<concept_id>_<rank>.png``
    optional rendered patch images (what the network saw) for the gallery.

The ``summary`` JSON of the extraction's row is :class:`whypop.results.ExtractionSummary`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whypop.errors import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from whypop.store import RunStore

ARRAYS = "arrays.npz"
_MASK_REF = re.compile(r"^segments/([A-Za-z0-9_.-]+)\.npz#(\d+)$")


def save_arrays(directory: Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays.npz`` into an extraction directory (its partial one while running)."""
    path = Path(directory) / ARRAYS
    tmp = path.with_name(".tmp-" + ARRAYS)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)
    return path


def load_arrays(store: "RunStore", extraction_id: int) -> dict[str, np.ndarray]:
    """The arrays of a complete extraction."""
    ex = store.extraction(extraction_id)
    return dict(_load_npz(str(Path(ex["path"]) / ARRAYS)))


def save_masks(directory: Path, track_id: str, masks: np.ndarray) -> list[str]:
    """Store one song's (P, H, W) boolean masks; returns each mask's reference string."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (P, H, W), got {masks.shape}")
    seg_dir = Path(directory) / "segments"
    seg_dir.mkdir(parents=True, exist_ok=True)
    path = seg_dir / f"{track_id}.npz"
    tmp = seg_dir / f".tmp-{track_id}.npz"
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, masks=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
    tmp.replace(path)
    return [f"segments/{track_id}.npz#{i}" for i in range(masks.shape[0])]


def load_mask(store: "RunStore", extraction_id: int, ref: str) -> np.ndarray:
    """One patch's boolean mask (H, W) from its reference; NotFound for anything odd."""
    m = _MASK_REF.match(ref or "")
    if m is None:
        raise NotFound(f"bad mask reference {ref!r}")
    ex = store.extraction(extraction_id)
    path = store.path(Path(ex["path"]).relative_to(store.root) / "segments" / f"{m.group(1)}.npz")
    if not path.is_file():
        raise NotFound(f"mask file missing for {ref!r}")
    masks, shape = _load_masks(str(path))
    index = int(m.group(2))
    if index >= shape[0]:
        raise NotFound(f"mask index out of range in {ref!r}")
    return np.unpackbits(masks[index], axis=-1, count=int(shape[2])).astype(bool)


@functools.lru_cache(maxsize=64)
def _load_masks(path: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    with np.load(path) as data:
        return data["masks"], tuple(int(v) for v in data["shape"])


@functools.lru_cache(maxsize=16)
def _load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
