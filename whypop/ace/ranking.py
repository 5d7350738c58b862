"""Which concept of a genre matters most: the top-concept rule.

Candidates are the significant concepts that push the class up: mean TCAV score above
0.5 and above the random null's mean (the test is two-sided, and a concept scoring 0.55
against a null of 0.9 is significant for being *less* important than a random
direction). The sign-count score saturates (many concepts score 1.0 once the score
images' gradients agree), so candidates are ranked by the TCAV magnitude, the mean
directional derivative along their CAVs: how strongly they raise the class logit.
Concepts flagged as silence or augmentation bands are left out unless ``exclude_dark``
is false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Candidate:
    """What the rule reads of one concept."""

    significant: bool
    tcav_mean: float
    magnitude: float
    dark: bool = False  # flagged silence / augmentation band


def top_concept(candidates: Sequence[Candidate], null_mean: float, exclude_dark: bool = True) -> int | None:
    """Index (into ``candidates``) of the genre's most important concept, or None."""
    best = None
    for i, c in enumerate(candidates):
        if not c.significant or c.tcav_mean <= max(0.5, null_mean):
            continue
        if exclude_dark and c.dark:
            continue
        if best is None or c.magnitude > candidates[best].magnitude:
            best = i
    return best
