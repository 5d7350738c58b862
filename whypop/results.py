"""Typed results, each with its one JSON round trip (``to_dict``/``from_dict``).

``summary`` (JSON in the extractions row): :class:`ExtractionSummary`, per genre a
:class:`GenreSummary`, per concept a :class:`ConceptRecord`; a job's progress:
:class:`JobProgress`. The stored keys are the JSON keys; keys a reader does not know
(written by a newer version) are kept in ``extra`` and written back unchanged. The
arrays and masks of an extraction are in :mod:`whypop.extraction_files`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from whypop.progress import ProgressEvent

_FILE_FUNCTIONS = ("ARRAYS", "save_arrays", "load_arrays", "save_masks", "load_mask")


def __getattr__(name: str) -> Any:
    """The extraction file functions under their earlier import path (``whypop.results.load_arrays``)."""
    if name in _FILE_FUNCTIONS:
        from whypop import extraction_files  # numpy: only for callers of the file functions

        return getattr(extraction_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the extraction summary ----------------------------------------------------------------


def _known(cls, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a stored mapping into the dataclass's fields and the rest (``extra``)."""
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


class FlatRecord:
    """Mixin for a dataclass of plain JSON values: ``to_dict`` and back, keys it does not know ignored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


@dataclass(frozen=True)
class Reliance:
    """Demo ground truth: does the model need a genre's planted signature (its score images)?"""

    p_full: float
    p_signature_hidden: float
    relies_on_signature: bool
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"p_full": self.p_full, "p_signature_hidden": self.p_signature_hidden,
                "relies_on_signature": self.relies_on_signature, "rule": self.rule}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Reliance | None":
        if not data:
            return None
        return cls(float(data["p_full"]), float(data["p_signature_hidden"]), bool(data["relies_on_signature"]),
                   str(data.get("rule", "")))


# Keys added after the stored format was first written: left out while unset, so a
# summary written by an older version reads back and writes out unchanged.
_LATER_KEYS = frozenset({"discovery_songs", "score_songs", "min_score_songs", "nyquist_share", "padding_share", "plan"})


def _without_unset_later(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in _LATER_KEYS or v not in (None, {}, [])}


@dataclass(frozen=True)
class GenreSummary:
    """One genre of an extraction: its images, counts, null, top concept and planted checks.

    ``chance`` and ``overlap`` are the demo's ground truth (None without planted regions):
    the mean overlap of any discovery segment, and of the top concept's patches, with
    the planted signature.
    """

    discovery: tuple[str, ...] = ()
    score: tuple[str, ...] = ()
    n_patches: int = 0
    n_concepts: int = 0
    n_significant: int = 0
    chance: float | None = None
    null_mean: float | None = None
    null_cav_accuracy: float | None = None
    top_concept: int | None = None
    top_concept_any: int | None = None
    overlap: float | None = None
    reliance: Reliance | None = None
    discovery_songs: int | None = None  # the songs its concepts were found in
    score_songs: int | None = None  # the songs its TCAV scores rest on
    min_score_songs: int | None = None  # fewer score songs: no concept is reported significant
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "discovery_songs": self.discovery_songs, "score_songs": self.score_songs,
            "min_score_songs": self.min_score_songs,
            "discovery": list(self.discovery), "score": list(self.score), "n_patches": self.n_patches,
            "n_concepts": self.n_concepts, "n_significant": self.n_significant, "chance": self.chance,
            "null_mean": self.null_mean, "null_cav_accuracy": self.null_cav_accuracy,
            "top_concept": self.top_concept, "top_concept_any": self.top_concept_any, "overlap": self.overlap,
        }
        if self.reliance is not None:
            out["reliance"] = self.reliance.to_dict()
        return {**self.extra, **_without_unset_later(out)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GenreSummary":
        known, extra = _known(cls, data)
        known["discovery"] = tuple(str(t) for t in known.get("discovery") or ())
        known["score"] = tuple(str(t) for t in known.get("score") or ())
        known["reliance"] = Reliance.from_dict(known.get("reliance"))
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class ConceptRecord:
    """The measures of one concept kept in the summary (its row holds TCAV, p-value, flags)."""

    concept_id: int
    black_share: float | None = None
    band_share: float | None = None
    signature_overlap: float | None = None  # demo: share of its patch pixels on planted signatures
    artefact_overlap: float | None = None  # demo: ... on planted artefacts
    cav_accuracy: float | None = None
    n_images: int | None = None
    magnitude: float | None = None  # mean directional derivative along its CAVs
    nyquist_share: float | None = None  # of its patch pixels, above the source's Nyquist frequency
    padding_share: float | None = None  # of its patch pixels, in the padding after the song ends
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"concept_id": self.concept_id}
        out.update({f.name: _round(getattr(self, f.name)) for f in fields(self) if f.name not in ("concept_id", "extra")})
        return {**self.extra, **_without_unset_later(out)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConceptRecord":
        known, extra = _known(cls, data)
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class ExtractionSummary:
    """What an extraction found, per genre and per concept, and how (stored as the ``summary`` JSON).

    ``random``, ``significance`` and ``artefact`` describe the protocol and the
    silence/band check for people (printed and shown as they are); ``genres`` and
    ``concepts`` are what programs read.
    """

    layer: str | None = None
    patch_mode: str | None = None
    cav_mode: str | None = None
    tcav_gradient: str | None = None
    genres: dict[str, GenreSummary] = field(default_factory=dict)
    concepts: tuple[ConceptRecord, ...] = ()
    clusters: int = 0
    random: dict[str, Any] = field(default_factory=dict)
    significance: dict[str, Any] = field(default_factory=dict)
    artefact: dict[str, Any] = field(default_factory=dict)
    fill_value: float | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    activation_shape: tuple[int, ...] = ()
    plan: dict[str, Any] = field(default_factory=dict)  # what the images were (scaled to the collection?)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "layer": self.layer, "patch_mode": self.patch_mode, "cav_mode": self.cav_mode,
            "tcav_gradient": self.tcav_gradient, "genres": {g: s.to_dict() for g, s in self.genres.items()},
            "random": self.random, "significance": self.significance, "artefact": self.artefact,
            "concepts": [c.to_dict() for c in self.concepts], "clusters": self.clusters,
            "fill_value": self.fill_value, "cache": self.cache, "activation_shape": list(self.activation_shape),
            "plan": self.plan,
        }
        return {**self.extra, **_without_unset_later(out)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ExtractionSummary":
        """From the stored JSON (None or ``{}`` for an extraction without one)."""
        known, extra = _known(cls, data or {})
        known["genres"] = {str(g): GenreSummary.from_dict(v or {}) for g, v in (known.get("genres") or {}).items()}
        known["concepts"] = tuple(ConceptRecord.from_dict(c) for c in known.get("concepts") or ())
        known["activation_shape"] = tuple(int(v) for v in known.get("activation_shape") or ())
        for name in ("random", "significance", "artefact", "cache", "plan"):
            known[name] = dict(known.get(name) or {})
        known["clusters"] = int(known.get("clusters") or 0)
        return cls(**known, extra=extra)

    def concept(self, concept_id: int) -> ConceptRecord | None:
        return next((c for c in self.concepts if c.concept_id == concept_id), None)

    @property
    def discovery_songs(self) -> int:
        return sum(len(g.discovery) for g in self.genres.values())


# -- job progress ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """Where a background job is: its stage and step, the step's count, the whole job's fraction.

    ``stage`` is a stage name while work runs (``"extract"``) and the job's phase
    around it (``"queued"``, ``"starting"``, ``"done"``). Stored as typed columns of the
    job's row (``stage``, ``step``, ``genre``, ``done``, ``total``, ``progress``).
    """

    stage: str
    step: str | None = None
    genre: str | None = None
    done: int = 0
    total: int = 0
    fraction: float = 0.0

    @classmethod
    def from_event(cls, event: ProgressEvent, fraction: float) -> "JobProgress":
        return cls(event.stage, event.step, event.genre, int(event.done), int(event.total), float(fraction))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "JobProgress":
        """From a job row (:meth:`whypop.store.RunStore.jobs`) or :meth:`to_dict`'s output."""
        return cls(
            row.get("stage") or "queued", row.get("step"), row.get("genre"), int(row.get("done") or 0),
            int(row.get("total") or 0), float((row.get("progress") if "progress" in row else row.get("fraction")) or 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "step": self.step, "genre": self.genre, "done": self.done,
                "total": self.total, "fraction": self.fraction}

    @property
    def text(self) -> str:
        """For people: ``"Rock: activations 120/430"``, or the phase (``"done"``)."""
        if not self.step:
            return self.stage
        label = f"{self.genre}: {self.step}" if self.genre else self.step
        return f"{label} {self.done}/{self.total}" if self.total else label
