"""Where the concepts lie in a song that concept discovery has never seen.

A concept is a cluster of patch activations found in a few discovery songs. To find it
in a new song, the song goes through exactly the discovery path:

1. SLIC segments at the extraction's resolutions, with ACE's size and overlap rules
   (:func:`whypop.ace.segment.segment_masks`);
2. each segment made into a patch with the extraction's patch mode and fill value
   (:func:`whypop.ace.patches.make_patches`);
3. the patch's activation at the extraction's layer, reduced to the feature k-means
   clustered: the spatial mean for ``faithful`` patches, the mask-weighted mean for
   ``inplace`` ones (:mod:`whypop.ace.activations`).

**The placement rule.** Each concept has a centre (the mean feature of its members,
which is its k-means centre) and a radius calibrated on its own members: the
``quantile`` (default 0.9) of their distances to the centre (the smallest member
distance with at least that share of the members within it). A fixed radius would not
carry over between layers and models; the members' own spread does. A segment matches
a concept when its distance to the centre is at most the radius. Concepts of one genre
come from one clustering, in which every patch belongs to its nearest centre; so within
a genre a segment matches at most one concept, the one with the smallest distance in
units of its radius. Concepts of different genres come from separate clusterings, so a
segment may match one concept of each genre (its ``matches``); its ``concept_id`` is the
match with the smallest ratio overall, or ``None``.

Nothing here reads the run store: a :class:`ConceptBank` is built from member features
by the stage that reads the extraction (``pipelines.explain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from whypop.ace.activations import masked_means, spatial_means
from whypop.ace.patches import MODES, make_patches
from whypop.ace.segment import segment_masks

MIN_AREA = 0.001  # as whypop.ace.extractor: masks of at most 0.1% of the image are dropped
MAX_IOU = 0.5  # as whypop.ace.extractor: overlap allowed with an earlier resolution's mask
QUANTILE = 0.9  # a concept's radius: this quantile of its members' distances to its centre

Embed = Callable[[np.ndarray], np.ndarray]  # uint8 patches (P, S, S) -> activations (P, C, h, w)


@dataclass(frozen=True)
class SegmentParams:
    """How discovery segmented songs and made patches: the same values must place concepts."""

    segments: tuple[int, ...] = (10, 15, 25)
    compactness: float = 20.0
    sigma: float = 1.0
    patch_mode: str = "faithful"
    fill: float = 0.0
    image_size: int = 224
    min_area: float = MIN_AREA
    max_iou: float = MAX_IOU

    def __post_init__(self) -> None:
        if self.patch_mode not in MODES:
            raise ValueError(f"patch mode {self.patch_mode!r}: allowed are {', '.join(MODES)}")

    @classmethod
    def from_extract(cls, ex, fill: float, image_size: int) -> "SegmentParams":
        """From an :class:`~whypop.config.ExtractConfig` (or its stored dict) and the extraction's fill."""
        get = ex.get if isinstance(ex, dict) else (lambda k, d=None: getattr(ex, k, d))
        return cls(
            segments=tuple(int(s) for s in get("segments", (10, 15, 25))),
            compactness=float(get("compactness", 20.0)), sigma=float(get("sigma", 1.0)),
            patch_mode=str(get("patch_mode", "faithful")), fill=float(fill), image_size=int(image_size),
        )

    def to_dict(self) -> dict:
        return {"segments": list(self.segments), "compactness": self.compactness, "sigma": self.sigma,
                "patch_mode": self.patch_mode, "fill": self.fill, "image_size": self.image_size,
                "min_area": self.min_area, "max_iou": self.max_iou}

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentParams":
        return cls(**{**d, "segments": tuple(d["segments"])})


def fill_value(fill: float) -> np.uint8:
    """The uint8 pixel that a fill value becomes, exactly as in :func:`make_patches`."""
    return np.uint8(np.clip(round(float(fill)), 0, 255))


def fill_masks(image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray], fill: float) -> np.ndarray:
    """A copy of a uint8 image (H, W) with the union of ``masks`` (M, H, W) set to the fill value."""
    out = np.array(image, dtype=np.uint8, copy=True)
    masks = np.asarray(masks, dtype=bool)
    if masks.size:
        out[masks.reshape(-1, *out.shape).any(axis=0)] = fill_value(fill)
    return out


def segment(image: np.ndarray, params: SegmentParams) -> np.ndarray:
    """The song's segments (P, H, W) as discovery makes them."""
    return segment_masks(image, params.segments, params.compactness, params.sigma, params.min_area, params.max_iou)


def patch_features(image: np.ndarray, masks: np.ndarray, params: SegmentParams, embed: Embed) -> np.ndarray:
    """Per segment, the feature (P, C) that discovery clustered: patches, activations, reduction."""
    masks = np.asarray(masks, dtype=bool)
    if len(masks) == 0:
        return np.zeros((0, 0), np.float32)
    patches = make_patches(np.asarray(image, np.uint8), masks, params.fill, params.patch_mode, params.image_size)
    acts = np.asarray(embed(patches), dtype=np.float32)
    if params.patch_mode == "inplace":
        return masked_means(acts, masks)
    return spatial_means(acts)


@dataclass
class ConceptBank:
    """Every concept of an extraction, in feature space: centres and calibrated radii.

    ``members[k]`` are concept k's member features (M_k, C); ``centres`` (K, C) their
    means; ``thresholds`` (K,) the ``quantile`` of the members' distances to the centre.
    ``mean_cavs`` (K, D), when given, are the concepts' mean CAVs (for influence).
    """

    concept_ids: np.ndarray  # (K,) int64
    genres: list[str]
    centres: np.ndarray  # (K, C) float32
    thresholds: np.ndarray  # (K,) float64
    member_distances: list[np.ndarray] = field(default_factory=list)  # per concept, sorted ascending
    mean_cavs: np.ndarray | None = None  # (K, D)
    quantile: float = QUANTILE

    def __len__(self) -> int:
        return len(self.concept_ids)

    @classmethod
    def from_members(
        cls, concept_ids: Sequence[int], genres: Sequence[str], members: Sequence[np.ndarray],
        quantile: float = QUANTILE, mean_cavs: np.ndarray | None = None,
    ) -> "ConceptBank":
        if not len(concept_ids) == len(genres) == len(members):
            raise ValueError("concept_ids, genres and members must have one entry per concept")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile {quantile}: must be in (0, 1]")
        centres, thresholds, dists = [], [], []
        for k, m in enumerate(members):
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2 or len(m) == 0:
                raise ValueError(f"concept {concept_ids[k]}: members must be a non-empty (M, C) array")
            c = m.mean(axis=0)
            d = np.sort(np.linalg.norm(m - c, axis=1))
            centres.append(c)
            dists.append(d)
            thresholds.append(float(np.quantile(d, quantile, method="higher")))  # >= quantile of members within
        width = centres[0].shape[0] if centres else 0
        return cls(
            concept_ids=np.asarray(concept_ids, dtype=np.int64), genres=[str(g) for g in genres],
            centres=np.asarray(centres, dtype=np.float32).reshape(len(centres), width),
            thresholds=np.asarray(thresholds, dtype=np.float64), member_distances=dists,
            mean_cavs=None if mean_cavs is None else np.asarray(mean_cavs, dtype=np.float32), quantile=float(quantile),
        )

    def index(self, concept_id: int) -> int:
        hits = np.flatnonzero(self.concept_ids == int(concept_id))
        if not len(hits):
            raise KeyError(f"concept {concept_id} is not in the bank")
        return int(hits[0])

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Euclidean distances (P, K) of features (P, C) to every centre."""
        f = np.asarray(features, dtype=np.float64)
        if f.size == 0 or len(self) == 0:
            return np.zeros((len(f), len(self)))
        c = self.centres.astype(np.float64)
        sq = (f**2).sum(1)[:, None] + (c**2).sum(1)[None, :] - 2.0 * f @ c.T
        return np.sqrt(np.maximum(sq, 0.0))

    def member_share_within(self, k: int, distance: float) -> float:
        """Share of concept k's members at most ``distance`` from its centre (how typical a match is)."""
        d = self.member_distances[k] if self.member_distances else np.zeros(0)
        return float(np.searchsorted(d, distance, side="right") / len(d)) if len(d) else float("nan")

    # -- one file round trip (a cache of the bank) ------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(d) for d in self.member_distances], dtype=np.int64)
        arrays = {
            "concept_ids": self.concept_ids, "genres": np.array(self.genres, dtype=str), "centres": self.centres,
            "thresholds": self.thresholds, "quantile": np.array(self.quantile),
            "distance_lengths": lengths,
            "distances": np.concatenate(self.member_distances) if self.member_distances else np.zeros(0),
        }
        if self.mean_cavs is not None:
            arrays["mean_cavs"] = self.mean_cavs
        tmp = path.with_name(".tmp-" + path.name)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ConceptBank":
        with np.load(path, allow_pickle=False) as d:
            splits = np.cumsum(d["distance_lengths"])[:-1]
            return cls(
                concept_ids=d["concept_ids"].astype(np.int64), genres=[str(g) for g in d["genres"]],
                centres=d["centres"].astype(np.float32), thresholds=d["thresholds"].astype(np.float64),
                member_distances=list(np.split(d["distances"], splits)) if len(d["distance_lengths"]) else [],
                mean_cavs=d["mean_cavs"] if "mean_cavs" in d.files else None, quantile=float(d["quantile"]),
            )


@dataclass(frozen=True)
class Match:
    """A segment within a concept's radius."""

    concept_id: int
    genre: str
    distance: float  # to the concept's centre
    threshold: float  # the concept's radius
    typicality: float  # share of the concept's own members at most this far from the centre

    @property
    def ratio(self) -> float:
        return self.distance / self.threshold if self.threshold > 0 else float("inf")

    def to_dict(self) -> dict:
        return {"concept_id": self.concept_id, "genre": self.genre, "distance": round(self.distance, 6),
                "threshold": round(self.threshold, 6), "typicality": round(self.typicality, 4)}


@dataclass(frozen=True)
class Placement:
    """One segment of the song: its mask, its nearest concept, and every concept it matches."""

    segment: int  # index among the song's segments
    mask: np.ndarray  # (H, W) bool
    concept_id: int | None  # the best match (smallest distance / radius), or None
    genre: str | None
    distance: float  # to the nearest centre (of the best match, or of the nearest concept when none)
    nearest_concept_id: int | None  # nearest in units of radius, matched or not
    matches: tuple[Match, ...] = ()  # at most one per genre, best first

    def to_dict(self) -> dict:
        """JSON-ready (the mask as its bounding box and area; masks travel as arrays)."""
        from whypop.ace.patches import mask_bbox

        x0, y0, x1, y1 = mask_bbox(self.mask) if self.mask.any() else (0, 0, 0, 0)
        return {"segment": self.segment, "concept_id": self.concept_id, "genre": self.genre,
                "distance": round(self.distance, 6), "nearest_concept_id": self.nearest_concept_id,
                "bbox": [x0, y0, x1, y1], "area": int(self.mask.sum()), "matches": [m.to_dict() for m in self.matches]}


def assign(features: np.ndarray, bank: ConceptBank) -> list[tuple[int | None, float, int | None, tuple[Match, ...]]]:
    """The placement rule on features (P, C): per segment (best, distance, nearest, matches)."""
    dist = bank.distances(features)  # (P, K)
    ratio = dist / np.where(bank.thresholds > 0, bank.thresholds, np.inf)[None, :]
    genres = np.array(bank.genres)
    out = []
    for p in range(len(dist)):
        matches = []
        for g in dict.fromkeys(bank.genres):
            ks = np.flatnonzero(genres == g)
            k = int(ks[np.argmin(ratio[p, ks])])
            if ratio[p, k] <= 1.0:
                d = float(dist[p, k])
                matches.append(Match(int(bank.concept_ids[k]), g, d, float(bank.thresholds[k]),
                                     bank.member_share_within(k, d)))
        matches.sort(key=lambda m: (m.ratio, m.concept_id))
        nearest = int(np.argmin(ratio[p])) if len(bank) else None
        if matches:
            best = matches[0]
            out.append((best.concept_id, best.distance, best.concept_id, tuple(matches)))
        else:
            out.append((None, float(dist[p, nearest]) if nearest is not None else float("nan"),
                        None if nearest is None else int(bank.concept_ids[nearest]), ()))
    return out


def place_concepts(
    image: np.ndarray, bank: ConceptBank, embed: Embed, params: SegmentParams, masks: np.ndarray | None = None,
) -> list[Placement]:
    """Segment a uint8 spectrogram (H, W) as discovery does and place the bank's concepts on it.

    ``embed`` maps uint8 patches (P, S, S) to activations (P, C, h, w) at the
    extraction's layer (e.g. :meth:`whypop.ace.activations.LayerProbe.activations`);
    ``masks`` skips the segmentation when the segments are known.
    """
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 2:
        raise ValueError(f"expected a grayscale spectrogram (H, W), got shape {image.shape}")
    masks = segment(image, params) if masks is None else np.asarray(masks, dtype=bool)
    features = patch_features(image, masks, params, embed)
    return [
        Placement(i, masks[i], best, None if best is None else bank.genres[bank.index(best)], d, nearest, matches)
        for i, (best, d, nearest, matches) in enumerate(assign(features, bank))
    ]


def concept_masks(placements: Sequence[Placement], concept_id: int) -> np.ndarray:
    """The masks (M, H, W) of the segments that match a concept (any of a segment's matches)."""
    masks = [p.mask for p in placements if any(m.concept_id == concept_id for m in p.matches)]
    if not masks:
        shape = placements[0].mask.shape if placements else (0, 0)
        return np.zeros((0, *shape), dtype=bool)
    return np.stack(masks)


def present_concepts(placements: Sequence[Placement]) -> list[int]:
    """Ids of every concept some segment matches, in first-seen order."""
    seen: dict[int, None] = {}
    for p in placements:
        for m in p.matches:
            seen.setdefault(m.concept_id, None)
    return list(seen)
