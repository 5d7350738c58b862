"""Stage: explain songs with an extraction's concepts (songs the run has never seen, or its tracks).

- **The song is prepared exactly as the run's tracks**: the run's stored configuration,
  :func:`pipelines.prepare.prepare_one` (decode, mono, resample, fix length, mel, image).
  A track of the run is explained from its stored spectrogram (what the model was
  trained and tested on).
- **The model** is the one the extraction was made with (not necessarily the newest).
- **The concepts** are placed with :mod:`whypop.ace.placement`; their bank (centres and
  calibrated radii, from the members' activations recomputed exactly as discovery made
  them) is built once per extraction and cached under ``<run>/cache/explain/``.
- The computation is :class:`whypop.explain.Explainer`.

Uploaded songs (the dashboard) are stored under ``<run>/uploads/<sha256>/`` (the file,
its spectrogram, and one explanation per extraction): the same file is computed once, and
nothing of the run's own data is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipelines.common import load_current
from pipelines.prepare import prepare_one
from whypop.ace.activations import ActivationCache, LayerProbe, digest, masked_means, spatial_means, weights_digest
from whypop.ace.patches import make_patches
from whypop.ace.placement import QUANTILE, ConceptBank, Placement, SegmentParams, concept_masks, patch_features, segment
from whypop.audio import encode_png
from whypop.config import Config
from whypop.errors import InputError, NotFound, StoreError
from whypop.explain import ConceptInfo, Explainer, SongExplanation, render_png
from whypop.extraction_files import _load_masks, load_arrays
from whypop.model import CHECKPOINT_NAME, LoadedModel, load_checkpoint_file, model_from_state, resolve_device
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.store import RunStore

log = logging.getLogger(__name__)

UPLOADS = "uploads"
AUDIO_SUFFIXES = (".mp3", ".ogg", ".flac", ".wav")


# -- the concept bank of an extraction ----------------------------------------------------------


def load_model(store: RunStore, model_id: int | None, device: str = "auto"):
    """The model ``model_id`` of the run (the extraction's), as a :class:`whypop.model.LoadedModel`."""
    if model_id is None:
        return load_current(store, device)
    info = next((m for m in store.models() if m["model_id"] == int(model_id) and m["status"] == "complete"), None)
    if info is None:
        raise StoreError(f"model {model_id} of run {store.root} is missing or incomplete")
    payload = load_checkpoint_file(Path(info["path"]) / CHECKPOINT_NAME)
    dev = resolve_device(device)
    model = model_from_state(payload["arch"], payload["state_dict"], len(payload["genres"])).to(dev).eval()
    return LoadedModel(model, payload["arch"], list(payload["genres"]), int(payload["image_size"]), info["model_id"],
                       dev, info["metrics"])


def segment_params(store: RunStore, extraction_id: int) -> SegmentParams:
    """The extraction's segmentation and patch parameters, and its fill value."""
    ex = store.extraction(extraction_id)
    fill = ex["summary"].get("fill_value")
    if fill is None:
        raise StoreError(f"extraction {extraction_id} records no fill value; extract again")
    size = int(store.stored_config().audio.image_size) if store.stored_config() else 224
    return SegmentParams.from_extract(ex["params"]["extract"], float(fill), size)


def build_bank(store: RunStore, extraction_id: int, probe, params: SegmentParams, weights_key: str = "",
               quantile: float = QUANTILE, progress: Progress = null_progress, cache: bool = True) -> ConceptBank:
    """The extraction's :class:`ConceptBank`: each concept's member features, recomputed as discovery made them.

    Per genre, the discovery songs' stored segments become patches exactly as in
    discovery; when discovery's activation cache still holds the genre's patches (same
    weights, layer and patch bytes) it is reused, otherwise only the members' patches
    are computed. The bank is cached under ``<run>/cache/explain/`` by extraction,
    weights, layer and parameters (when the run is writable).
    """
    ex = store.extraction(extraction_id)
    layer = ex["params"]["extract"]["layer"]
    key = digest("bank", 3, extraction_id, ex.get("finished"), weights_key, layer, json.dumps(params.to_dict()), quantile)
    path = store.root / "cache" / "explain" / f"bank-{key}.npz"
    if cache and path.is_file():
        try:
            return ConceptBank.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable bank %s (%s)", path, exc)
    concepts = store.concepts(extraction_id)
    if not concepts:
        raise StoreError(f"extraction {extraction_id} has no concepts to place")
    arrays = load_arrays(store, extraction_id)
    cav_index = {int(c): i for i, c in enumerate(arrays["concept_ids"])}
    rows = store.patches(extraction_id)
    by_concept: dict[int, list[tuple[str, int]]] = {}
    for r in rows:
        by_concept.setdefault(int(r["concept_id"]), []).append((r["track_id"], int(r["mask"].rsplit("#", 1)[1])))
    discovery = {g: info["discovery"] for g, info in ex["summary"]["genres"].items()}
    act_cache = ActivationCache(store.root / "cache" / "activations" if (store.root / "cache" / "activations").is_dir() else None)
    seg_dir = Path(ex["path"]) / "segments"
    features: dict[tuple[str, int], np.ndarray] = {}
    genres = list(discovery)
    for gi, g in enumerate(genres):
        progress(ProgressEvent("explain", "concept bank", gi, len(genres), g))
        tids = discovery[g]
        wanted = {m for c in concepts if c["genre"] == g for m in by_concept.get(int(c["concept_id"]), [])}
        if not wanted:
            continue
        images, masks = {}, {}
        for tid in tids:
            if not any(w[0] == tid for w in wanted):
                continue
            packed, shape = _load_masks(str(seg_dir / f"{tid}.npz"))
            masks[tid] = np.unpackbits(packed, axis=-1, count=int(shape[2])).astype(bool).reshape(shape)
            images[tid] = store.load_spectrogram(tid)
        reused = _from_discovery_cache(store, act_cache, tids, images, masks, params, weights_key, layer, probe)
        if reused is not None:
            features.update({k: v for k, v in reused.items() if k in wanted})
            continue
        for tid in images:
            idx = sorted(i for t, i in wanted if t == tid)
            f = patch_features(images[tid], masks[tid][idx], params, probe.activations)
            features.update({(tid, i): f[j] for j, i in enumerate(idx)})
    progress(ProgressEvent("explain", "concept bank", len(genres), len(genres)))
    ids_, gen, members, cavs = [], [], [], []
    for c in concepts:
        cid = int(c["concept_id"])
        mem = [features[m] for m in by_concept.get(cid, []) if m in features]
        if not mem or cid not in cav_index:
            continue
        ids_.append(cid)
        gen.append(c["genre"])
        members.append(np.stack(mem))
        cavs.append(arrays["mean_cavs"][cav_index[cid]])
    bank = ConceptBank.from_members(ids_, gen, members, quantile, np.stack(cavs))
    if cache:
        try:
            bank.save(path)
        except OSError as exc:  # a read-only run: keep the bank in memory
            log.info("concept bank not cached (%s)", exc)
    return bank


def _from_discovery_cache(store, act_cache, tids, images, masks, params, weights_key, layer, probe):
    """Features of every segment of a genre's discovery songs from discovery's own cache, or None."""
    if act_cache.root is None or len(images) != len(tids):
        return None
    patches = np.concatenate([make_patches(images[t], masks[t], params.fill, params.patch_mode, params.image_size)
                              for t in tids])
    acts = act_cache.get(digest("activations", weights_key, layer, patches))
    if acts is None or len(acts) != len(patches):
        return None
    all_masks = np.concatenate([masks[t] for t in tids])
    feats = masked_means(acts, all_masks) if params.patch_mode == "inplace" else spatial_means(acts)
    keys = [(t, i) for t in tids for i in range(len(masks[t]))]
    return dict(zip(keys, feats))


# -- one explainer per extraction ---------------------------------------------------------------


@dataclass
class Context:
    """Everything needed to explain songs with one extraction of one run."""

    store: RunStore
    cfg: Config  # the run's stored configuration
    extraction_id: int
    model_id: int | None
    explainer: Explainer


def resolve_extraction(store: RunStore, extraction_id: int | str | None) -> int:
    ex = store.extraction(extraction_id)  # NotFound / StoreError with a message
    if ex["status"] != "complete":
        raise InputError(f"extraction {ex['extraction_id']} is {ex['status']}: explain with a complete one")
    return int(ex["extraction_id"])


def context(store: RunStore, extraction_id: int | str | None = None, device: str = "auto",
            progress: Progress = null_progress, cache: bool = True) -> Context:
    """Load the extraction's model and concept bank (built once, then cached in the run unless ``cache`` is False)."""
    eid = resolve_extraction(store, extraction_id)
    ex = store.extraction(eid)
    cfg = store.stored_config()
    if cfg is None:
        raise StoreError(f"run {store.root} holds no configuration; prepare it first")
    loaded = load_model(store, ex.get("model_id"), device)
    layer = ex["params"]["extract"]["layer"]
    params = segment_params(store, eid)
    if params.image_size != loaded.image_size:
        raise StoreError(f"the run's images are {params.image_size} px but model {loaded.model_id} expects "
                         f"{loaded.image_size} px")
    batch = int(ex["params"]["extract"].get("batch_size", 32))
    probe = LayerProbe(loaded.model, layer, loaded.device, batch)
    bank = build_bank(store, eid, probe, params, weights_digest(loaded.model), progress=progress, cache=cache)
    info = {int(c["concept_id"]): ConceptInfo(c["name"], bool(c["significant"]), [f["flag"] for f in c["flags"]])
            for c in store.concepts(eid)}
    explainer = Explainer(loaded.model, loaded.genres, layer, bank, params, cfg.audio, loaded.device, info, batch)
    return Context(store, cfg, eid, loaded.model_id, explainer)


# -- songs -----------------------------------------------------------------------------------------


def prepare_song(path: str | Path, cfg: Config) -> tuple[np.ndarray, float]:
    """A song file -> (uint8 spectrogram, seconds decoded), exactly as ``prepare`` makes the run's tracks."""
    quiet = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, audio_features=False))
    result = prepare_one(Path(path).name, str(path), quiet)
    if result.error is not None:
        raise InputError(f"{Path(path).name}: {result.error}")
    with Image.open(io.BytesIO(result.png)) as im:
        return np.array(im.convert("L")), float(result.duration)


def explain_image(ctx: Context, image: np.ndarray, song: str, duration: float | None,
                  progress: Progress = null_progress) -> tuple[SongExplanation, list[Placement]]:
    start = time.perf_counter()
    explanation, placements = ctx.explainer.explain(image, song, duration, progress)
    explanation.extraction_id = ctx.extraction_id
    explanation.model_id = ctx.model_id
    explanation.timings["total"] = time.perf_counter() - start
    return explanation, placements


def explain_file(ctx: Context, path: str | Path, progress: Progress = null_progress) -> tuple[SongExplanation, list[Placement], np.ndarray]:
    t = time.perf_counter()
    image, duration = prepare_song(path, ctx.cfg)
    prep = time.perf_counter() - t
    explanation, placements = explain_image(ctx, image, str(path), duration, progress)
    explanation.timings["prepare"] = prep
    explanation.timings["total"] += prep
    return explanation, placements, image


def explain_track(ctx: Context, track_id: str, progress: Progress = null_progress) -> tuple[SongExplanation, list[Placement], np.ndarray]:
    track = ctx.store.track(track_id)  # NotFound names the id
    if track.status != "ok":
        raise InputError(f"track {track_id} has no spectrogram ({track.error or track.status})")
    image = ctx.store.load_spectrogram(track_id)
    explanation, placements = explain_image(ctx, image, track_id, track.duration, progress)
    explanation.track_id = track_id
    explanation.genre = track.genre
    return explanation, placements, image


# -- a concept's placed regions in a song (for listening) ------------------------------------------


def placed_mask(store: RunStore, extraction_id: int, image: np.ndarray, explanation: SongExplanation,
                concept_id: int) -> np.ndarray:
    """The union (H, W) of the segments an explanation placed a concept on; empty when it placed none there.

    The song's segments are recomputed from its image exactly as placement made them
    (same parameters, deterministic), so a stored explanation needs no model.
    """
    image = np.asarray(image, dtype=np.uint8)
    c = next((c for c in explanation.concepts if c.concept_id == int(concept_id)), None)
    if c is None or not c.segments:
        return np.zeros(image.shape, dtype=bool)
    masks = segment(image, segment_params(store, extraction_id))
    if max(c.segments) >= len(masks):
        raise StoreError(f"the explanation of {explanation.song} names segment {max(c.segments)} but the song has "
                         f"{len(masks)}: explain it again")
    return masks[list(c.segments)].any(axis=0)


def track_placed_mask(ctx: Context, track_id: str, concept_id: int, progress: Progress = null_progress) -> np.ndarray:
    """A concept's placed regions (H, W) in a track of the run, from a fresh explanation of it."""
    _, placements, image = explain_track(ctx, track_id, progress)
    masks = concept_masks(placements, int(concept_id))
    return masks.any(axis=0) if len(masks) else np.zeros(image.shape, dtype=bool)


def upload_placed_mask(store: RunStore, digest_: str, extraction_id: int, concept_id: int,
                       ctx: "Context | None" = None, progress: Progress = null_progress) -> np.ndarray:
    """A concept's placed regions in an uploaded song: its stored explanation (made now with ``ctx`` when missing)."""
    e = cached_upload(store, digest_, extraction_id)
    if e is None:
        if ctx is None:
            raise NotFound(f"uploaded song {digest_[:12]} is not explained with extraction {extraction_id} yet")
        e = explain_upload(ctx, digest_, progress)
    return placed_mask(store, extraction_id, upload_image(store, digest_), e, concept_id)


def upload_image(store: RunStore, digest_: str) -> np.ndarray:
    """An uploaded song's stored spectrogram (uint8)."""
    path = upload_dir(store, digest_) / "spectrogram.png"
    if not path.is_file():
        raise NotFound(f"uploaded song {digest_[:12]} has no spectrogram yet: explain it first")
    with Image.open(path) as im:
        return np.array(im.convert("L"))


@dataclass
class ExplainResult:
    """The stage's result: one explanation per song, and the PNG files written."""

    explanations: list[SongExplanation]
    pngs: list[Path]

    def to_dict(self) -> dict:
        return {"explanations": [e.to_dict() for e in self.explanations], "pngs": [str(p) for p in self.pngs]}

    @classmethod
    def from_dict(cls, d: dict) -> "ExplainResult":
        return cls([SongExplanation.from_dict(e) for e in d["explanations"]], [Path(p) for p in d["pngs"]])


def run(cfg: Config | None, store: RunStore, progress: Progress = null_progress, *, songs: Sequence[str | Path] = (),
        track_ids: Sequence[str] = (), extraction_id: int | str | None = None, out: str | Path | None = None,
        device: str = "auto") -> ExplainResult:
    """Explain song files and tracks of the run; with ``out``, write a song-view PNG (and JSON) per song.

    ``cfg`` is ignored for preparation (the run's stored configuration is what its tracks
    were prepared with); it is accepted for the stage signature.
    """
    for s in songs:
        p = Path(s)
        if not p.is_file():
            raise InputError(f"song file not found: {s}")
    ctx = context(store, extraction_id, device, progress)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    explanations, pngs = [], []
    jobs = [("file", s) for s in songs] + [("track", t) for t in track_ids]
    for n, (kind, item) in enumerate(jobs):
        progress(ProgressEvent("explain", "songs", n, len(jobs)))
        if kind == "file":
            e, placements, image = explain_file(ctx, item, progress)
        else:
            e, placements, image = explain_track(ctx, str(item), progress)
        explanations.append(e)
        if out_dir is not None:
            stem = _safe_stem(Path(str(item)).stem if kind == "file" else str(item))
            png = out_dir / f"{stem}.png"
            png.write_bytes(render_png(image, e, placements, ctx.cfg.audio))
            (out_dir / f"{stem}.json").write_text(json.dumps(e.to_dict(), indent=1))
            pngs.append(png)
    progress(ProgressEvent("explain", "songs", len(jobs), len(jobs)))
    return ExplainResult(explanations, pngs)


def _safe_stem(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return keep[:100] or "song"


# -- uploads (the dashboard) -----------------------------------------------------------------------


def content_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upload_dir(store: RunStore, digest_: str) -> Path:
    if len(digest_) != 64 or any(c not in "0123456789abcdef" for c in digest_):
        raise NotFound(f"bad upload id {digest_!r}")
    return store.root / UPLOADS / digest_


def store_upload(store: RunStore, tmp_file: str | Path, filename: str) -> str:
    """Move an uploaded file into ``<run>/uploads/<sha256>/`` (kept once per content); returns the hash."""
    suffix = Path(filename).suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise InputError(f"{filename!r} is not a supported audio file: upload one of {', '.join(AUDIO_SUFFIXES)}")
    h = content_hash(tmp_file)
    d = store.root / UPLOADS / h
    target = d / f"audio{suffix}"
    if target.is_file():
        Path(tmp_file).unlink(missing_ok=True)
        return h
    d.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp_file), str(target))
    meta = d / "upload.json"
    if not meta.is_file():
        meta.write_text(json.dumps({"filename": filename, "sha256": h, "uploaded": time.time()}))
    return h


def upload_audio(store: RunStore, digest_: str) -> Path:
    d = upload_dir(store, digest_)
    for p in sorted(d.glob("audio.*")) if d.is_dir() else ():
        if p.suffix in AUDIO_SUFFIXES:
            return p
    raise NotFound(f"no uploaded song {digest_[:12]}")


def upload_name(store: RunStore, digest_: str) -> str:
    try:
        return json.loads((upload_dir(store, digest_) / "upload.json").read_text())["filename"]
    except (OSError, ValueError, KeyError):
        return digest_[:12]


def cached_upload(store: RunStore, digest_: str, extraction_id: int) -> SongExplanation | None:
    path = upload_dir(store, digest_) / f"explanation-{int(extraction_id)}.json"
    if path.is_file():
        try:
            return SongExplanation.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError):
            return None
    return None


def explain_upload(ctx: Context, digest_: str, progress: Progress = null_progress) -> SongExplanation:
    """Explain an uploaded song once per extraction; results stay beside the upload."""
    hit = cached_upload(ctx.store, digest_, ctx.extraction_id)
    if hit is not None:
        return hit
    d = upload_dir(ctx.store, digest_)
    e, placements, image = explain_file(ctx, upload_audio(ctx.store, digest_), progress)
    e.song = upload_name(ctx.store, digest_)
    e.content_hash = digest_
    ctx.store.write_bytes_atomic(str((d / "spectrogram.png").relative_to(ctx.store.root)), encode_png(image))
    ctx.store.write_bytes_atomic(str((d / f"explanation-{ctx.extraction_id}.json").relative_to(ctx.store.root)),
                                 json.dumps(e.to_dict()).encode())
    return e
