"""Spurious-concept flags: each a ``{"flag", "reason"}`` kept beside the concept, never a removal.

- ``above-nyquist`` / ``padding``: most of the concept's patch pixels lie where the
  geometry says the image is empty: above the source's Nyquist frequency (a 22.05 kHz
  clip resampled to 44.1 kHz has nothing above 11.025 kHz), or after the song ends (a
  clip shorter than the window, padded with silence). The cause comes from each
  track's sample rate and duration (:func:`whypop.geometry.empty_regions`), not from
  pixel darkness.
- ``augmentation-band`` / ``silence``: otherwise, the concept's patches are mostly
  black (in a spectrogram, value 0 is black: ``top_db`` or more below the clip's
  peak). When the black pixels lie in full-height columns or full-width rows of their
  spectrogram, the shape of the training augmentation's bands (and of zeroed
  frequency bands or gaps), the flag is ``augmentation-band``; otherwise ``silence``
  (silence in the music).
- ``lonely-cluster``: the concept's cross-genre cluster holds few concepts and none of
  them matters (significant with a TCAV score above 0.5).
- ``not-significant``: the paired t-test failed after the multiple-testing correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BAND_FILL = 0.9  # a row or column is a band when this share of its pixels is black


ABOVE_NYQUIST, PADDING = 1, 2  # bits of an empty-region map (as whypop.geometry.empty_regions)
EMPTY_FLAGS = ("above-nyquist", "padding")
# not music: the patches lie in empty regions or are mostly black (never a genre's top concept)
DARK_FLAGS = ("above-nyquist", "padding", "augmentation-band", "silence")


@dataclass(frozen=True)
class Darkness:
    """How black a concept's patches are, and where: shares of mask pixels, averaged over patches."""

    black_share: float  # mask pixels at or below the black level
    band_share: float  # of those black pixels, the share inside full black rows or columns
    nyquist_share: float = 0.0  # mask pixels above the source's Nyquist frequency (and not padding)
    padding_share: float = 0.0  # mask pixels after the song ends


def patch_empty(regions: np.ndarray | None, mask: np.ndarray) -> tuple[float, float]:
    """(share of the mask above the source's Nyquist only, share in padding) for one patch."""
    area = int(mask.sum())
    if regions is None or area == 0:
        return 0.0, 0.0
    r = regions[mask]
    in_padding = (r & PADDING) != 0
    padding = int(np.count_nonzero(in_padding))
    nyquist = int(np.count_nonzero(((r & ABOVE_NYQUIST) != 0) & ~in_padding))
    return nyquist / area, padding / area


def band_map(image: np.ndarray, black_level: int, max_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(black pixels, black pixels lying in full black rows or columns) of one image.

    With ``max_width``, only runs of at most that many consecutive black rows (columns)
    count: the width of the training augmentation's bands. A wider black area is a
    stretch of the song without energy there (silence in the music), not a band.
    """
    black = np.asarray(image) <= black_level
    rows = _narrow(black.mean(axis=1) >= BAND_FILL, max_width)
    cols = _narrow(black.mean(axis=0) >= BAND_FILL, max_width)
    return black, black & (rows[:, None] | cols[None, :])


def _narrow(flags_: np.ndarray, max_width: int | None) -> np.ndarray:
    """Keep only the runs of True at most ``max_width`` long."""
    if max_width is None or not flags_.any():
        return flags_
    out = flags_.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags_.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start > max_width:
            out[start:stop] = False
    return out


def patch_darkness(black: np.ndarray, banded: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(share of the mask that is black, share of those black pixels in bands) for one patch."""
    area = int(mask.sum())
    if area == 0:
        return 0.0, 0.0
    dark = int((black & mask).sum())
    return dark / area, (int((banded & mask).sum()) / dark if dark else 0.0)


def darkness(values: Sequence[tuple[float, ...]]) -> Darkness:
    """Average per-patch (black share, band share[, Nyquist share, padding share]) into a Darkness."""
    if not values:
        return Darkness(0.0, 0.0)
    arr = np.asarray(values, dtype=np.float64)
    return Darkness(*(float(v) for v in arr.mean(axis=0)))


def darkness_flag(d: Darkness, min_share: float, nyquist_hz: float | None = None,
                  song_end: str | None = None) -> dict | None:
    """The flag naming why a concept is not music, or None.

    ``above-nyquist`` or ``padding`` when at least ``min_share`` of its patch pixels lie
    in regions the geometry knows to be empty (the larger of the two names the cause);
    else ``augmentation-band`` or ``silence`` when at least ``min_share`` are black.
    ``nyquist_hz`` and ``song_end`` only word the reason.
    """
    empty = d.nyquist_share + d.padding_share
    if empty >= min_share:
        if d.nyquist_share >= d.padding_share:
            where = f" ({nyquist_hz / 1000:.3g} kHz)" if nyquist_hz else ""
            return {
                "flag": "above-nyquist",
                "reason": f"{d.nyquist_share:.0%} of its patch pixels lie above the source's Nyquist "
                          f"frequency{where}: a band the resampling left empty, not music",
            }
        return {
            "flag": "padding",
            "reason": f"{d.padding_share:.0%} of its patch pixels lie in the padding after the song ends"
                      + (f" ({song_end})" if song_end else "") + ": silence added to fill the window, not music",
        }
    if d.black_share < min_share:
        return None
    if d.band_share >= 0.5:
        return {
            "flag": "augmentation-band",
            "reason": f"{d.black_share:.0%} of its patch pixels are black, {d.band_share:.0%} of them in "
                      f"full-height or full-width black bands inside the music (the shape of the training "
                      f"augmentation's bands: an augmentation band, a zeroed frequency band or a gap), not a sound",
        }
    return {
        "flag": "silence",
        "reason": f"{d.black_share:.0%} of its patch pixels are black: silence in the music, not a sound",
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
    """Whether a concept carries a not-music flag (above Nyquist, padding, augmentation band, silence)."""
    return any(f.get("flag") in DARK_FLAGS for f in concept_flags)
