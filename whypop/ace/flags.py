"""Spurious-concept flags: each a ``{"flag", "reason"}`` kept beside the concept, never a removal.

- ``augmentation-band`` / ``silence``: the concept's patches are mostly black (in a
  spectrogram, value 0 is black: ``top_db`` or more below the clip's peak). When the
  black pixels lie in full-height columns or full-width rows of their spectrogram,
  the shape of the training augmentation's bands (and of silent gaps or zeroed
  frequency bands), the flag is ``augmentation-band``; otherwise ``silence``.
- ``lonely-cluster``: the concept's cross-genre cluster holds few concepts and none of
  them matters (significant with a TCAV score above 0.5).
- ``not-significant``: the paired t-test failed after the multiple-testing correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DARK_FLAGS = ("augmentation-band", "silence")  # the patches are mostly black: not music
BAND_FILL = 0.9  # a row or column is a band when this share of its pixels is black


@dataclass(frozen=True)
class Darkness:
    """How black a concept's patches are: shares of mask pixels, averaged over patches."""

    black_share: float  # mask pixels at or below the black level
    band_share: float  # of those black pixels, the share inside full black rows or columns


def band_map(image: np.ndarray, black_level: int) -> tuple[np.ndarray, np.ndarray]:
    """(black pixels, black pixels lying in full black rows or columns) of one image."""
    black = np.asarray(image) <= black_level
    rows = black.mean(axis=1) >= BAND_FILL
    cols = black.mean(axis=0) >= BAND_FILL
    return black, black & (rows[:, None] | cols[None, :])


def patch_darkness(black: np.ndarray, banded: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(share of the mask that is black, share of those black pixels in bands) for one patch."""
    area = int(mask.sum())
    if area == 0:
        return 0.0, 0.0
    dark = int((black & mask).sum())
    return dark / area, (int((banded & mask).sum()) / dark if dark else 0.0)


def darkness(values: Sequence[tuple[float, float]]) -> Darkness:
    """Average per-patch (black share, band share) into a concept's Darkness."""
    if not values:
        return Darkness(0.0, 0.0)
    arr = np.asarray(values, dtype=np.float64)
    return Darkness(float(arr[:, 0].mean()), float(arr[:, 1].mean()))


def darkness_flag(d: Darkness, min_share: float) -> dict | None:
    """The ``augmentation-band`` or ``silence`` flag when the patches are mostly black."""
    if d.black_share < min_share:
        return None
    if d.band_share >= 0.5:
        return {
            "flag": "augmentation-band",
            "reason": f"{d.black_share:.0%} of its patch pixels are black, {d.band_share:.0%} of them in "
                      f"full-height or full-width black bands (augmentation bands, silent gaps or "
                      f"zeroed frequency bands), not music",
        }
    return {
        "flag": "silence",
        "reason": f"{d.black_share:.0%} of its patch pixels are black (silence), not music",
    }


def significance_flag(p_value: float, description: str) -> dict:
    return {"flag": "not-significant", "reason": f"p = {p_value:.3g}: {description}"}


def lonely_flags(
    clusters: np.ndarray, tcav_means: np.ndarray, significant: np.ndarray, max_size: int,
) -> dict[int, dict]:
    """Per concept index, the ``lonely-cluster`` flag when its cluster is small and unimportant."""
    clusters = np.asarray(clusters)
    out: dict[int, dict] = {}
    for label in np.unique(clusters):
        members = np.flatnonzero(clusters == label)
        important = significant[members] & (tcav_means[members] > 0.5)
        if len(members) <= max_size and not important.any():
            reason = (
                f"its cluster {int(label)} holds only {len(members)} concept(s) and none is significant "
                f"with a TCAV score above 0.5 (mean {float(tcav_means[members].mean()):.2f})"
            )
            for i in members:
                out[int(i)] = {"flag": "lonely-cluster", "reason": reason}
    return out


def is_dark(concept_flags: Sequence[dict]) -> bool:
    """Whether a concept carries a silence or augmentation-band flag."""
    return any(f.get("flag") in DARK_FLAGS for f in concept_flags)
