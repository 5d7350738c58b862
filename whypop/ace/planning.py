"""Which spectrograms ACE uses: discovery and score images per genre, and the random sets.

Pure planning: track records in (id, genre, split), a typed :class:`ImagePlan` out. No
store, no model, no files. The extraction stage loads the tracks, calls
:func:`plan_images` and then loads and writes what the plan names.

Protocol (every choice seeded by ``seed``):

- **Images.** Per genre, its tracks of the image splits in a seeded order: the first
  ``discovery`` are segmented into concepts, the next ``score`` give the TCAV scores
  (disjoint, as in the ACE reference).
- **Random sets.** A pool of every genre's random-split tracks minus the discovery and
  score images of every genre; from it ``experiments + 1`` sets of ``set_size`` are
  drawn (without replacement within a set). Set 0 is the null concept, disjoint from
  the experiment sets 1..R (which may overlap each other). The sets do not depend on
  which genres are extracted.

**Small collections are planned, not refused.** When a genre holds fewer images than
``discovery + score``, or the pool fewer than ``2 x set_size``, the sizes are scaled
down instead:

1. the pool comes first: when the tracks outside every genre's images cannot fill two
   random sets, tracks that are both image and random candidates are set aside for the
   pool, one genre at a time in turn (from the end of each genre's order), as long as
   the genre keeps ``MIN_DISCOVERY + MIN_SCORE`` images;
2. each genre's remaining images are split between discovery and score, half each
   (rounded in favour of discovery), neither above what was asked;
3. the random set size becomes at most half the pool.

Discovery and score images stay disjoint, and the pool disjoint from both. Below the
floors (``MIN_DISCOVERY`` discovery and ``MIN_SCORE`` score images for a genre being
extracted, ``MIN_SET_SIZE`` spectrograms in a random set) the result means nothing and
:func:`plan_images` raises an :class:`~whypop.errors.InputError` naming the floor.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Iterable, Protocol, Sequence

import numpy as np

from whypop.errors import InputError

SPLITS = {"heldout": ("validation", "test"), "training": ("training",), "all": ("training", "validation", "test")}
MIN_DISCOVERY = 2  # fewer discovery images cannot make a concept recur across songs
MIN_SCORE = 2  # one score song gives TCAV scores of 0 or 1 only
MIN_SET_SIZE = 4  # a CAV against fewer random spectrograms is noise


class TrackRecord(Protocol):
    track_id: str
    genre: str
    split: str


@dataclass(frozen=True)
class Request:
    """What the configuration asks for (``extract.*``)."""

    discovery: int
    score: int
    set_size: int
    experiments: int
    image_split: str = "heldout"
    random_split: str = "training"
    seed: int = 0

    @classmethod
    def from_config(cls, ex) -> "Request":
        return cls(ex.discovery_images, ex.score_images, ex.random_set_size, ex.random_experiments,
                   ex.image_split, ex.random_split, ex.seed)


@dataclass
class GenrePlan:
    discovery: list[str]
    score: list[str]


@dataclass
class ImagePlan:
    """The images of every genre of the model and the random sets; see the module docstring."""

    request: Request
    genres: dict[str, GenrePlan]  # every genre of the model, in its order
    pool: list[str]
    sets: list[list[str]]  # R + 1 sets; set 0 is the null concept
    set_size: int
    scaled: bool = False
    reserved: dict[str, int] = field(default_factory=dict)  # per genre: image candidates set aside for the pool

    def score_songs(self, genre: str) -> int:
        return len(self.genres[genre].score)

    def describe(self, genres: Sequence[str] | None = None, min_songs: int = 0) -> str:
        """One line: what the extraction uses and what that means."""
        genres = list(genres or self.genres)
        r = self.request
        n_score = sorted({len(self.genres[g].score) for g in genres})
        n_disc = sorted({len(self.genres[g].discovery) for g in genres})
        songs = _span(n_score)
        step = Fraction(1, n_score[0]) if n_score and n_score[0] else None
        line = (f"TCAV from {songs} song{'s' if n_score != [1] else ''} per genre"
                + (f": scores move in steps of {step}" if step is not None and step != 1 else ""))
        if not self.scaled:
            line += (f" ({_span(n_disc)} discovery, {self.set_size} per random set from a pool of "
                     f"{len(self.pool)})")
        else:
            line += (f"; scaled to the collection: {_span(n_disc)} discovery + {songs} score songs per genre "
                     f"(asked {r.discovery} + {r.score}), random sets of {self.set_size} (asked {r.set_size}) "
                     f"from a pool of {len(self.pool)}, all disjoint")
        if min_songs and n_score and n_score[0] < min_songs:
            line += (f"; significance needs at least {min_songs} score songs, so genres with fewer report "
                     f"no significant concept")
        return line

    def to_dict(self) -> dict:
        return {
            "request": asdict(self.request),
            "genres": {g: {"discovery": list(p.discovery), "score": list(p.score)} for g, p in self.genres.items()},
            "pool": list(self.pool), "sets": [list(s) for s in self.sets], "set_size": self.set_size,
            "scaled": self.scaled, "reserved": dict(self.reserved),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ImagePlan":
        return cls(Request(**d["request"]), {g: GenrePlan(list(p["discovery"]), list(p["score"]))
                                             for g, p in d["genres"].items()},
                   list(d["pool"]), [list(s) for s in d["sets"]], int(d["set_size"]), bool(d.get("scaled")),
                   dict(d.get("reserved") or {}))


def _span(values: list[int]) -> str:
    if not values:
        return "0"
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def seeded_order(ids: Iterable[str], seed: int, salt: str) -> list[str]:
    """``ids`` sorted, then shuffled by a generator seeded with ``seed`` and ``salt``."""
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    ids = sorted(ids)
    return [ids[i] for i in rng.permutation(len(ids))]


def plan_images(tracks: Sequence[TrackRecord], model_genres: Sequence[str], request: Request,
                wanted: Sequence[str] | None = None) -> ImagePlan:
    """Choose every image of the extraction (see the module docstring); InputError below a floor."""
    r = request
    if r.image_split not in SPLITS or r.random_split not in SPLITS:
        raise InputError(f"extract.image_split={r.image_split!r} / random_split={r.random_split!r}: "
                         f"allowed are {', '.join(SPLITS)}")
    image_splits, random_splits = SPLITS[r.image_split], SPLITS[r.random_split]
    wanted = list(model_genres) if wanted is None else list(wanted)
    mine = [t for t in tracks if t.genre in set(model_genres)]
    ordered = {g: seeded_order([t.track_id for t in mine if t.genre == g and t.split in image_splits], r.seed, g)
               for g in model_genres}
    random_ok = {t.track_id for t in mine if t.split in random_splits}
    need = r.discovery + r.score
    image_ids = {tid for ids in ordered.values() for tid in ids}
    free = sorted(random_ok - image_ids)

    # 1. the pool first: set aside contested image candidates when the free ones are too few
    reserved: dict[str, list[str]] = {g: [] for g in model_genres}
    leftover = sum(len([t for t in ids[need:] if t in random_ok]) for ids in ordered.values())
    deficit = 2 * r.set_size - len(free) - leftover
    if deficit > 0:
        floor = MIN_DISCOVERY + MIN_SCORE
        candidates = {g: [t for t in reversed(ordered[g][:need]) if t in random_ok] for g in model_genres}
        while deficit > 0:
            moved = False
            for g in sorted(model_genres, key=lambda g: -len(ordered[g])):  # the largest genres give first
                kept = min(need, len(ordered[g])) - len(reserved[g])
                if deficit > 0 and candidates[g] and kept > floor:
                    reserved[g].append(candidates[g].pop(0))
                    deficit -= 1
                    moved = True
            if not moved:
                break

    # 2. each genre's images: discovery first, then score; halves when scaled
    genres: dict[str, GenrePlan] = {}
    used: set[str] = set()
    scaled = False
    for g in model_genres:
        aside = set(reserved[g])
        ids = [t for t in ordered[g] if t not in aside]
        n = min(need, len(ids))
        if n < need:
            scaled = True
            d = min(r.discovery, n - min(r.score, n // 2))
            s = min(r.score, n - d)
        else:
            d, s = r.discovery, r.score
        plan = GenrePlan(ids[:d], ids[d : d + s])
        if g in wanted and (len(plan.discovery) < MIN_DISCOVERY or len(plan.score) < MIN_SCORE):
            raise InputError(
                f"genre {g} has {len(ordered[g])} prepared {'/'.join(image_splits)} spectrograms"
                + (f" ({len(aside)} of them set aside for the random pool)" if aside else "")
                + f": at least {MIN_DISCOVERY} discovery + {MIN_SCORE} score images are needed for a TCAV score "
                  f"that means anything (one score song gives only 0 or 1); prepare more clips of {g}"
                + ("" if r.image_split == "all" else ", or set extract.image_split = \"all\"")
            )
        genres[g] = plan
        used.update(plan.discovery)
        used.update(plan.score)

    # 3. the pool and its sets
    pool = sorted(tid for tid in random_ok if tid not in used)
    set_size = min(r.set_size, len(pool) // 2)
    if set_size < r.set_size:
        scaled = True
    if set_size < MIN_SET_SIZE:
        raise InputError(
            f"the random pool ({'/'.join(random_splits)} tracks of every genre, minus discovery and score images) "
            f"holds {len(pool)} spectrograms: random sets of at least {MIN_SET_SIZE} are needed, and the null set "
            f"is disjoint from the others, so at least {2 * MIN_SET_SIZE}; prepare more clips"
            + ("" if r.random_split == "all" else ", or set extract.random_split = \"all\"")
        )
    rng = np.random.default_rng([r.seed, zlib.crc32(b"random sets")])
    null = [int(i) for i in rng.choice(len(pool), set_size, replace=False)]
    rest = np.setdiff1d(np.arange(len(pool)), null)
    sets = [[pool[i] for i in null]] + [[pool[i] for i in rng.choice(rest, set_size, replace=False)]
                                        for _ in range(r.experiments)]
    return ImagePlan(r, genres, pool, sets, set_size, scaled, {g: len(v) for g, v in reserved.items() if v})


def min_score_songs(alpha: float) -> int:
    """The fewest score songs with which a concept can be significant at level ``alpha``.

    A TCAV score counts the score songs a concept pushes up. Whatever the number of
    random experiments (they resample random sets, not songs), the songs are the sample:
    with n songs the most extreme result, all n one way, has a two-sided sign-test
    p-value of 2 x 0.5**n, so below the smallest n with 2 x 0.5**n <= alpha no outcome
    can be significant (8 songs at 0.01, 6 at 0.05).
    """
    return max(1, math.ceil(math.log2(2.0 / alpha) - 1e-12))


def required_score_songs(alpha: float, setting: int = -1) -> int:
    """``extract.min_score_songs``: -1 derives it from the level (:func:`min_score_songs`), 0 turns it off."""
    return min_score_songs(alpha) if setting < 0 else int(setting)
