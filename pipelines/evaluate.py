"""Stage: are an extraction's concepts true to the model? Deletion and insertion tests.

For each genre of an extraction, on the genre's **held-out songs that discovery never
saw**: the prepared validation and test tracks of the genre minus its discovery songs
(the TCAV score songs are among them: they never shaped a concept, only its score; their
share is recorded). The concepts are placed in each song with the per-song explanation's
rule (:mod:`whypop.ace.placement`: the song segmented as discovery does, each segment
assigned to a concept when its feature lies within the concept's calibrated radius),
then :func:`whypop.ace.faithfulness.evaluate_genre` fills (deletion) or keeps
(insertion) the regions of the top-k, k random (same area) and k bottom concepts with
the extraction's fill value (the training mean, as patches are filled).

Concepts are ranked as the extraction ranks its top concept: first the significant
concepts raising the class (TCAV score above 0.5 and above the random null), by TCAV
magnitude; then the others by magnitude. The bottom concepts are the last of that order.

The result is written beside the extraction's arrays as ``faithfulness.json`` and shown
by ``whypop status --json`` under ``faithfulness``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from whypop.ace import faithfulness as fm
from whypop.ace import placement as pl
from whypop.config import Config
from whypop.errors import Cancelled
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.store import RunStore

log = logging.getLogger(__name__)
STAGE = "evaluate"
PLACE_STEP = "placing concepts"  # per genre, before its deletion and insertion tests

FILE = fm.FILE
HELDOUT = ("validation", "test")


def heldout_songs(store: RunStore, genre: str, discovery: list[str], limit: int = 0) -> list[str]:
    """The genre's prepared validation + test tracks minus its discovery songs, sorted (the first ``limit``)."""
    skip = set(discovery)
    ids = sorted(t.track_id for t in store.tracks(status="ok", genre=genre) if t.split in HELDOUT and t.track_id not in skip)
    return ids[:limit] if limit > 0 else ids


def rank_concepts(concepts: list[dict], extra: dict[int, dict], null_mean: float) -> list[int]:
    """Concept ids of one genre, most important first (see the module docstring)."""
    def key(c: dict):
        raising = c["significant"] and c["tcav_mean"] > max(0.5, null_mean)
        return (0 if raising else 1, -float(extra.get(c["concept_id"], {}).get("magnitude") or 0.0),
                -c["tcav_mean"], c["concept_id"])

    return [c["concept_id"] for c in sorted(concepts, key=key)]


def load(store: RunStore, extraction_id: int | None = None) -> fm.Faithfulness | None:
    """The stored faithfulness of an extraction (the latest complete one by default), or None."""
    return fm.load_file(store.extraction(extraction_id)["path"])


def _predictor(loaded, batch_size: int, clock: dict) -> fm.Predict:
    import torch

    from whypop.model import preprocess

    def predict(images: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = []
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = preprocess(np.asarray(images[s : s + batch_size]), loaded.device)
                out.append(torch.softmax(loaded.model(x).float(), dim=1).cpu().numpy())
        clock["forward"] += time.perf_counter() - t
        clock["images"] += len(images)
        return np.concatenate(out) if out else np.zeros((0, len(loaded.genres)), np.float32)

    return predict


def run(
    cfg: Config,
    store: RunStore,
    progress: Progress = null_progress,
    extraction_id: int | None = None,
    *,
    cancel: Callable[[], bool] | None = None,
) -> fm.Faithfulness:
    """Deletion and insertion tests of an extraction (the latest complete one by default)."""
    from pipelines.explain import build_bank, load_model, segment_params
    from whypop.ace.activations import LayerProbe, weights_digest

    start = time.perf_counter()
    progress = progress or null_progress

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("evaluation cancelled")

    ex = store.extraction(extraction_id)
    eid = int(ex["extraction_id"])
    ev = cfg.extract
    loaded = load_model(store, ex.get("model_id"), ev.device)  # the extraction's model
    summary = ex["summary"] or {}
    params = segment_params(store, eid)  # discovery's segments, patches and fill
    fill = params.fill
    layer = ((ex.get("params") or {}).get("extract") or {}).get("layer", ev.layer)
    probe = LayerProbe(loaded.model, layer, loaded.device, ev.batch_size)
    embed = probe.activations

    clock = {"forward": 0.0, "images": 0}
    predict = _predictor(loaded, ev.batch_size, clock)
    concepts = store.concepts(eid)
    extra = {int(e["concept_id"]): e for e in summary.get("concepts", [])}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    progress(ProgressEvent(STAGE, "concept bank", 0, 1))
    bank = build_bank(store, eid, probe, params, weights_digest(loaded.model), cache=ev.cache)
    progress(ProgressEvent(STAGE, "concept bank", 1, 1))
    timings["bank"] = time.perf_counter() - t

    genres: dict[str, fm.GenreFaithfulness] = {}
    score_share: dict[str, int] = {}
    for genre, info in (summary.get("genres") or {}).items():
        check()
        mine = [c for c in concepts if c["genre"] == genre and c["concept_id"] in set(bank.concept_ids.tolist())]
        songs = heldout_songs(store, genre, info.get("discovery") or [], ev.evaluate_songs)
        if not mine or not songs:
            log.warning("evaluate: genre %s skipped (%d concepts, %d held-out songs)", genre, len(mine), len(songs))
            continue
        class_index = loaded.genres.index(genre)
        t = time.perf_counter()
        images = np.stack([store.load_spectrogram(s) for s in songs])
        ids = [c["concept_id"] for c in mine]
        col = {cid: i for i, cid in enumerate(ids)}
        regions = np.zeros((len(songs), len(ids), *images.shape[1:]), dtype=bool)
        segments = []
        for n, image in enumerate(images):
            check()
            placed = pl.place_concepts(image, bank, embed, params)
            segments.append(np.stack([p.mask for p in placed]) if placed else np.zeros((0, *image.shape), bool))
            for p in placed:
                for m in p.matches:
                    if m.concept_id in col:
                        regions[n, col[m.concept_id]] |= p.mask
            progress(ProgressEvent(STAGE, PLACE_STEP, n + 1, len(images), genre))
        timings["placement"] = timings.get("placement", 0.0) + time.perf_counter() - t
        ranking = rank_concepts(mine, extra, float(info.get("null_mean", 0.5)))
        t = time.perf_counter()
        genres[genre] = fm.evaluate_genre(
            genre, class_index, images, regions, [col[c] for c in ranking], ids, fill, predict,
            track_ids=songs, segments=segments, max_k=fm.MAX_K, draws=ev.evaluate_draws, seed=ev.seed, batch_size=ev.batch_size,
            progress=progress,
        )
        timings["tests"] = timings.get("tests", 0.0) + time.perf_counter() - t
        score_share[genre] = len(set(songs) & set(info.get("score") or []))
    timings["forward"] = clock["forward"]
    timings["total"] = time.perf_counter() - start
    words = ("each genre's prepared validation and test tracks minus its discovery songs"
             + (f" (at most {ev.evaluate_songs})" if ev.evaluate_songs else "")
             + "; of them TCAV score songs: " + ", ".join(f"{g} {n}" for g, n in score_share.items()))
    result = fm.Faithfulness(eid, fill, words, genres, {k: round(v, 3) for k, v in timings.items()}, clock["images"])
    rel = Path(ex["path"]).relative_to(store.root) / FILE
    store.write_bytes_atomic(str(rel), json.dumps(result.to_dict(), indent=1).encode())
    log.info("evaluation of extraction %d: %d genres in %.1f s", eid, len(genres), timings["total"])
    return result
