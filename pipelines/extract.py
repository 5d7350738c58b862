"""Stage 3, extract: ACE concepts with TCAV scores, significance, flags and the concept map.

Protocol (all choices seeded by ``extract.seed`` and stored with the extraction):

- **Images.** Per genre, the prepared tracks of ``extract.image_split`` (default: the
  held-out validation + test tracks) in a seeded order: the first
  ``discovery_images`` are segmented into concepts, the next ``score_images`` give
  the TCAV scores (disjoint, as in the reference).
- **Random sets.** A pool of every genre's ``extract.random_split`` tracks (default:
  training) minus the discovery and score images of every genre of the model; from it
  ``random_experiments + 1`` sets of ``random_set_size`` spectrograms are drawn
  (without replacement within a set). Set 0 is the null concept (ACE's
  ``random_discovery``), disjoint from sets 1..R, the experiments (which may overlap
  each other when the pool is small). The sets are the same for every
  genre and every ``--genres`` subset, and their activations are computed once.
- **ACE per genre**, see :mod:`whypop.ace.extractor`; significance is corrected over
  the concepts of the genre.
- **Summary**, see :mod:`whypop.ace.summary`; flags, see :mod:`whypop.ace.flags`.
- **Planted ground truth** (the demo): per genre, the overlap of the top concept's
  patches with the planted signature boxes (share of mask pixels inside, averaged over
  all its patches) and the chance level (the same for every segment of the same
  discovery songs), and whether the model relies on the signature at all (the genre's
  probability on its score images with the signature hidden: a "default" genre
  recognised by the absence of the others' signatures does not, and then no concept
  can honestly be expected on its signature). The top concept is the significant concept raising the class
  (TCAV score above 0.5) with the largest TCAV magnitude, among those not flagged as
  silence or augmentation bands (see :mod:`whypop.ace.ranking`).

Nothing is written before the inputs are validated; results go to a partial directory
and become visible in one transaction at the end; a failure or a cancel leaves the
previous extractions as they were.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.common import load_current
from whypop import __version__
from whypop.ace import flags, stats
from whypop.ace.activations import ActivationCache, LayerProbe, digest, weights_digest
from whypop.ace.extractor import ConceptExtractor, GenreImages, RandomSets
from whypop.ace.patches import make_patches, mask_bbox
from whypop.ace.planning import SPLITS, Request, plan_images, required_score_songs
from whypop.ace.planted import mask_overlap, region_mask, signature_reliance
from whypop.ace.ranking import Candidate, top_concept
from whypop.ace.segment import random_segment
from whypop.ace.summary import concept_map
from whypop.audio import encode_png
from whypop.geometry import box_to_pixels, empty_regions, fmax_hz
from whypop.config import Config
from whypop.errors import Cancelled, InputError, StoreError, WhypopError
from whypop.model import get_layer
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.extraction_files import save_arrays, save_masks
from whypop.results import ConceptRecord, ExtractionSummary, GenreSummary, Reliance
from whypop.store import RunStore

log = logging.getLogger(__name__)

STAGE = "extract"
ARTEFACT_OVERLAP = 0.5  # a concept sits on the planted artefact when half its patch pixels do
RELIANCE_DROP = 0.5  # the model relies on a planted signature when hiding it costs this much probability


@dataclass
class Plan:
    """Everything validated before an extraction row exists."""

    cfg: Config
    loaded: object  # whypop.model.LoadedModel
    genres: list[str]  # to extract, in the model's class order
    images: dict[str, tuple[list[str], list[str]]]  # genre -> (discovery ids, score ids)
    pool: list[str]  # random pool
    sets: list[list[str]]  # R + 1 random sets of track ids
    training: list[str]  # training tracks (for the fill value)
    images_plan: object = None  # whypop.ace.planning.ImagePlan
    audio: object = None  # the run's AudioConfig (the geometry of its spectrograms)
    tracks: dict = dataclasses.field(default_factory=dict)  # track id -> Track (sample rate, duration)

    def describe(self) -> str:
        """The one line saying what the extraction uses and what it means."""
        ex = self.cfg.extract
        return self.images_plan.describe(self.genres, required_score_songs(ex.significance, ex.min_score_songs))


# -- planning and validation (writes nothing) ---------------------------------------------


def plan_extraction(cfg: Config, store: RunStore, genres: list[str] | None = None) -> Plan:
    """Check the inputs and choose every image (:mod:`whypop.ace.planning`); raises a WhypopError, writes nothing."""
    ex = cfg.extract
    ex.validate()
    loaded = load_current(store, ex.device)  # StoreError when the run has no model
    get_layer(loaded.model, ex.layer)  # ConfigError listing valid layers
    model_genres = list(loaded.genres)
    if genres:
        unknown = [g for g in genres if g not in model_genres]
        if unknown:
            raise InputError(f"unknown genre(s) {', '.join(unknown)}: the model knows {', '.join(model_genres)}")
        wanted = [g for g in model_genres if g in set(genres)]
    else:
        wanted = model_genres
    tracks = [t for t in store.tracks(status="ok") if t.genre in set(model_genres)]
    if not tracks:
        raise StoreError(f"run {store.root} has no prepared spectrograms")
    images = plan_images(tracks, model_genres, Request.from_config(ex), wanted)
    size = _image_size(store, tracks[0].track_id)
    if size != loaded.image_size:
        raise InputError(
            f"the run's spectrograms are {size} px but the model expects {loaded.image_size} px: "
            f"prepare the run with audio.image_size = {loaded.image_size}"
        )
    training = sorted(t.track_id for t in tracks if t.split == "training") or sorted(t.track_id for t in tracks)
    stored = store.stored_config()
    return Plan(cfg, loaded, wanted, {g: (images.genres[g].discovery, images.genres[g].score) for g in wanted},
                images.pool, images.sets, training, images, stored.audio if stored is not None else cfg.audio,
                {t.track_id: t for t in tracks})


def _image_size(store: RunStore, track_id: str) -> int:
    image = store.load_spectrogram(track_id)
    if image.shape[0] != image.shape[1]:
        raise InputError(f"spectrogram of {track_id} is {image.shape[1]}x{image.shape[0]}, not square")
    return int(image.shape[0])


def training_mean(store: RunStore, track_ids: list[str], cache: bool = True) -> float:
    """Mean pixel of the training spectrograms (the patch fill value), cached by file identity."""
    files = []
    for t in track_ids:
        p = store.spectrogram_path(t)
        st = p.stat()
        files.append((t, st.st_size, st.st_mtime_ns))
    path = store.root / "cache" / f"fill-{digest(files)}.json"
    if cache and path.is_file():
        return float(json.loads(path.read_text())["mean"])
    total, count = 0.0, 0
    for t in track_ids:
        img = store.load_spectrogram(t)
        total += float(img.sum(dtype=np.float64))
        count += img.size
    mean = total / max(count, 1)
    if cache:
        store.write_bytes_atomic(str(path.relative_to(store.root)), json.dumps({"mean": mean, "tracks": len(track_ids)}).encode())
    return mean


def code_version() -> str:
    """whypop's version, plus the git commit when the package runs from a checkout."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=2)
            if out.returncode == 0 and out.stdout.strip():
                return f"{__version__}+g{out.stdout.strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    return __version__


# -- the stage ---------------------------------------------------------------------------


def run(
    cfg: Config,
    store: RunStore,
    progress: Progress = null_progress,
    *,
    genres: list[str] | None = None,
    job_id: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> int:
    """Extract concepts for every genre (or ``genres``); returns the new extraction id."""
    start = time.perf_counter()
    plan = plan_extraction(cfg, store, genres)
    log.info("%s", plan.describe())
    params = {"extract": dataclasses.asdict(cfg.extract), "summary": dataclasses.asdict(cfg.summary),
              "genres": plan.genres, "model_id": plan.loaded.model_id}
    extraction_id, partial = store.begin_extraction(params, code_version(), plan.loaded.model_id, job_id)

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled(f"extraction {extraction_id} cancelled")

    try:
        concepts, patches, timings, summary = _extract(plan, store, partial, progress, check)
        timings["total"] = time.perf_counter() - start
        store.complete_extraction(extraction_id, concepts, patches, timings, summary.to_dict())
    except Cancelled:
        store.fail_extraction(extraction_id, "cancelled", status="cancelled")
        raise
    except BaseException as exc:
        store.fail_extraction(extraction_id, f"{type(exc).__name__}: {exc}"[:500])
        raise
    log.info("extraction %d complete: %d concepts in %.1f s", extraction_id, len(concepts), timings["total"])
    if cfg.extract.evaluate:
        _evaluate(cfg, store, progress, extraction_id, cancel)
    return extraction_id


def _evaluate(cfg: Config, store: RunStore, progress: Progress, extraction_id: int, cancel) -> None:
    """The deletion and insertion tests of the new extraction (``extract.evaluate``).

    The extraction is complete and stays so whatever happens here: a problem of the
    data (no held-out songs, ...) or a cancel is logged, not raised.
    """
    from pipelines import evaluate

    try:
        evaluate.run(cfg, store, progress, extraction_id, cancel=cancel)
    except (WhypopError, Cancelled) as exc:
        log.warning("extraction %d: deletion and insertion tests not run: %s", extraction_id, exc)


def _extract(plan: Plan, store: RunStore, partial: Path, progress: Progress, check: Callable[[], None]):
    cfg, ex = plan.cfg, plan.cfg.extract
    timings: dict[str, float] = {}
    t = time.perf_counter()
    fill = training_mean(store, plan.training, ex.cache)
    loaded = plan.loaded
    probe = LayerProbe(loaded.model, ex.layer, loaded.device, ex.batch_size)
    cache = ActivationCache(store.root / "cache" / "activations" if ex.cache else None)
    # the training augmentation's widest band, plus the resize's blur either side
    band_width = int(np.ceil(cfg.augment.max_band * loaded.image_size)) + 2
    extractor = ConceptExtractor(probe, ex, fill, loaded.image_size, cache, weights_digest(loaded.model),
                                 progress, check, ex.render_patches, band_width)
    unique = sorted({tid for s in plan.sets for tid in s})
    position = {tid: i for i, tid in enumerate(unique)}
    random_images = _load(store, unique, progress, check, "random loading")
    timings["load"] = time.perf_counter() - t
    if ex.random_kind == "patches":
        t = time.perf_counter()
        random_images = random_patches(random_images, unique, ex, fill, loaded.image_size, progress, check,
                                       _empty_maps(plan, unique) if ex.skip_empty else None)
        timings["segment"] = time.perf_counter() - t
    random = RandomSets(unique, random_images, [np.array([position[tid] for tid in s]) for s in plan.sets])
    extractor.fit_random(random)

    writer = _Writer(store, partial, plan, ex)
    for g in plan.genres:
        t = time.perf_counter()
        discovery_ids, score_ids = plan.images[g]
        images = GenreImages(
            g, loaded.genres.index(g), discovery_ids, _load(store, discovery_ids, progress, check, "loading", g),
            score_ids, _load(store, score_ids, null_progress, check), _empty_maps(plan, discovery_ids),
        )
        timings["load"] += time.perf_counter() - t
        result = extractor.fit_genre(images)
        t = time.perf_counter()
        writer.add_genre(result, images)
        writer.reliance(g, images, loaded, fill)
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t
        del images, result
    check()
    t = time.perf_counter()
    progress(ProgressEvent(STAGE, "summary", 0, 1))
    concepts, patches, summary = writer.finish(random, fill, {"hits": cache.hits, "misses": cache.misses},
                                               probe.output_shape(loaded.image_size))
    progress(ProgressEvent(STAGE, "summary", 1, 1))
    timings["summary"] = time.perf_counter() - t
    for k, v in extractor.timings_.items():
        timings[k] = timings.get(k, 0.0) + v
    return concepts, patches, {k: round(v, 3) for k, v in timings.items()}, summary


def _empty_maps(plan: Plan, track_ids: list[str]) -> np.ndarray:
    """(N, H, W) uint8 maps of the regions each track's geometry knows to be empty (see whypop.geometry)."""
    audio = plan.audio
    out = np.zeros((len(track_ids), audio.image_size, audio.image_size), np.uint8)
    for i, tid in enumerate(track_ids):
        t = plan.tracks.get(tid)
        if t is not None:
            out[i] = empty_regions(t.sample_rate, t.duration, audio)
    return out


def random_patches(images: np.ndarray, track_ids: list[str], ex, fill: float, size: int,
                   progress: Progress = null_progress, check: Callable[[], None] = lambda: None,
                   empty: np.ndarray | None = None) -> np.ndarray:
    """One random segment of each random spectrogram, made into a patch like the discovery ones.

    The segment is chosen by a generator seeded with ``extract.seed`` and the track id,
    so a track contributes the same patch to every set and every extraction. With
    ``empty`` (maps as :func:`whypop.geometry.empty_regions`), only where they are 0.
    """
    out = np.empty((len(images), size, size), np.uint8)
    for i, (image, tid) in enumerate(zip(images, track_ids)):
        if i % 16 == 0:
            check()
        rng = np.random.default_rng([ex.seed, zlib.crc32(tid.encode())])
        valid = None if empty is None else empty[i] == 0
        mask = random_segment(image, ex.segments, rng, ex.compactness, ex.sigma, valid=valid)
        out[i] = make_patches(image, mask[None], fill, ex.patch_mode, size)[0]
        if i + 1 == len(images) or i % 16 == 0:
            progress(ProgressEvent(STAGE, "random patches", i + 1, len(images)))
    return out


def _load(store: RunStore, ids: list[str], progress: Progress, check, step: str = "loading",
          genre: str | None = None) -> np.ndarray:
    out = []
    for i, tid in enumerate(ids):
        if i % 64 == 0:
            check()
        out.append(store.load_spectrogram(tid))
        if i + 1 == len(ids) or i % 16 == 0:
            progress(ProgressEvent(STAGE, step, i + 1, len(ids), genre))
    return np.stack(out) if out else np.zeros((0, 0, 0), np.uint8)


class _Writer:
    """Collects each genre's rows and files into the partial directory, then the summary."""

    def __init__(self, store: RunStore, partial: Path, plan: Plan, ex):
        self.store, self.partial, self.plan, self.ex = store, partial, plan, ex
        self.concepts: list[dict] = []
        self.patches: list[dict] = []
        self.mean_cavs: list[np.ndarray] = []
        self.tcav: list[np.ndarray] = []
        self.null: dict[str, np.ndarray] = {}
        self.genres: dict[str, GenreSummary] = {}
        self.planted: set[str] = set()  # genres whose discovery songs have planted regions (the demo)
        self.records: list[ConceptRecord] = []  # per concept, in the order of self.concepts
        audio = store.stored_config()
        self.audio = audio.audio if audio is not None else plan.cfg.audio

    def _regions(self, track_id: str, shape: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        planted = self.store.planted(track_id)
        if not planted:
            return None, None
        boxes = {"signature": [], "artefact": []}
        for r in planted:
            if r.kind in boxes:
                boxes[r.kind].append(box_to_pixels(r.t0, r.t1, r.f0, r.f1, self.audio))
        return region_mask(shape, boxes["signature"]), region_mask(shape, boxes["artefact"])

    def _geometry(self, track_ids: list[str]) -> tuple[float | None, str | None]:
        """(the lowest source Nyquist in Hz below the mel range's top, the songs' end) of these tracks."""
        tracks = [self.plan.tracks[t] for t in track_ids if t in self.plan.tracks]
        rates = [t.sample_rate for t in tracks if t.sample_rate]
        nyquist = min(rates) / 2 if rates and min(rates) / 2 < fmax_hz(self.audio) else None
        short = [t.duration for t in tracks if t.duration and t.duration < self.audio.duration]
        song_end = None
        if short and self.audio.pad == "silence":
            lo, hi = min(short), max(short)
            when = f"{lo:.0f} s" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} s"
            song_end = f"the songs end at {when} of the {self.audio.duration:g} s window"
        return nyquist, song_end

    def add_genre(self, result, images) -> None:
        g = result.genre
        refs = [save_masks(self.partial, tid, m) for tid, m in zip(images.discovery_ids, result.masks)]
        shape = images.discovery.shape[1:]
        regions = [self._regions(tid, shape) for tid in images.discovery_ids]
        sig_overlap = [None if r[0] is None else mask_overlap(m, r[0]) for m, r in zip(result.masks, regions)]
        art_overlap = [None if r[1] is None else mask_overlap(m, r[1]) for m, r in zip(result.masks, regions)]
        planted = any(r[0] is not None for r in regions)
        description = stats.threshold(len(result.concepts), self.ex.significance, self.ex.correction)
        min_songs = required_score_songs(self.ex.significance, self.ex.min_score_songs)
        if len(images.score_ids) < min_songs:
            description = (f"TCAV from {len(images.score_ids)} score songs; at least {min_songs} are needed for "
                           f"any outcome to be significant at {self.ex.significance:g}")
        nyquist, song_end = self._geometry(images.discovery_ids)
        first = len(self.concepts)
        for ci, c in enumerate(result.concepts):
            cid = first + ci
            flag_list = []
            dark = flags.darkness_flag(result.darkness[ci], self.ex.black_share, nyquist, song_end)
            if dark:
                flag_list.append(dark)
            if not result.significant[ci]:
                flag_list.append(flags.significance_flag(float(result.p_values[ci]), description))
            sig_vals, art_vals = [], []
            for rank, idx in enumerate(c.members):
                img, seg = int(result.patch_image[idx]), int(result.patch_segment[idx])
                x0, y0, x1, y1 = mask_bbox(result.masks[img][seg])
                self.patches.append({
                    "concept_id": cid, "rank": rank, "track_id": images.discovery_ids[img],
                    "x0": x0, "y0": y0, "x1": x1, "y1": y1, "mask": refs[img][seg], "distance": float(c.distances[rank]),
                })
                if sig_overlap[img] is not None:
                    sig_vals.append(float(sig_overlap[img][seg]))
                    art_vals.append(float(art_overlap[img][seg]))
            for (ri, rank), patch in result.renders.items():
                if ri == ci:
                    self.store.write_bytes_atomic(
                        str((self.partial / "patches" / f"{cid}_{rank}.png").relative_to(self.store.root)), encode_png(patch))
            self.concepts.append({
                "concept_id": cid, "genre": g, "name": f"{g} concept {ci + 1}",
                "tcav_mean": float(result.tcav[ci].mean()), "tcav_std": float(result.tcav[ci].std()),
                "p_value": float(result.p_values[ci]), "significant": bool(result.significant[ci]),
                "flags": flag_list, "n_patches": int(len(c.members)),
            })
            self.records.append(ConceptRecord(
                cid, black_share=result.darkness[ci].black_share, band_share=result.darkness[ci].band_share,
                nyquist_share=result.darkness[ci].nyquist_share, padding_share=result.darkness[ci].padding_share,
                signature_overlap=float(np.mean(sig_vals)) if sig_vals else None,
                artefact_overlap=float(np.mean(art_vals)) if art_vals else None,
                cav_accuracy=float(result.accuracy[ci]), n_images=int(c.n_images),
                magnitude=float(result.magnitude[ci]),
            ))
        self.mean_cavs.append(result.mean_cavs)
        self.tcav.append(result.tcav)
        self.null[g] = result.null
        chance = None
        if planted:
            chance = float(np.mean(np.concatenate([o for o in sig_overlap if o is not None])))
        if planted:
            self.planted.add(g)
        self.genres[g] = GenreSummary(
            discovery=tuple(images.discovery_ids), score=tuple(images.score_ids),
            n_patches=int(len(result.patch_image)), n_concepts=len(result.concepts),
            n_significant=int(np.sum(result.significant)), chance=chance,
            null_mean=float(result.null.mean()), null_cav_accuracy=result.null_accuracy,
            discovery_songs=len(images.discovery_ids), score_songs=len(images.score_ids), min_score_songs=min_songs,
        )

    def reliance(self, genre: str, images, loaded, fill: float) -> None:
        """Demo ground truth: does the model need the genre's planted signature? (score images)"""
        regions = [self._regions(tid, images.score.shape[1:])[0] for tid in images.score_ids]
        if any(r is None for r in regions) or not len(regions):
            return
        full, occluded = signature_reliance(loaded.model, images.score, regions, images.class_index, fill, loaded.device)
        self.genres[genre] = dataclasses.replace(self.genres[genre], reliance=Reliance(
            p_full=round(full, 4), p_signature_hidden=round(occluded, 4),
            relies_on_signature=bool(full - occluded >= RELIANCE_DROP),
            rule=f"the mean probability of the genre on its score images drops by at least {RELIANCE_DROP} "
                 f"when the planted signature is filled with the training mean",
        ))

    def finish(self, random, fill: float, cache: dict, activation_shape: tuple[int, ...]
               ) -> tuple[list[dict], list[dict], ExtractionSummary]:
        sc = self.plan.cfg.summary
        K = len(self.concepts)
        R = random.experiments
        D = self.mean_cavs[0].shape[1] if self.mean_cavs else 0
        mean_cavs = np.concatenate(self.mean_cavs) if K else np.zeros((0, D), np.float32)
        cmap = concept_map(mean_cavs, sc.clusters, sc.perplexity, sc.seed)
        tcav_means = np.array([c["tcav_mean"] for c in self.concepts])
        significant = np.array([c["significant"] for c in self.concepts], dtype=bool)
        lonely = flags.lonely_flags(cmap.labels, tcav_means, significant, sc.lonely_size) if K else {}
        for i, c in enumerate(self.concepts):
            c["cluster"] = int(cmap.labels[i])
            c["x"], c["y"] = float(cmap.xy[i, 0]), float(cmap.xy[i, 1])
            if i in lonely:
                c["flags"].append(lonely[i])
        save_arrays(
            self.partial,
            concept_ids=np.array([c["concept_id"] for c in self.concepts], dtype=np.int64),
            mean_cavs=mean_cavs.astype(np.float32),
            similarity=cmap.similarity.astype(np.float32),
            tcav_scores=(np.concatenate(self.tcav) if K else np.zeros((0, R))).astype(np.float32),
            random_scores=np.stack([self.null[g] for g in self.genres]).astype(np.float32),
            random_genres=np.array(list(self.genres), dtype=str),
            cluster_ids=cmap.cluster_ids.astype(np.int64),
            cluster_xy=cmap.cluster_xy.astype(np.float32),
        )
        genres = {}
        for g, info in self.genres.items():
            mine = [i for i, c in enumerate(self.concepts) if c["genre"] == g]
            candidates = [Candidate(self.concepts[i]["significant"], self.concepts[i]["tcav_mean"],
                                    self.records[i].magnitude, flags.is_dark(self.concepts[i]["flags"])) for i in mine]
            top = top_concept(candidates, info.null_mean, exclude_dark=True)
            top_any = top_concept(candidates, info.null_mean, exclude_dark=False)
            genres[g] = dataclasses.replace(
                info,
                top_concept=None if top is None else self.concepts[mine[top]]["concept_id"],
                top_concept_any=None if top_any is None else self.concepts[mine[top_any]]["concept_id"],
                overlap=self.records[mine[top]].signature_overlap if g in self.planted and top is not None else None,
            )
        summary = ExtractionSummary(
            layer=self.ex.layer, patch_mode=self.ex.patch_mode, cav_mode=self.ex.cav_mode,
            tcav_gradient=self.ex.tcav_gradient, genres=genres,
            random={
                "kind": self.ex.random_kind,
                "protocol": f"{R + 1} sets of {self.plan.images_plan.set_size} spectrograms drawn without replacement "
                            f"from the {'/'.join(SPLITS[self.ex.random_split])} tracks of every genre minus all "
                            f"discovery and score images ({len(self.plan.pool)} in the pool); set 0 is the null "
                            f"concept, disjoint from sets 1..{R}, the experiments; the same sets for every genre"
                            + ("; each spectrogram enters as one random segment of it, made into a patch like "
                               "the discovery patches" if self.ex.random_kind == "patches" else ""),
                "pool": len(self.plan.pool), "experiments": R, "set_size": self.plan.images_plan.set_size,
                "sets": [list(s) for s in self.plan.sets],
            },
            significance={
                "test": "paired t-test (scipy ttest_rel, two-sided) of each concept's R TCAV scores against "
                        "the genre's random-vs-random scores",
                "alpha": self.ex.significance, "correction": self.ex.correction, "family": "the concepts of a genre",
            },
            artefact=self._artefact(),
            concepts=tuple(self.records),
            clusters=len(cmap.cluster_ids),
            fill_value=fill, cache=cache, activation_shape=tuple(activation_shape),
            plan={
                "line": self.plan.describe(), "scaled": self.plan.images_plan.scaled,
                "requested": {"discovery_images": self.ex.discovery_images, "score_images": self.ex.score_images,
                              "random_set_size": self.ex.random_set_size},
                "used": {"random_set_size": self.plan.images_plan.set_size,
                         "score_songs": {g: v.score_songs for g, v in self.genres.items()},
                         "discovery_songs": {g: v.discovery_songs for g, v in self.genres.items()}},
                "reserved_for_pool": self.plan.images_plan.reserved,
                "min_score_songs": required_score_songs(self.ex.significance, self.ex.min_score_songs),
                "rule": "significance is reported only for genres whose TCAV scores rest on at least "
                        "min_score_songs score songs: below that, no outcome of the songs can reach the level "
                        "(two-sided sign test, 2 x 0.5^n > alpha)",
            },
        )
        return self.concepts, self.patches, summary

    def _artefact(self) -> dict:
        """Concepts flagged as silence / bands, and the check against planted artefacts (demo)."""
        flagged, on_planted = [], []
        for c, e in zip(self.concepts, self.records):
            dark = [f["flag"] for f in c["flags"] if f["flag"] in flags.DARK_FLAGS]
            if dark:
                flagged.append({"concept_id": c["concept_id"], "genre": c["genre"], "flag": dark[0],
                                "black_share": round(e.black_share, 4), "band_share": round(e.band_share, 4),
                                "empty_share": round((e.nyquist_share or 0.0) + (e.padding_share or 0.0), 4),
                                "tcav_mean": c["tcav_mean"], "significant": c["significant"],
                                "planted_overlap": None if e.artefact_overlap is None else round(e.artefact_overlap, 4)})
            if e.artefact_overlap is not None and e.artefact_overlap >= ARTEFACT_OVERLAP:
                on_planted.append({"concept_id": c["concept_id"], "genre": c["genre"],
                                   "overlap": round(e.artefact_overlap, 4),
                                   "black_share": round(e.black_share, 4), "flagged": bool(dark)})
        planted = any(e.artefact_overlap is not None for e in self.records)  # the run has ground truth
        return {
            "rule": f"flagged above-nyquist or padding when at least {self.ex.black_share:.0%} of the concept's "
                    f"patch pixels lie where the tracks' sample rate and duration say the image is empty; else "
                    f"augmentation-band or silence when at least {self.ex.black_share:.0%} are black "
                    f"(<= {self.ex.black_level}/255)",
            "skip_empty": self.ex.skip_empty,
            "flagged": flagged,
            # demo ground truth: concepts whose patches lie mostly (>= 50% of mask pixels) on planted
            # artefact boxes; a zeroed low-frequency band may not be black in the image, so not all are
            "on_planted": on_planted if planted else None,
            "flagged_on_planted": [p["concept_id"] for p in on_planted if p["flagged"]] if planted else None,
        }
