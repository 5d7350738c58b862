"""Are the concepts true to the model? Deletion and insertion tests on held-out songs.

ACE validates concepts by editing the input (Ghorbani et al. 2019: the smallest
destroying and the smallest sufficient concept sets); RISE (Petsiuk et al. 2018) made
the deletion and insertion curves standard. Here, for one genre:

- **Deletion.** In every held-out song, the regions of the top-k concepts (ranked by
  TCAV) are filled with the fill value (the training mean, as patches are filled), for
  k = 1..``max_k``; the mean class probability and the accuracy after each step.
- **Insertion.** Only the top-k concepts' regions are kept, on a background of the
  fill value.
- **Baselines.** The same for random regions of the same area (``random``: in each song,
  random segments of that song's own segmentation outside the top-k regions, added in a
  seeded random order while they bring the area closer to the top-k regions' area in
  that song; several draws), for ``k`` random concepts of the genre covering about the
  same area over all songs (``random_concepts``: each draw picks, among ``candidates``
  random k-sets of the other concepts, the one whose mean area is closest), and for the
  ``k`` lowest-ranked concepts (``bottom``); plus the songs untouched (``baseline``) and,
  for insertion, the songs with everything filled (``empty``).

  Why regions as the main baseline: a concept is placed only in the songs where it
  occurs, so k random concepts of the same *mean* area touch other songs, and the rare,
  small concepts that match a top concept's mean area are often important ones
  themselves. Random regions of the same song and area isolate what the concept adds
  over "some edit of that size there".
- **Per concept.** The drop in class probability when that concept alone is deleted,
  averaged over the songs where it was placed (the model-level check of each TCAV
  verdict).

The fill itself edits the image (filling a black band with a grey mean is a big change),
which is why random regions of the same area are the comparison, not "nothing removed"
alone. Arrays in, typed results out; this module knows nothing of the run store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.results import FlatRecord

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 (B, H, W) -> class probabilities (B, C)
FILE = "faithfulness.json"  # beside an extraction's arrays
MAX_K = 5
DRAWS = 5
CANDIDATES = 20
NOTHING_CHANGES = 0.02  # a concept whose deletion moves p(class) by less than this "changes nothing"


@dataclass
class Curve(FlatRecord):
    """One measure (class probability or accuracy) against k = 1..K for each concept order."""

    top: list[float]
    random: list[float]  # random regions of the same area in the same songs, mean over the draws
    bottom: list[float]
    baseline: float  # the songs untouched
    top_spread: list[float] = field(default_factory=list)  # std over songs
    random_spread: list[float] = field(default_factory=list)  # std over draws of the draw means
    bottom_spread: list[float] = field(default_factory=list)
    random_concepts: list[float] = field(default_factory=list)  # k random concepts of about the same mean area
    random_concepts_spread: list[float] = field(default_factory=list)
    empty: float | None = None  # insertion only: every region filled


@dataclass
class Test:
    """Deletion or insertion: probability and accuracy curves, and the areas edited."""

    probability: Curve
    accuracy: Curve
    area: dict[str, list[float]]  # top/random/bottom: mean share of the image in the regions, k = 1..K

    def to_dict(self) -> dict:
        """The probability lists at the top (``top``, ``random``, ``bottom``, ``baseline``), then the rest."""
        p = self.probability
        return {"top": p.top, "random": p.random, "bottom": p.bottom, "baseline": p.baseline,
                "random_concepts": p.random_concepts, "probability": p.to_dict(), "accuracy": self.accuracy.to_dict(), "area": self.area}

    @classmethod
    def from_dict(cls, d: dict) -> "Test":
        return cls(Curve.from_dict(d["probability"]), Curve.from_dict(d["accuracy"]), dict(d.get("area") or {}))


@dataclass
class ConceptEffect(FlatRecord):
    """What deleting one concept alone does to its genre's held-out songs."""

    concept_id: int
    rank: int  # 0 = top by TCAV
    songs: int  # held-out songs where the concept was placed
    area: float  # mean share of the image, over those songs
    drop: float | None  # mean p(class) untouched minus deleted, over those songs; None when placed nowhere
    changes_nothing: bool  # placed nowhere, or |drop| < NOTHING_CHANGES


@dataclass
class GenreFaithfulness:
    genre: str
    songs: int
    track_ids: list[str]
    ranking: list[int]  # concept ids, top first
    deletion: Test
    insertion: Test
    concepts: list[ConceptEffect]
    draws: int
    max_k: int

    def to_dict(self) -> dict:
        return {"genre": self.genre, "songs": self.songs, "track_ids": self.track_ids, "ranking": self.ranking,
                "deletion": self.deletion.to_dict(), "insertion": self.insertion.to_dict(),
                "accuracy": {"deletion": _lists(self.deletion.accuracy), "insertion": _lists(self.insertion.accuracy)},
                "concepts": [c.to_dict() for c in self.concepts], "draws": self.draws, "max_k": self.max_k}

    @classmethod
    def from_dict(cls, d: dict) -> "GenreFaithfulness":
        return cls(d["genre"], int(d["songs"]), list(d["track_ids"]), [int(c) for c in d["ranking"]],
                   Test.from_dict(d["deletion"]), Test.from_dict(d["insertion"]),
                   [ConceptEffect.from_dict(c) for c in d["concepts"]], int(d["draws"]), int(d["max_k"]))

    def verdict(self, k: int = 3) -> str:
        """One line: what deleting the top-k concepts does to accuracy, against random ones."""
        acc = self.deletion.accuracy
        if not acc.top:
            return f"{self.genre}: no concept to test"
        k = max(1, min(k, len(acc.top)))
        top = "top concept" if k == 1 else f"top {k} concepts"
        return (f"removing {self.genre}'s {top} takes its accuracy from {acc.baseline:.0%} to {acc.top[k - 1]:.0%}; "
                f"random regions of the same area: {acc.random[k - 1]:.0%} ({self.songs} held-out songs)")


def _lists(c: Curve) -> dict:
    return {"top": c.top, "random": c.random, "bottom": c.bottom, "baseline": c.baseline,
            "random_concepts": c.random_concepts}


def union_masks(regions: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """(N, H, W) union over the chosen concepts of each song's regions ``regions`` (N, K, H, W)."""
    if len(chosen) == 0:
        return np.zeros((regions.shape[0], *regions.shape[2:]), dtype=bool)
    return regions[:, list(chosen)].any(axis=1)


def delete(images: np.ndarray, masks: np.ndarray, fill: float) -> np.ndarray:
    """Images with the masked pixels set to the fill value."""
    value = np.uint8(np.clip(round(float(fill)), 0, 255))
    return np.where(masks, value, images).astype(np.uint8)


def insert(images: np.ndarray, masks: np.ndarray, fill: float) -> np.ndarray:
    """Images keeping only the masked pixels, the rest set to the fill value."""
    value = np.uint8(np.clip(round(float(fill)), 0, 255))
    return np.where(masks, images, value).astype(np.uint8)


def area_matched_sets(areas: np.ndarray, target: float, k: int, rng: np.random.Generator, candidates: int,
                      exclude: Sequence[int] = ()) -> list[int]:
    """k concepts drawn at random, the candidate set whose summed area is closest to ``target``.

    ``areas`` (K,) is each concept's mean share of the image over the songs. Concepts in
    ``exclude`` (the top-k) are avoided while enough others remain.
    """
    K = len(areas)
    pool = np.array([i for i in range(K) if i not in set(exclude)])
    if len(pool) < k:
        pool = np.arange(K)
    best, best_gap = None, np.inf
    for _ in range(max(1, candidates)):
        pick = rng.choice(pool, size=min(k, len(pool)), replace=False)
        gap = abs(float(areas[pick].sum()) - target)
        if gap < best_gap:
            best, best_gap = pick, gap
    return [int(i) for i in best]


def random_regions(segments: np.ndarray, avoid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) random segments of one song outside ``avoid``, of about the area of ``avoid``.

    ``segments`` (P, H, W) are the song's own segments; each is cut to its part outside
    ``avoid``; in a random order, a segment is added while it brings the union's area
    closer to ``avoid``'s area.
    """
    target = int(avoid.sum())
    out = np.zeros(avoid.shape, dtype=bool)
    if target == 0 or len(segments) == 0:
        return out
    area = 0
    for i in rng.permutation(len(segments)):
        piece = segments[i] & ~avoid & ~out
        add = int(piece.sum())
        if add and abs(area + add - target) < abs(area - target):
            out |= piece
            area += add
    return out


def evaluate_genre(
    genre: str,
    class_index: int,
    images: np.ndarray,
    regions: np.ndarray,
    ranking: Sequence[int],
    concept_ids: Sequence[int],
    fill: float,
    predict: Predict,
    *,
    track_ids: Sequence[str] | None = None,
    segments: Sequence[np.ndarray] | None = None,
    max_k: int = MAX_K,
    draws: int = DRAWS,
    candidates: int = CANDIDATES,
    seed: int = 0,
    batch_size: int = 64,
    progress: Progress = null_progress,
) -> GenreFaithfulness:
    """Deletion and insertion curves of one genre.

    ``images`` (N, H, W) uint8 are held-out songs of the genre; ``regions`` (N, K, H, W)
    bool each concept's placement in each song (empty where it is absent); ``ranking``
    the concept indices (into axis 1) ordered by TCAV, top first; ``concept_ids`` the
    ids of the K concepts; ``predict`` maps a uint8 batch to class probabilities;
    ``segments`` each song's own segments (P_n, H, W), the pool of the random regions
    (without them the songs' concept regions are the pool).
    """
    images = np.asarray(images, dtype=np.uint8)
    regions = np.asarray(regions, dtype=bool)
    N, K = regions.shape[:2]
    if images.shape[0] != N:
        raise ValueError(f"{N} songs of regions but {images.shape[0]} images")
    ranking = [int(r) for r in ranking]
    if sorted(ranking) != list(range(K)):
        raise ValueError("ranking must order every concept exactly once")
    kmax = min(max_k, K)
    rng = np.random.default_rng([int(seed), int(class_index)])
    concept_area = regions.reshape(N, K, -1).mean(axis=2).mean(axis=0) if N else np.zeros(K)  # (K,)

    if segments is None:
        segments = [regions[n] for n in range(N)]
    # every edit to evaluate: (name, k, draw, kind, masks (N, H, W))
    plans: list[tuple[str, int, int, str, np.ndarray]] = []
    for k in range(1, kmax + 1):
        top, bottom = ranking[:k], ranking[::-1][:k]
        top_masks = union_masks(regions, top)
        target = float(concept_area[top].sum())
        rand_c = [union_masks(regions, area_matched_sets(concept_area, target, k, rng, candidates, exclude=top))
                  for _ in range(draws)]
        rand_r = [np.stack([random_regions(np.asarray(segments[n], bool), top_masks[n], rng) for n in range(N)])
                  for _ in range(draws)]
        for kind in ("deletion", "insertion"):
            plans.append(("top", k, 0, kind, top_masks))
            plans.append(("bottom", k, 0, kind, union_masks(regions, bottom)))
            plans.extend(("random", k, d, kind, m) for d, m in enumerate(rand_r))
            plans.extend(("random_concepts", k, d, kind, m) for d, m in enumerate(rand_c))
    singles = list(range(K))

    total = (1 + 1 + len(plans) + len(singles)) * N
    done = 0
    probs: dict[tuple, np.ndarray] = {}
    areas: dict[tuple, float] = {}

    def run(key: tuple, edited: np.ndarray) -> None:
        nonlocal done
        out = np.concatenate([np.asarray(predict(edited[i : i + batch_size])) for i in range(0, len(edited), batch_size)]) \
            if len(edited) else np.zeros((0, class_index + 1))
        probs[key] = out
        done += len(edited)
        progress(ProgressEvent("evaluate", "deletion and insertion", done, total, genre))

    run(("baseline",), images)
    run(("empty",), insert(images, np.zeros_like(images, dtype=bool), fill))
    for name, k, d, kind, masks in plans:
        areas[(name, k, d, kind)] = float(masks.mean()) if N else 0.0
        run((name, k, d, kind), (delete if kind == "deletion" else insert)(images, masks, fill))
    for ci in singles:
        run(("single", ci), delete(images, regions[:, ci], fill))

    def p(key):
        return probs[key][:, class_index] if len(probs[key]) else np.zeros(0)

    def acc(key):
        return (probs[key].argmax(axis=1) == class_index).astype(float) if len(probs[key]) else np.zeros(0)

    def mean(x) -> float:
        return float(np.mean(x)) if len(x) else float("nan")

    def std(x) -> float:
        return float(np.std(x)) if len(x) else float("nan")

    def test(kind: str) -> Test:
        curves = []
        for measure in (p, acc):
            top = [mean(measure(("top", k, 0, kind))) for k in range(1, kmax + 1)]
            bottom = [mean(measure(("bottom", k, 0, kind))) for k in range(1, kmax + 1)]
            rmeans = [[mean(measure(("random", k, d, kind))) for d in range(draws)] for k in range(1, kmax + 1)]
            cmeans = [[mean(measure(("random_concepts", k, d, kind))) for d in range(draws)] for k in range(1, kmax + 1)]
            curves.append(Curve(
                top=_r(top), random=_r([float(np.mean(r)) for r in rmeans]), bottom=_r(bottom),
                baseline=_r1(mean(measure(("baseline",)))),
                top_spread=_r([std(measure(("top", k, 0, kind))) for k in range(1, kmax + 1)]),
                random_spread=_r([float(np.std(r)) for r in rmeans]),
                bottom_spread=_r([std(measure(("bottom", k, 0, kind))) for k in range(1, kmax + 1)]),
                empty=_r1(mean(measure(("empty",)))) if kind == "insertion" else None,
                random_concepts=_r([float(np.mean(r)) for r in cmeans]),
                random_concepts_spread=_r([float(np.std(r)) for r in cmeans]),
            ))
        area = {name: _r([float(np.mean([areas[(name, k, d, kind)] for d in range(draws if name.startswith("random") else 1)]))
                          for k in range(1, kmax + 1)]) for name in ("top", "random", "bottom", "random_concepts")}
        return Test(curves[0], curves[1], area)

    base = p(("baseline",))
    effects = []
    rank_of = {ci: r for r, ci in enumerate(ranking)}
    for ci in singles:
        present = regions[:, ci].reshape(N, -1).any(axis=1)
        n = int(present.sum())
        drop = float(np.mean(base[present] - p(("single", ci))[present])) if n else None
        area = float(regions[present, ci].reshape(n, -1).mean()) if n else 0.0
        effects.append(ConceptEffect(int(concept_ids[ci]), rank_of[ci], n, round(area, 4),
                                     None if drop is None else round(drop, 4),
                                     drop is None or abs(drop) < NOTHING_CHANGES))
    return GenreFaithfulness(genre, N, list(track_ids or [str(i) for i in range(N)]),
                             [int(concept_ids[i]) for i in ranking], test("deletion"), test("insertion"),
                             effects, draws, kmax)


def _r1(x: float) -> float:
    return round(float(x), 4) if np.isfinite(x) else float("nan")


def _r(xs) -> list[float]:
    return [_r1(x) for x in xs]


@dataclass
class Faithfulness:
    """The deletion and insertion tests of every genre of one extraction."""

    extraction_id: int
    fill: float
    songs: str  # which songs were used, in words
    genres: dict[str, GenreFaithfulness]
    timings: dict[str, float] = field(default_factory=dict)
    forward_images: int = 0  # edited images passed through the model

    def to_dict(self) -> dict:
        return {"extraction_id": self.extraction_id, "fill": self.fill, "songs": self.songs,
                "genres": {g: r.to_dict() for g, r in self.genres.items()}, "timings": self.timings,
                "forward_images": self.forward_images,
                "nothing_changes": NOTHING_CHANGES}

    @classmethod
    def from_dict(cls, d: dict) -> "Faithfulness":
        return cls(int(d["extraction_id"]), float(d["fill"]), d.get("songs", ""),
                   {g: GenreFaithfulness.from_dict(r) for g, r in d["genres"].items()},
                   dict(d.get("timings") or {}), int(d.get("forward_images", 0)))


def load_file(directory: str | Path) -> Faithfulness | None:
    """The faithfulness stored in an extraction's directory, or None when it was not tested."""
    path = Path(directory) / FILE
    return Faithfulness.from_dict(json.loads(path.read_text())) if path.is_file() else None
