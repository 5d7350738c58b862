"""Do the concepts survive a change of seed? Matching concepts across extractions.

TCAV results move with the random sets and the seeds (captum#909). Discovery is run
with several seeds (different discovery and score songs, random sets, k-means and CAV
fits); the concepts of each genre in the first run (the reference) are matched to the
concepts of the same genre in every other run by the best cosine of their mean CAVs.

Reported per genre and other seed: the mean best-match cosine of the reference's
significant concepts, and the share of them with a match above ``MATCH`` (0.8). On the
demo, whether the genre's planted signature is found under every seed: the seed's top
concept overlaps the planted signature more than ``PLANTED_FACTOR`` times chance (the
demo's ground-truth check), and how well the reference top concept matches there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from whypop.results import FlatRecord

FILE = "stability.json"  # beside the reference extraction's arrays
MATCH = 0.8
PLANTED_FACTOR = 3.0


@dataclass
class Run:
    """What stability reads of one extraction."""

    extraction_id: int
    seed: int
    concept_ids: np.ndarray  # (K,)
    genres: list[str]  # (K,) genre of each concept
    significant: np.ndarray  # (K,) bool
    mean_cavs: np.ndarray  # (K, D)
    top: dict[str, int | None]  # genre -> top concept id
    planted: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # genre -> (overlap, chance)


@dataclass
class GenreStability(FlatRecord):
    genre: str
    significant: int  # significant concepts in the reference run
    best_cosine: list[float | None]  # per other seed: mean best-match cosine of those concepts
    matched_share: list[float | None]  # per other seed: share with a best match above MATCH
    top_cosine: list[float | None]  # per other seed: best match of the reference's top concept
    planted_found: list[bool] | None = None  # per seed (reference first); None without ground truth
    planted_overlap: list[float | None] | None = None


@dataclass
class Stability:
    seeds: list[int]
    extraction_ids: list[int]  # reference first
    genres: dict[str, GenreStability]
    match: float = MATCH

    @property
    def best_cosine(self) -> float | None:
        vals = [v for g in self.genres.values() for v in g.best_cosine if v is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    @property
    def matched_share(self) -> float | None:
        vals = [v for g in self.genres.values() for v in g.matched_share if v is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    @property
    def planted_everywhere(self) -> bool | None:
        found = [g.planted_found for g in self.genres.values() if g.planted_found is not None]
        return None if not found else all(all(f) for f in found)

    def to_dict(self) -> dict:
        return {"seeds": self.seeds, "extraction_ids": self.extraction_ids, "match": self.match,
                "best_cosine": self.best_cosine, "matched_share": self.matched_share,
                "planted_everywhere": self.planted_everywhere,
                "genres": {g: s.to_dict() for g, s in self.genres.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Stability":
        return cls([int(s) for s in d["seeds"]], [int(e) for e in d["extraction_ids"]],
                   {g: GenreStability.from_dict(s) for g, s in d["genres"].items()}, float(d.get("match", MATCH)))


def best_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ka,) for each row of ``a`` the largest cosine with a row of ``b`` (NaN when ``b`` is empty)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0:
        return np.zeros(0)
    if len(b) == 0:
        return np.full(len(a), np.nan)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (an @ bn.T).max(axis=1)


def _r(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def compare(runs: Sequence[Run], match: float = MATCH) -> Stability:
    """Match every other run's concepts to the first run's, genre by genre."""
    if len(runs) < 2:
        raise ValueError("stability needs at least two runs")
    ref, others = runs[0], runs[1:]
    genres = list(dict.fromkeys(ref.genres))
    out: dict[str, GenreStability] = {}
    for g in genres:
        mine = np.array([x == g for x in ref.genres])
        sig = mine & np.asarray(ref.significant, bool)
        best, share, top_cos = [], [], []
        for o in others:
            theirs = np.array([x == g for x in o.genres], dtype=bool)
            cos = best_match(ref.mean_cavs[sig], o.mean_cavs[theirs]) if theirs.size else np.full(int(sig.sum()), np.nan)
            best.append(_r(np.mean(cos)) if len(cos) and np.isfinite(cos).all() else None)
            share.append(_r(np.mean(cos > match)) if len(cos) and np.isfinite(cos).all() else None)
            t = ref.top.get(g)
            if t is None or not theirs.any():
                top_cos.append(None)
            else:
                row = ref.mean_cavs[np.flatnonzero(ref.concept_ids == t)]
                top_cos.append(_r(best_match(row, o.mean_cavs[theirs])[0]) if len(row) else None)
        found = overlap = None
        if all(r.planted.get(g, (None, None))[1] is not None for r in runs):
            overlap = [_r(r.planted[g][0]) if r.planted[g][0] is not None else None for r in runs]
            found = [bool(r.planted[g][0] is not None and r.planted[g][0] > PLANTED_FACTOR * r.planted[g][1])
                     for r in runs]
        out[g] = GenreStability(g, int(sig.sum()), best, share, top_cos, found, overlap)
    return Stability([r.seed for r in runs], [r.extraction_id for r in runs], out, match)


def load_file(directory: str | Path) -> Stability | None:
    """The matching stored in a reference extraction's directory, or None."""
    path = Path(directory) / FILE
    return Stability.from_dict(json.loads(path.read_text())) if path.is_file() else None
