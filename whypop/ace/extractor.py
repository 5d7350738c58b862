"""ACE for one model and layer: random sets once, then one genre at a time.

``ConceptExtractor(probe, cfg, fill, cache).fit_random(random_sets)`` computes the
random sets' activations once (shared by every genre); ``fit_genre(images)`` runs
ACE for one genre and returns a :class:`GenreResult`. Nothing of a genre is kept once
its result is returned except what the result holds (mean CAVs, masks, a few rendered
patches), so memory does not grow with the number of genres.

Per genre: SLIC segments of each discovery spectrogram -> patches -> activations at
the layer (cached) -> k-means on their spatial means and ACE's filter -> CAVs of each
concept (its closest ``max_concept_patches`` members) against every random set, and
of the null concept (random set 0) against every other random set -> TCAV scores
from the genre's gradients (computed once) -> paired t-test against the null, with a
multiple-testing correction over the genre's concepts.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from whypop.ace import cav as cavs_mod
from whypop.ace import flags, stats
from whypop.ace.activations import ActivationCache, LayerProbe, digest, flat_rows, masked_means, spatial_means
from whypop.ace.cluster import Concept, discover_concepts
from whypop.ace.patches import make_patches
from whypop.ace.planning import required_score_songs
from whypop.ace.segment import segment_masks
from whypop.ace.tcav import sign_count
from whypop.config import ExtractConfig
from whypop.progress import Progress, ProgressEvent, null_progress

log = logging.getLogger(__name__)

STAGE = "extract"  # the stage named in the progress events
MIN_AREA = 0.001  # ACE: masks of at most 0.1% of the image are dropped
MAX_IOU = 0.5  # ACE: a mask overlapping an earlier resolution's mask more than this is dropped


@dataclass
class GenreImages:
    """The spectrograms ACE uses for one genre (uint8, (N, H, W))."""

    genre: str
    class_index: int  # the genre's output of the model
    discovery_ids: list[str]
    discovery: np.ndarray
    score_ids: list[str]
    score: np.ndarray
    discovery_empty: np.ndarray | None = None  # (N, H, W) uint8 empty-region maps (whypop.geometry.empty_regions)


@dataclass
class RandomSets:
    """Random spectrograms and the sets drawn from them; ``sets[0]`` is the null concept."""

    track_ids: list[str]
    images: np.ndarray  # (U, H, W) uint8, each image once
    sets: list[np.ndarray]  # R + 1 index arrays into ``images``

    @property
    def experiments(self) -> int:
        return len(self.sets) - 1


@dataclass
class GenreResult:
    genre: str
    masks: list[np.ndarray]  # per discovery image, its segments (P_i, H, W)
    patch_image: np.ndarray  # (N,) discovery image of each patch
    patch_segment: np.ndarray  # (N,) index of the patch's mask within its image
    concepts: list[Concept]
    tcav: np.ndarray  # (K, R) one score per random experiment
    null: np.ndarray  # (R,) random-vs-random scores
    p_values: np.ndarray  # (K,)
    significant: np.ndarray  # (K,) after the correction
    mean_cavs: np.ndarray  # (K, D)
    accuracy: np.ndarray  # (K,) mean held-out accuracy of the concept's CAVs
    magnitude: np.ndarray  # (K,) mean directional derivative (breaks ties of the sign count)
    null_accuracy: float
    darkness: list[flags.Darkness]
    renders: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (concept, rank) -> patch


class ConceptExtractor:
    """ACE with TCAV for one model and layer.

    ``probe`` gives activations and gradients; ``fill`` is the pixel value outside a
    segment (the training set's mean); ``cache`` stores activations on disk;
    ``progress`` receives :class:`~whypop.progress.ProgressEvent` values of stage ``"extract"``; ``check()`` raises to cancel.
    """

    def __init__(
        self,
        probe: LayerProbe,
        cfg: ExtractConfig,
        fill: float,
        image_size: int,
        cache: ActivationCache | None = None,
        weights_key: str = "",
        progress: Progress = null_progress,
        check: Callable[[], None] | None = None,
        render: int = 10,
        band_width: int | None = None,
    ):
        self.probe = probe
        self.cfg = cfg
        self.fill = float(fill)
        self.image_size = int(image_size)
        self.cache = cache or ActivationCache(None)
        self.weights_key = weights_key
        self.progress = progress
        self.check = check or (lambda: None)
        self.render = int(render)
        self.band_width = band_width  # widest black band flagged as an augmentation band (pixels)
        self.timings_: dict[str, float] = {}
        self.random_: RandomSets | None = None
        self._random_acts: np.ndarray | None = None

    # -- helpers --------------------------------------------------------------------------
    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_[stage] = self.timings_.get(stage, 0.0) + time.perf_counter() - start

    def _tick(self, step: str, genre: str | None = None) -> Callable[[int, int], None]:
        def tick(done: int, total: int) -> None:
            self.progress(ProgressEvent(STAGE, step, done, total, genre))

        return tick

    def _activations(self, images: np.ndarray, step: str, genre: str | None = None) -> np.ndarray:
        key = digest("activations", self.weights_key, self.probe.layer, images)
        shape = (len(images), *self.probe.output_shape(self.image_size))
        tick = self._tick(step, genre)
        tick(0, len(images))
        out = self.cache.compute(key, shape, lambda out: self.probe.activations(images, out, tick, self.check))
        tick(len(images), len(images))
        return out

    def _gradients(self, images: np.ndarray, class_index: int, genre: str) -> np.ndarray:
        mode = self.cfg.tcav_gradient
        key = digest("gradients", self.weights_key, self.probe.layer, mode, int(class_index), images)
        shape = (len(images), *self.probe.output_shape(self.image_size))
        tick = self._tick("gradients", genre)
        tick(0, len(images))
        out = self.cache.compute(
            key, shape, lambda out: self.probe.gradients(images, class_index, mode, out, tick, self.check)
        )
        tick(len(images), len(images))
        return out

    # -- random sets (once) ---------------------------------------------------------------
    def fit_random(self, random: RandomSets) -> "ConceptExtractor":
        """Activations of every random image, computed once for all genres."""
        if random.experiments < 2:
            raise ValueError("at least 2 random experiments are needed (plus the null set)")
        with self._timed("random"):
            self._random_acts = self._activations(random.images, "random activations")
        self.random_ = random
        return self

    # -- one genre ------------------------------------------------------------------------
    def fit_genre(self, images: GenreImages) -> GenreResult:
        if self.random_ is None or self._random_acts is None:
            raise RuntimeError("call fit_random() before fit_genre()")
        cfg, g = self.cfg, images.genre
        self.check()
        masks: list[np.ndarray] = []
        with self._timed("segment"):
            tick = self._tick("segments", g)
            for i, image in enumerate(images.discovery):
                self.check()
                valid = None
                if cfg.skip_empty and images.discovery_empty is not None:
                    valid = images.discovery_empty[i] == 0
                masks.append(segment_masks(image, cfg.segments, cfg.compactness, cfg.sigma, MIN_AREA, MAX_IOU,
                                           valid))
                tick(i + 1, len(images.discovery))
        with self._timed("patches"):
            patch_image = np.concatenate([np.full(len(m), i, np.int64) for i, m in enumerate(masks)])
            patch_segment = np.concatenate([np.arange(len(m), dtype=np.int64) for m in masks])
            patches = np.concatenate(
                [make_patches(img, m, self.fill, cfg.patch_mode, self.image_size) for img, m in zip(images.discovery, masks)]
            ) if len(patch_image) else np.zeros((0, self.image_size, self.image_size), np.uint8)
        if len(patches) == 0:
            raise ValueError(f"genre {g}: SLIC produced no segments")
        with self._timed("activations"):
            acts = self._activations(patches, "activations", g)
        self.check()
        with self._timed("cluster"):
            if cfg.patch_mode == "inplace":  # the response to the segment, where it is
                features = masked_means(acts, np.concatenate(masks))
            else:  # the segment fills the frame (ACE): the plain spatial mean
                features = spatial_means(acts)
            concepts, _ = discover_concepts(
                features, patch_image, cfg.n_clusters, cfg.min_cluster_size, len(images.discovery), cfg.seed
            )
        log.info("%s: %d patches, %d concepts", g, len(patches), len(concepts))
        with self._timed("gradients"):
            grads = self._gradients(images.score, images.class_index, g)
        self.check()
        with self._timed("cav"):
            fit = self._fit_cavs(acts, concepts, g)
        self.check()
        R = self.random_.experiments
        K = len(concepts)
        with self._timed("tcav"):
            dd = fit.project(flat_rows(grads, range(len(grads))))  # (images, P) directional derivatives
            scores = sign_count(dd)
            magnitude = dd.mean(axis=0)[: K * R].reshape(K, R).mean(axis=1) if K else np.zeros(0)
            tcav = scores[: K * R].reshape(K, R)
            null = scores[K * R :]
            p = stats.paired_pvalues(tcav, null) if K else np.zeros(0)
            sig = stats.significant(p, cfg.significance, cfg.correction)
            if len(images.score) < required_score_songs(cfg.significance, cfg.min_score_songs):
                sig[:] = False  # too few songs for any outcome to be significant (see whypop.ace.planning)
            average = np.kron(np.eye(K, dtype=np.float32), np.full((1, R), 1.0 / R, np.float32))  # (K, K R)
            average = np.concatenate([average, np.zeros((K, len(fit) - K * R), np.float32)], axis=1)
            mean_cavs = fit.combine(average) if K else np.zeros((0, int(np.prod(grads.shape[1:]))), np.float32)
            accuracy = fit.accuracy[: K * R].reshape(K, R).mean(axis=1) if K else np.zeros(0)
        with self._timed("flags"):
            dark = self._darkness(images.discovery, masks, patch_image, patch_segment, concepts,
                                  images.discovery_empty)
        renders = {}
        for ci, c in enumerate(concepts):
            for rank, idx in enumerate(c.members[: self.render]):
                renders[(ci, rank)] = patches[idx]
        return GenreResult(
            genre=g, masks=masks, patch_image=patch_image, patch_segment=patch_segment, concepts=concepts,
            tcav=tcav.astype(np.float32), null=null.astype(np.float32), p_values=p, significant=sig,
            mean_cavs=mean_cavs.astype(np.float32), accuracy=accuracy, magnitude=magnitude,
            null_accuracy=float(fit.accuracy[K * R :].mean()), darkness=dark, renders=renders,
        )

    def _fit_cavs(self, acts: np.ndarray, concepts: list[Concept], genre: str) -> cavs_mod.CavFit:
        """All CAVs of the genre in one call: concepts x random sets, then null x random sets."""
        random = self.random_
        assert random is not None and self._random_acts is not None
        top = [c.top(self.cfg.max_concept_patches) for c in concepts]
        concept_rows = np.concatenate(top) if top else np.zeros(0, np.int64)
        X = np.concatenate([flat_rows(acts, concept_rows), flat_rows(self._random_acts, range(len(random.images)))])
        offset = len(concept_rows)
        starts = np.cumsum([0] + [len(t) for t in top])
        pairs = []
        for ci in range(len(concepts)):
            positive = np.arange(starts[ci], starts[ci + 1])
            pairs.extend(cavs_mod.CavPair(positive, offset + s) for s in random.sets[1:])
        pairs.extend(cavs_mod.CavPair(offset + random.sets[0], offset + s) for s in random.sets[1:])
        return cavs_mod.fit_cavs(X, pairs, self.cfg.cav_mode, seed=self.cfg.seed, tick=self._tick("CAVs", genre),
                                 device=str(self.probe.device))

    def _darkness(self, discovery, masks, patch_image, patch_segment, concepts, empty=None) -> list[flags.Darkness]:
        maps = [flags.band_map(img, self.cfg.black_level, self.band_width) for img in discovery]
        out = []
        for c in concepts:
            vals = []
            for idx in c.members:
                black, banded = maps[patch_image[idx]]
                mask = masks[patch_image[idx]][patch_segment[idx]]
                regions = None if empty is None else empty[patch_image[idx]]
                vals.append(flags.patch_darkness(black, banded, mask) + flags.patch_empty(regions, mask))
            out.append(flags.darkness(vals))
        return out
