"""The demo stage: prepare the synthetic collection, train, extract, each only when missing.

Genres told apart by planted signature sounds, one genre with a planted silent-band
artefact (see :mod:`whypop.demo`). Each stage is skipped when the run already holds its
result, so a second `whypop demo` starts serving in seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from pipelines import extract, prepare, train
from whypop.config import Config
from whypop.progress import Progress, null_progress
from whypop.results import ExtractionSummary
from whypop.store import RunStore

log = logging.getLogger(__name__)

Say = Callable[[str], None]


def build(cfg: Config, store: RunStore, progress: Progress = null_progress, workers: int | None = None,
          say: Say = log.info) -> dict[str, float]:
    """Run every missing stage; returns seconds per stage (0 for a reused stage).

    ``say`` receives one line per stage for the user (the command prints them).
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if store.tracks(status="ok"):
        say(f"reusing the prepared demo collection in {store.root}")
        timings["prepare"] = 0.0
    else:
        say(f"generating {cfg.demo.genres} synthetic genres x {cfg.demo.clips_per_genre} clips and preparing spectrograms")
        prepare.run(cfg, store, demo=True, workers=workers, progress=progress)
        timings["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    if store.current_model() is not None:
        say("reusing the trained model")
        timings["train"] = 0.0
    else:
        if cfg.train.pretrained == "none":
            say(f"training {cfg.train.arch} FROM SCRATCH (no ImageNet weights: train.pretrained = \"none\")")
        metrics = train.run(cfg, store, progress)
        acc = metrics.get("accuracy", {})
        say("test accuracy {:.1%}, validation {:.1%}".format(acc.get("test", float("nan")), acc.get("validation", float("nan"))))
        timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    if store.extractions():
        say("reusing the latest concept extraction")
        timings["extract"] = 0.0
    else:
        say("discovering concepts with ACE and scoring them with TCAV")
        extraction_id = extract.run(cfg, store, progress)
        summary = ExtractionSummary.from_dict(store.extraction(extraction_id)["summary"])
        for genre, g in sorted(summary.genres.items()):
            if g.overlap is not None:
                say(f"{genre}: top concept overlaps its planted signature {g.overlap:.2f} (chance {g.chance:.2f})")
        timings["extract"] = time.perf_counter() - t
    return timings
