"""Stage: concept discovery under several seeds, and how well the concepts match.

``run(cfg, store, progress, seeds=N)`` runs the extraction N times with
``extract.seed`` + 1 .. + N-1 first and ``extract.seed`` last, so the reference (the
configured seed) is the latest extraction, the one the dashboard opens and the only one
tested by deletion and insertion. The others are kept as ordinary extractions. The
comparison (:mod:`whypop.ace.stability`) is written beside the reference's arrays as
``stability.json`` and shown by ``whypop status`` under ``stability``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines import extract
from whypop.ace import stability as st
from whypop.config import Config
from whypop.errors import ConfigError
from whypop.progress import Progress, null_progress
from whypop.results import load_arrays
from whypop.store import RunStore

log = logging.getLogger(__name__)

FILE = st.FILE


def read_run(store: RunStore, extraction_id: int) -> st.Run:
    """What matching needs of one complete extraction."""
    ex = store.extraction(extraction_id)
    arrays = load_arrays(store, extraction_id)
    rows = {c["concept_id"]: c for c in store.concepts(extraction_id)}
    ids = arrays["concept_ids"]
    genres_summary = (ex["summary"] or {}).get("genres") or {}
    return st.Run(
        extraction_id=int(extraction_id), seed=int(((ex.get("params") or {}).get("extract") or {}).get("seed", 0)),
        concept_ids=ids, genres=[rows[int(i)]["genre"] for i in ids],
        significant=np.array([rows[int(i)]["significant"] for i in ids], dtype=bool),
        mean_cavs=arrays["mean_cavs"],
        top={g: v.get("top_concept") for g, v in genres_summary.items()},
        planted={g: (v.get("overlap"), v.get("chance")) for g, v in genres_summary.items()},
    )


def compare(store: RunStore, extraction_ids: list[int]) -> st.Stability:
    """Match the concepts of the other extractions to the first's; stored beside the first."""
    result = st.compare([read_run(store, e) for e in extraction_ids])
    ex = store.extraction(extraction_ids[0])
    rel = Path(ex["path"]).relative_to(store.root) / FILE
    store.write_bytes_atomic(str(rel), json.dumps(result.to_dict(), indent=1).encode())
    return result


def load(store: RunStore, extraction_id: int | None = None) -> st.Stability | None:
    return st.load_file(store.extraction(extraction_id)["path"])


def run(
    cfg: Config,
    store: RunStore,
    progress: Progress = null_progress,
    *,
    seeds: int = 3,
    genres: list[str] | None = None,
    job_id: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[int, st.Stability]:
    """N extractions with different seeds; returns the reference extraction id and the matching."""
    if seeds < 2:
        raise ConfigError(f"--seeds {seeds}: at least 2 seeds are needed to compare concepts")
    base = cfg.extract.seed
    ids = []
    for i in range(1, seeds):
        other = cfg.replace(extract={"seed": base + i, "evaluate": False})
        ids.append(extract.run(other, store, progress, genres=genres, job_id=job_id, cancel=cancel))
        log.info("stability: seed %d -> extraction %d", base + i, ids[-1])
    reference = extract.run(cfg, store, progress, genres=genres, job_id=job_id, cancel=cancel)
    return reference, compare(store, [reference, *ids])
