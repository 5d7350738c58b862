"""Explain one song: the model's prediction and the concepts behind it.

Arrays in, a typed :class:`SongExplanation` out; the stage that reads the run store and
prepares the audio is :mod:`pipelines.explain`.

For a uint8 spectrogram (prepared exactly as the run's tracks) :class:`Explainer`:

- **predicts**: one forward pass, softmax over the genres;
- **places the concepts** of an extraction with :func:`whypop.ace.placement.place_concepts`
  (the song's segments, made into patches and activations as in discovery; a segment
  matches a concept within the concept's calibrated radius);
- measures each present concept's **influence** on the predicted genre k, two ways:

  - ``influence``: the directional derivative of the class logit along the concept's
    mean CAV (normalised to unit length) at this song, ``grad h_k(f_l(x)) . v_C`` (TCAV's
    S_C,k(x); its sign is what TCAV counts over songs). The same forward pass that
    predicts also gives the gradient: one backward pass for all concepts.
  - ``probability_drop``: p(k) minus p(k) with the concept's segments filled with the
    extraction's fill value (the training mean, as the patches are filled). One batched
    forward pass over the present concepts.

  The two can disagree: the CAV measure is linear and local at the layer, the fill a
  finite edit of the input.
- **ranks** the present concepts by ``influence``, then ``probability_drop``.

Regions are each matching segment's bounding box in seconds and Hz, through the image's
exact geometry (:mod:`whypop.geometry`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from whypop.ace.placement import ConceptBank, Placement, SegmentParams, concept_masks, fill_masks, place_concepts
from whypop.geometry import Region, hz_to_mel, pixels_to_region
from whypop.config import AudioConfig
from whypop.progress import Progress, ProgressEvent, null_progress

if TYPE_CHECKING:  # pragma: no cover
    import torch


# -- pixels <-> seconds and Hz (whypop.geometry) ----------------------------------------------


def overlaps_time(region: Region, start_s: float, end_s: float) -> bool:
    """Whether a region shares some time with [start_s, end_s)."""
    return region.start_s < end_s and start_s < region.end_s


def pixel_box_to_region(box: tuple[int, int, int, int], audio: AudioConfig, duration: float | None = None) -> Region:
    """Pixel box (x0, y0, x1, y1; ends exclusive; y0 the top row) -> the seconds and Hz its pixels cover.

    Through :func:`whypop.geometry.pixels_to_region` (the image's exact geometry);
    ``duration`` (the song's real length) cuts the end: columns beyond it are padding.
    """
    r = pixels_to_region(box, audio)
    if duration is not None and r.end_s > duration:
        r = Region(r.start_s, max(float(duration), r.start_s), r.low_hz, r.high_hz)
    return r


def _region_dict(r: Region) -> dict:
    return {"start_s": round(r.start_s, 4), "end_s": round(r.end_s, 4), "low_hz": round(r.low_hz, 2),
            "high_hz": round(r.high_hz, 2)}


# -- results --------------------------------------------------------------------------------


@dataclass
class ConceptExplanation:
    concept_id: int
    genre: str
    name: str
    influence: float  # directional derivative of the predicted genre's logit along the unit mean CAV
    probability_drop: float  # p(predicted) - p(predicted | the concept's segments filled)
    regions: list[Region]
    segments: list[int]  # indices into the song's segments
    area: float  # share of the image its segments cover
    significant: bool | None = None
    flags: list[str] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # pixel boxes of the regions

    def to_dict(self) -> dict:
        return {"concept_id": self.concept_id, "genre": self.genre, "name": self.name,
                "influence": round(self.influence, 6), "probability_drop": round(self.probability_drop, 6),
                "regions": [_region_dict(r) for r in self.regions], "segments": list(self.segments),
                "area": round(self.area, 4), "significant": self.significant, "flags": list(self.flags),
                "boxes": [list(b) for b in self.boxes]}

    @classmethod
    def from_dict(cls, d: dict) -> "ConceptExplanation":
        return cls(int(d["concept_id"]), d["genre"], d.get("name", f"concept {d['concept_id']}"), float(d["influence"]),
                   float(d["probability_drop"]), [Region.from_dict(r) for r in d["regions"]],
                   [int(s) for s in d.get("segments", [])], float(d.get("area", 0.0)), d.get("significant"),
                   list(d.get("flags", [])), [tuple(int(v) for v in b) for b in d.get("boxes", [])])


@dataclass
class Prediction:
    genre: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"genre": self.genre, "probabilities": {g: round(p, 6) for g, p in self.probabilities.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Prediction":
        return cls(d["genre"], {g: float(p) for g, p in d["probabilities"].items()})


@dataclass
class SongExplanation:
    """One song's prediction and its concepts, ranked by influence on the predicted genre."""

    song: str  # the file or the track id explained
    prediction: Prediction
    concepts: list[ConceptExplanation]
    extraction_id: int | None = None
    model_id: int | None = None
    track_id: str | None = None
    duration: float | None = None  # seconds of audio decoded
    n_segments: int = 0
    placement: dict = field(default_factory=dict)  # the rule and its parameters
    timings: dict[str, float] = field(default_factory=dict)
    content_hash: str | None = None
    genre: str | None = None  # the true genre, when known (a track of the run)

    def to_dict(self) -> dict:
        return {"song": self.song, "track_id": self.track_id, "genre": self.genre, "content_hash": self.content_hash,
                "duration": None if self.duration is None else round(self.duration, 4),
                "extraction_id": self.extraction_id, "model_id": self.model_id,
                "prediction": self.prediction.to_dict(), "concepts": [c.to_dict() for c in self.concepts],
                "n_segments": self.n_segments, "placement": dict(self.placement),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "SongExplanation":
        return cls(d["song"], Prediction.from_dict(d["prediction"]),
                   [ConceptExplanation.from_dict(c) for c in d["concepts"]], d.get("extraction_id"), d.get("model_id"),
                   d.get("track_id"), d.get("duration"), int(d.get("n_segments", 0)), dict(d.get("placement", {})),
                   {k: float(v) for k, v in d.get("timings", {}).items()}, d.get("content_hash"), d.get("genre"))

    def top(self, n: int = 3) -> list[ConceptExplanation]:
        return self.concepts[:n]


# -- the computation ------------------------------------------------------------------------


@dataclass
class ConceptInfo:
    """What the explanation shows of a concept besides its numbers."""

    name: str
    significant: bool | None = None
    flags: list[str] = field(default_factory=list)


class Explainer:
    """A model cut at the extraction's layer, the extraction's concepts, and how to segment.

    ``explain(image)`` -> (:class:`SongExplanation`, placements). Images are uint8 (H, W)
    spectrograms as the run prepares them.
    """

    def __init__(self, model: "torch.nn.Module", genres: Sequence[str], layer: str, bank: ConceptBank,
                 params: SegmentParams, audio: AudioConfig, device: "torch.device | str" = "cpu",
                 info: dict[int, ConceptInfo] | None = None, batch_size: int = 32):
        from whypop.ace.activations import LayerProbe

        if bank.mean_cavs is None:
            raise ValueError("the concept bank holds no mean CAVs")
        self.model = model.eval()
        self.genres = list(genres)
        self.probe = LayerProbe(model, layer, device, batch_size)
        self.bank = bank
        self.params = params
        self.audio = audio
        self.device = self.probe.device
        self.info = dict(info or {})
        norms = np.linalg.norm(bank.mean_cavs, axis=1, keepdims=True)
        self.unit_cavs = (bank.mean_cavs / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.last_counts: dict[str, int] = {}  # network inputs of the last explanation (patches, filled images)

    def embed(self, patches: np.ndarray) -> np.ndarray:
        return self.probe.activations(patches)

    def forward_backward(self, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """One pass: probabilities (G,), the gradient of the predicted (or given) class logit at the layer, the class."""
        import torch

        from whypop.model import preprocess

        leaves: list[torch.Tensor] = []

        def hook(_m, _i, output):
            leaf = output.detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf

        handle = self.probe.module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = self.model(preprocess(np.asarray(image, np.uint8)[None], self.device)).float()
                probs = torch.softmax(logits, dim=1)[0].detach().cpu().numpy()
                k = int(np.argmax(probs)) if class_index is None else int(class_index)
                (grad,) = torch.autograd.grad(logits[0, k], leaves[0])
        finally:
            handle.remove()
        return probs.astype(np.float64), grad.float().cpu().numpy()[0], k

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax (N, G) of uint8 images (N, H, W), in batches."""
        import torch

        from whypop.model import preprocess

        out = []
        with torch.inference_mode():
            for s in range(0, len(images), self.probe.batch_size):
                logits = self.model(preprocess(np.asarray(images[s : s + self.probe.batch_size]), self.device))
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.genres)))

    def explain(self, image: np.ndarray, song: str, duration: float | None = None,
                progress: Progress = null_progress) -> tuple[SongExplanation, list[Placement]]:
        image = np.array(image, dtype=np.uint8)  # a writable copy (torch refuses read-only arrays)
        timings: dict[str, float] = {}
        steps = 4

        def step(name: str, done: int) -> None:
            progress(ProgressEvent("explain", name, done, steps))

        t = time.perf_counter()
        step("prediction", 0)
        probs, grad, k = self.forward_backward(image)
        timings["forward_backward"] = time.perf_counter() - t
        t = time.perf_counter()
        step("segments", 1)
        placements = place_concepts(image, self.bank, self.embed, self.params)
        timings["placement"] = time.perf_counter() - t
        present = []  # bank indices in order of first appearance
        for p in placements:
            for m in p.matches:
                i = self.bank.index(m.concept_id)
                if i not in present:
                    present.append(i)
        t = time.perf_counter()
        step("influence", 2)
        derivative = self.unit_cavs[present] @ grad.reshape(-1) if present else np.zeros(0)
        masks = [concept_masks(placements, int(self.bank.concept_ids[i])) for i in present]
        # concepts on the same segments (one per genre can match a segment) share one filled image
        keys = [tuple(p.segment for p in placements if any(m.concept_id == int(self.bank.concept_ids[i])
                                                            for m in p.matches)) for i in present]
        distinct = list(dict.fromkeys(keys))
        first = {key: keys.index(key) for key in distinct}
        if present:
            filled = np.stack([fill_masks(image, masks[first[key]], self.params.fill) for key in distinct])
            p_distinct = self.probabilities(filled)[:, k]
            p_filled = np.array([p_distinct[distinct.index(key)] for key in keys])
        else:
            p_filled = np.zeros(0)
        self.last_counts = {"patches": len(placements), "filled": len(distinct)}
        timings["influence"] = time.perf_counter() - t
        step("ranking", 3)
        concepts = []
        for j, i in enumerate(present):
            cid = int(self.bank.concept_ids[i])
            segs = [p.segment for p in placements if any(m.concept_id == cid for m in p.matches)]
            boxes = [_bbox(placements[s].mask) for s in segs]
            order = sorted(range(len(segs)), key=lambda a: (boxes[a][0], boxes[a][1]))
            info = self.info.get(cid, ConceptInfo(f"{self.bank.genres[i]} concept {cid}"))
            concepts.append(ConceptExplanation(
                cid, self.bank.genres[i], info.name, float(derivative[j]), float(probs[k] - p_filled[j]),
                [pixel_box_to_region(boxes[a], self.audio, duration) for a in order], [segs[a] for a in order],
                float(masks[j].any(axis=0).mean()), info.significant, list(info.flags), [boxes[a] for a in order],
            ))
        concepts.sort(key=lambda c: (-c.influence, -c.probability_drop, c.concept_id))
        step("ranking", 4)
        prediction = Prediction(self.genres[k], {g: float(p) for g, p in zip(self.genres, probs)})
        placement_info = {
            "rule": f"a segment matches a concept when its distance to the concept's centre is at most the "
                    f"{self.bank.quantile:.0%} quantile of the concept's own members' distances; at most one "
                    f"concept per genre (the nearest in units of that radius)",
            "quantile": self.bank.quantile, **self.params.to_dict(),
        }
        return SongExplanation(song, prediction, concepts, duration=duration, n_segments=len(placements),
                               placement=placement_info, timings=timings), placements


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    from whypop.ace.patches import mask_bbox

    return mask_bbox(mask)


# -- the song view as a PNG -------------------------------------------------------------------


def render_png(image: np.ndarray, explanation: SongExplanation, placements: Sequence[Placement], audio: AudioConfig,
               top: int = 5) -> bytes:
    """The song's spectrogram with the top concepts' segments outlined and labelled (panel 5 as a file)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    palette = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]
    size = image.shape[0]
    span = float(audio.duration)
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=100)
    ax.imshow(image, cmap="magma", origin="upper", extent=(0, span, 0, size), aspect="auto", vmin=0, vmax=255)
    nyq = audio.sample_rate / 2
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000, 16000) if f < nyq]
    topm = float(hz_to_mel(nyq))
    ax.set_yticks([size * float(hz_to_mel(f)) / topm for f in ticks])
    ax.set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    handles = []
    xs = (np.arange(size) + 0.5) / size * span
    ys = size - (np.arange(size) + 0.5)
    for n, c in enumerate(explanation.concepts[:top]):
        color = palette[n % len(palette)]
        for s in c.segments:
            ax.contour(xs, ys, placements[s].mask.astype(float), levels=[0.5], colors=[color], linewidths=1.6)
        handles.append(Line2D([], [], color=color, lw=2,
                              label=f"{n + 1}. {c.name}: influence {c.influence:+.3g}, p drop {c.probability_drop:+.2f}"))
    p = explanation.prediction
    ax.set_title(f"{explanation.song}: predicted {p.genre} ({p.probabilities[p.genre]:.0%})", fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no concept of this extraction in this song", transform=ax.transAxes, ha="center",
                color="white")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
