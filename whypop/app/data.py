"""What the dashboard shows, read from the run store: small frozen views, cached per process.

A complete extraction never changes (a re-extraction is a new row), so everything
derived from one is cached by extraction id for the life of the process; the list of
extractions and the model are read fresh. The app never writes to the store.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from whypop.config import AudioConfig, Config, resolve_config
from whypop.errors import NotFound
from whypop.features import AUDIO_FEATURES, ECHONEST_FEATURES, FeatureSpec, format_value, percentile_scale
from whypop.extraction_files import load_arrays
from whypop.ids import is_track_id, parse_id
from whypop.results import ExtractionSummary
from whypop.store import RunStore, Track

FEATURE_SOURCES: dict[str, tuple[FeatureSpec, ...]] = {"echonest": ECHONEST_FEATURES, "audio": AUDIO_FEATURES}
EXAMPLES_PER_CONCEPT = 10
# np.load parses array headers with ast.literal_eval, which is not thread-safe in CPython
# 3.11 ("SystemError: AST constructor recursion depth mismatch" under threaded servers):
# every .npz read of the app goes through this lock.
NPZ_LOCK = threading.Lock()


@dataclass(frozen=True)
class Concept:
    """One concept as the panels show it."""

    concept_id: int
    genre: str
    name: str
    tcav_mean: float
    tcav_std: float
    p_value: float
    significant: bool
    flags: tuple[tuple[str, str], ...]  # (flag, reason)
    cluster: int | None
    x: float | None
    y: float | None
    n_patches: int


@dataclass(frozen=True)
class ExtractionView:
    """An extraction's concepts, concept map and similarity lists."""

    extraction_id: int
    genres: tuple[str, ...]
    concepts: tuple[Concept, ...]
    similar: dict[int, tuple[int, ...]]  # concept -> other concepts with cosine >= threshold
    threshold: float
    cluster_xy: dict[int, tuple[float, float]]  # cluster id -> centre on the concept map
    random_means: dict[str, float]  # genre -> mean TCAV score of random concepts (null)
    discovery: dict[str, tuple[str, ...]]  # genre -> discovery track ids
    layer: str | None
    created: float
    model_id: int | None
    score_songs: dict[str, int] = field(default_factory=dict)  # genre -> songs its TCAV scores rest on
    min_score_songs: int = 0  # fewer score songs: no concept is reported significant
    plan_line: str | None = None  # what the extraction used and what it means, when it was scaled down

    def concept(self, concept_id: int) -> Concept:
        for c in self.concepts:
            if c.concept_id == concept_id:
                return c
        raise NotFound(f"unknown concept id {concept_id!r} in extraction {self.extraction_id}")


@dataclass(frozen=True)
class Example:
    """One of a concept's example patches (rank 0 = closest to the concept centre)."""

    rank: int
    track_id: str
    song: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, y0 at the top
    distance: float | None


@dataclass(frozen=True)
class Placement:
    """A concept patch found in one song."""

    concept_id: int
    name: str
    genre: str
    rank: int
    box: tuple[int, int, int, int]
    mask: str | None


@dataclass(frozen=True)
class FeatureValue:
    spec: FeatureSpec
    raw: float | None
    percentile: float | None  # 0..1 within the collection

    @property
    def text(self) -> str:
        return format_value(self.spec, self.raw)


@dataclass(frozen=True)
class SongFeatures:
    """One song's features from one source, scaled for the radar."""

    track_id: str
    song: str
    source: str
    values: tuple[FeatureValue, ...] = field(default_factory=tuple)  # empty: source has no data

    @property
    def present(self) -> bool:
        return any(v.raw is not None for v in self.values)


class AppData:
    """Read-only access to one run for the app; safe to share between threads."""

    def __init__(self, store: RunStore):
        self.store = store
        self._lock = threading.Lock()
        self._features: dict[str, tuple[dict, dict]] = {}

    # -- run-wide ---------------------------------------------------------------------------
    @functools.cached_property
    def config(self) -> Config:
        return resolve_config(stored=self.store.get_meta("config"))

    @property
    def audio(self) -> AudioConfig:
        return self.config.audio

    def extraction_options(self) -> list[dict]:
        """Complete extractions, newest first, as dropdown options."""
        out = []
        for e in reversed(self.store.extractions(status="complete")):
            n = ExtractionSummary.from_dict(e.get("summary")).discovery_songs
            label = f"extraction {e['extraction_id']}"
            if e.get("model_id") is not None:
                label += f" (model {e['model_id']})"
            if n:
                label += f", {n} discovery songs"
            out.append({"label": label, "value": e["extraction_id"]})
        return out

    def latest_extraction(self) -> int | None:
        try:
            return int(self.store.extraction()["extraction_id"])
        except NotFound:
            return None

    def model_summary(self, model_id: int | None) -> dict | None:
        """The model an extraction explains (or the current one): id, arch, accuracy per split."""
        models = [m for m in self.store.models() if m["status"] == "complete"]
        if model_id is not None:  # never show another model's accuracy for this extraction
            chosen = next((m for m in models if m["model_id"] == model_id), None)
        else:
            chosen = models[-1] if models else None
        if chosen is None:
            return None
        metrics = chosen.get("metrics") or {}
        acc = {k: float(v) for k, v in (metrics.get("accuracy") or {}).items() if isinstance(v, (int, float))}
        return {"model_id": chosen["model_id"], "arch": chosen["arch"], "accuracy": acc,
                "origin": chosen.get("origin")}

    def track(self, track_id: str) -> Track:
        return self.store.track(track_id)

    # -- untrusted values (callback inputs) -> known ids -----------------------------------------
    # Every cache of the app is keyed by what these return, never by a raw request value.
    def extraction_id(self, value: object) -> int | None:
        """The id of a complete extraction of this run, from an untrusted value; None otherwise."""
        try:
            return self.view(parse_id(value, "extraction")).extraction_id
        except NotFound:
            return None

    def concept_id(self, extraction_id: int | None, value: object) -> int | None:
        """The id of a concept of a (validated) extraction, from an untrusted value; None otherwise."""
        if extraction_id is None:
            return None
        try:
            return self.view(extraction_id).concept(parse_id(value, "concept")).concept_id
        except NotFound:
            return None

    def track_id(self, value: object) -> str | None:
        """The id of a prepared (status ok) track, from an untrusted value; None otherwise."""
        if not is_track_id(value):
            return None
        try:
            t = self.store.track(value)
        except NotFound:
            return None
        return t.track_id if t.status == "ok" else None

    @functools.lru_cache(maxsize=4096)
    def song_name(self, track_id: str) -> str:
        try:
            return self.store.track(track_id).name
        except NotFound:
            return str(track_id)

    # -- extraction ---------------------------------------------------------------------------
    @functools.lru_cache(maxsize=8)
    def view(self, extraction_id: int) -> ExtractionView:
        """Everything panels 1 and 2 need; NotFound for an unknown or incomplete extraction."""
        ex = self.store.extraction(extraction_id)
        eid = int(ex["extraction_id"])
        rows = self.store.concepts(eid)
        concepts = tuple(_concept(r) for r in rows)
        summary = ExtractionSummary.from_dict(ex.get("summary"))
        genres = tuple(sorted({c.genre for c in concepts} | set(summary.genres)))
        threshold = _threshold(ex.get("params") or {}, self.config)
        with NPZ_LOCK:
            arrays = load_arrays(self.store, eid)
        similar = similar_lists(arrays.get("concept_ids"), arrays.get("similarity"), threshold)
        known = {c.concept_id for c in concepts}
        similar = {k: tuple(v for v in vs if v in known) for k, vs in similar.items() if k in known}
        cluster_xy = {}
        if "cluster_ids" in arrays and "cluster_xy" in arrays:
            cluster_xy = {int(c): (float(xy[0]), float(xy[1])) for c, xy in zip(arrays["cluster_ids"], arrays["cluster_xy"])}
        random_means = {}
        if "random_scores" in arrays and "random_genres" in arrays:
            for g, scores in zip(arrays["random_genres"], arrays["random_scores"]):
                scores = np.asarray(scores, dtype=float)
                if scores.size and np.isfinite(scores).any():
                    random_means[str(g)] = float(np.nanmean(scores))
        discovery = {g: v.discovery for g, v in summary.genres.items()}
        return ExtractionView(
            extraction_id=eid, genres=genres, concepts=concepts, similar=similar, threshold=threshold,
            cluster_xy=cluster_xy, random_means=random_means, discovery=discovery,
            layer=summary.layer or (ex.get("params") or {}).get("extract", {}).get("layer"),
            created=float(ex["created"]), model_id=ex.get("model_id"),
            score_songs={g: int(v.score_songs if v.score_songs is not None else len(v.score))
                         for g, v in summary.genres.items()},
            min_score_songs=int(summary.plan.get("min_score_songs") or 0),
            plan_line=summary.plan.get("line") if summary.plan.get("scaled") else None,
        )

    def faithfulness(self, extraction_id: int):
        """The extraction's deletion and insertion tests, or None (read each time: they land after the extraction)."""
        from whypop.ace.faithfulness import load_file

        try:
            return load_file(self.store.extraction(extraction_id)["path"])
        except (NotFound, ValueError, KeyError, OSError):
            return None

    @functools.lru_cache(maxsize=1024)
    def examples(self, extraction_id: int, concept_id: int, limit: int = EXAMPLES_PER_CONCEPT) -> tuple[Example, ...]:
        """The concept's first ``limit`` example patches by rank."""
        self.view(extraction_id).concept(concept_id)  # NotFound for unknown ids
        rows = [p for p in self.store.patches(extraction_id, concept_id=concept_id) if p["rank"] < limit]
        return tuple(
            Example(int(p["rank"]), str(p["track_id"]), self.song_name(str(p["track_id"])),
                    (int(p["x0"]), int(p["y0"]), int(p["x1"]), int(p["y1"])),
                    None if p["distance"] is None else float(p["distance"]))
            for p in sorted(rows, key=lambda p: p["rank"])
        )

    def example(self, extraction_id: int, concept_id: int, rank: int) -> dict:
        """One patch row (with its mask reference); NotFound when missing."""
        rows = [p for p in self.store.patches(extraction_id, concept_id=concept_id) if p["rank"] == int(rank)]
        if not rows:
            raise NotFound(f"no patch of rank {rank} for concept {concept_id} in extraction {extraction_id}")
        return rows[0]

    @functools.lru_cache(maxsize=1024)
    def placements(self, extraction_id: int, track_id: str) -> tuple[Placement, ...]:
        """Every concept patch found in a song, ordered by concept then rank."""
        view = self.view(extraction_id)
        names = {c.concept_id: c for c in view.concepts}
        out = []
        for p in self.store.patches(extraction_id, track_id=track_id):
            c = names.get(int(p["concept_id"]))
            if c is None:
                continue
            out.append(Placement(c.concept_id, c.name, c.genre, int(p["rank"]),
                                 (int(p["x0"]), int(p["y0"]), int(p["x1"]), int(p["y1"])), p["mask"]))
        return tuple(out)

    def song_genre(self, extraction_id: int, track_id: str) -> str | None:
        view = self.view(extraction_id)
        for genre, ids in view.discovery.items():
            if track_id in ids:
                return genre
        try:
            return self.store.track(track_id).genre
        except NotFound:
            return None

    # -- features ---------------------------------------------------------------------------
    def _feature_table(self, source: str) -> tuple[dict, dict]:
        """(raw {track_id: {name: value}}, {name: {track_id: percentile}}) for a source, cached."""
        if source not in FEATURE_SOURCES:
            raise NotFound(f"unknown feature source {source!r} (allowed: {', '.join(FEATURE_SOURCES)})")
        with self._lock:
            cached = self._features.get(source)
        if cached is None:
            table = self.store.features(source)
            pct = {
                spec.name: percentile_scale({tid: _finite(vals.get(spec.name)) for tid, vals in table.items()})
                for spec in FEATURE_SOURCES[source]
            }
            cached = (table, pct)
            with self._lock:
                self._features[source] = cached
        return cached

    def song_features(self, track_ids: Sequence[str], source: str) -> list[SongFeatures]:
        """Each song's raw values and percentiles within the collection (songs kept even without data)."""
        table, pct = self._feature_table(source)
        specs = FEATURE_SOURCES[source]
        out = []
        for tid in track_ids:
            raw = table.get(tid) or {}
            values: tuple[FeatureValue, ...] = ()
            if any(_finite(raw.get(s.name)) is not None for s in specs):
                values = tuple(FeatureValue(s, _finite(raw.get(s.name)), pct[s.name].get(tid)) for s in specs)
            out.append(SongFeatures(tid, self.song_name(tid), source, values))
        return out

    def has_source(self, source: str) -> bool:
        return self.collection_size(source) > 0

    def collection_size(self, source: str) -> int:
        """How many tracks have at least one value from ``source``."""
        return len(self._feature_table(source)[0])

    @functools.lru_cache(maxsize=4096)
    def spectrogram_shape(self, track_id: str) -> tuple[int, int]:
        """(height, width) in pixels of a track's stored spectrogram (reads only the PNG header)."""
        from PIL import Image

        with Image.open(self.store.spectrogram_path(track_id)) as im:
            return int(im.height), int(im.width)


def similar_lists(concept_ids: np.ndarray | None, similarity: np.ndarray | None, threshold: float) -> dict[int, tuple[int, ...]]:
    """Concept -> the other concepts whose mean-CAV cosine is at least ``threshold``, most similar first."""
    if concept_ids is None or similarity is None:
        return {}
    ids = [int(c) for c in np.asarray(concept_ids)]
    sim = np.asarray(similarity, dtype=float)
    if sim.shape != (len(ids), len(ids)):
        raise ValueError(f"similarity has shape {sim.shape}, expected {(len(ids), len(ids))}")
    out = {}
    for i, cid in enumerate(ids):
        row = sim[i]
        order = [j for j in np.argsort(-row, kind="stable") if j != i and np.isfinite(row[j]) and row[j] >= threshold]
        out[cid] = tuple(ids[j] for j in order)
    return out


def _threshold(params: dict, cfg: Config) -> float:
    value = (params.get("summary") or {}).get("similar_threshold")
    return float(value) if isinstance(value, (int, float)) else float(cfg.summary.similar_threshold)


def _concept(row: dict) -> Concept:
    flags = []
    for f in row.get("flags") or []:
        if isinstance(f, dict):
            flags.append((str(f.get("flag", "")), str(f.get("reason", ""))))
        else:
            flags.append((str(f), ""))
    return Concept(
        concept_id=int(row["concept_id"]), genre=str(row["genre"]), name=str(row["name"]),
        tcav_mean=float(row["tcav_mean"]), tcav_std=float(row["tcav_std"]), p_value=float(row["p_value"]),
        significant=bool(row["significant"]), flags=tuple(flags),
        cluster=None if row.get("cluster") is None else int(row["cluster"]),
        x=_finite(row.get("x")), y=_finite(row.get("y")), n_patches=int(row["n_patches"]),
    )


def _finite(value: object) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
