"""Explanations of fresh demo songs against the planted ground truth, and against chance.

For ``--songs`` fresh clips per genre (``whypop.demo.make_song``, seeds 1000.., in no
run), explained with the run's latest extraction: how often

- ``predicted``: the prediction is the clip's genre;
- ``concept_hit``: among the top 3 concepts (ranked by influence) one is of the clip's
  genre and has a region overlapping the planted signature's time range;
- ``both``: both hold (the issue's criterion).

Chance, measured on the same explanations:

- ``chance_predicted``: 1 / number of genres;
- ``chance_concept_rank``: the same concept criterion for 3 concepts drawn at random
  from the concepts present in the song (exact, by counting);
- ``chance_concept_time``: the same top 3 concepts, but the planted time range replaced
  by a range of the same length placed uniformly at random in the clip (200 draws);
- ``chance_both``: ``chance_predicted`` x the larger of the two concept chances.

The time criterion is loose (segments are wide in time, so a random range of the same
length is overlapped almost as often), hence two stricter ones:

- ``concept_hit_tf``: a top-3 concept of the clip's genre has a region overlapping the
  planted box in time *and* frequency; chance ``chance_concept_tf``: the same top 3
  against the planted box moved uniformly at random in time and in mel position (200 draws);
- ``inside_share``: for the best-ranked concept of the clip's genre among the top 3, the
  share of its segments' pixels inside the planted box; ``chance_inside_share``: the
  same share averaged over all the song's segments (what a concept placed at random
  would get).

Prints one JSON line with the figures overall and per genre.
Usage: ``python benchmarks/explain_fresh.py --run RUN [--songs 10]`` (RUN: a demo run;
nothing is written to it except the concept bank cache).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipelines.explain as pe  # noqa: E402
from whypop.ace.planted import region_mask  # noqa: E402
from whypop.explain import overlaps_time  # noqa: E402
from whypop.geometry import box_to_pixels  # noqa: E402
from whypop.demo import make_song  # noqa: E402
from whypop.store import RunStore  # noqa: E402


def concept_hit(concepts, genre: str, t0: float, t1: float, top: int = 3) -> bool:
    return any(c.genre == genre and any(overlaps_time(r, t0, t1) for r in c.regions) for c in concepts[:top])


def rank_chance(concepts, genre: str, t0: float, t1: float, k: int = 3) -> float:
    n = len(concepts)
    q = sum(c.genre == genre and any(overlaps_time(r, t0, t1) for r in c.regions) for c in concepts)
    if n == 0:
        return 0.0
    k = min(k, n)
    return 1.0 - math.comb(n - q, k) / math.comb(n, k)


def time_chance(concepts, genre: str, width: float, span: float, rng: np.random.Generator, draws: int = 200) -> float:
    starts = rng.uniform(0, max(span - width, 0.0), draws)
    return float(np.mean([concept_hit(concepts, genre, s, s + width) for s in starts]))


def tf_hit(concepts, genre: str, box, top: int = 3) -> bool:
    t0, t1, f0, f1 = box
    return any(c.genre == genre and any(overlaps_time(r, t0, t1) and r.low_hz < f1 and f0 < r.high_hz
                                        for r in c.regions) for c in concepts[:top])


def tf_chance(concepts, genre: str, box, audio, rng: np.random.Generator, draws: int = 200) -> float:
    from whypop.geometry import hz_to_mel, mel_to_hz

    t0, t1, f0, f1 = box
    top = float(hz_to_mel(audio.sample_rate / 2))
    m0, m1 = float(hz_to_mel(f0)), float(hz_to_mel(f1))
    hits = 0
    for _ in range(draws):
        s = rng.uniform(0, max(audio.duration - (t1 - t0), 0.0))
        m = rng.uniform(0, max(top - (m1 - m0), 0.0))
        hits += tf_hit(concepts, genre, (s, s + t1 - t0, float(mel_to_hz(m)), float(mel_to_hz(m + m1 - m0))))
    return hits / draws


def inside_shares(concepts, placements, genre: str, region: np.ndarray) -> tuple[float | None, float]:
    from whypop.ace.planted import mask_overlap

    every = np.stack([p.mask for p in placements])
    chance = float(mask_overlap(every, region).mean())
    best = next((c for c in concepts[:3] if c.genre == genre), None)
    if best is None:
        return None, chance
    union = np.stack([placements[s].mask for s in best.segments]).any(axis=0)
    return float(mask_overlap(union[None], region)[0]), chance


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--songs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    store = RunStore(args.run)
    cfg = store.stored_config()
    t = time.perf_counter()
    ctx = pe.context(store, None, "cpu")
    setup = time.perf_counter() - t
    genres = ctx.explainer.genres
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for g in genres:
            for i in range(args.songs):
                seed = args.seed + i
                clip = make_song(g, seed, Path(tmp) / f"{g}-{seed}.wav", clip_seconds=cfg.demo.clip_seconds,
                                 sample_rate=cfg.demo.sample_rate, genres=cfg.demo.genres)
                box = clip.signature
                e, placements, image = pe.explain_file(ctx, clip.path)
                px = box_to_pixels(box.t0, box.t1, box.f0, box.f1, cfg.audio)
                share, share_chance = inside_shares(e.concepts, placements, g, region_mask(image.shape, [px]))
                tf = (box.t0, box.t1, box.f0, box.f1)
                rows.append({
                    "concept_hit_tf": tf_hit(e.concepts, g, tf),
                    "chance_tf": tf_chance(e.concepts, g, tf, cfg.audio, rng),
                    "inside": share, "inside_chance": share_chance,
                    "genre": g, "seed": seed, "predicted": e.prediction.genre == g,
                    "concept_hit": concept_hit(e.concepts, g, box.t0, box.t1),
                    "chance_rank": rank_chance(e.concepts, g, box.t0, box.t1),
                    "chance_time": time_chance(e.concepts, g, box.t1 - box.t0, cfg.audio.duration, rng),
                    "n_concepts": len(e.concepts), "seconds": e.timings["total"],
                })

    def summarise(rs):
        pred = np.mean([r["predicted"] for r in rs])
        hit = np.mean([r["concept_hit"] for r in rs])
        both = np.mean([r["predicted"] and r["concept_hit"] for r in rs])
        cr = np.mean([r["chance_rank"] for r in rs])
        ct = np.mean([r["chance_time"] for r in rs])
        inside = [r["inside"] for r in rs if r["inside"] is not None]
        tf = {"concept_hit_tf": round(float(np.mean([r["concept_hit_tf"] for r in rs])), 3),
              "both_tf": round(float(np.mean([r["predicted"] and r["concept_hit_tf"] for r in rs])), 3),
              "chance_concept_tf": round(float(np.mean([r["chance_tf"] for r in rs])), 3),
              "inside_share": round(float(np.mean(inside)), 3) if inside else None,
              "chance_inside_share": round(float(np.mean([r["inside_chance"] for r in rs])), 3),
              "songs_with_genre_concept_in_top3": len(inside)}
        return {**tf, "songs": len(rs), "predicted": round(float(pred), 3), "concept_hit": round(float(hit), 3),
                "both": round(float(both), 3), "chance_predicted": round(1 / len(genres), 3),
                "chance_concept_rank": round(float(cr), 3), "chance_concept_time": round(float(ct), 3),
                "chance_both": round(float(max(cr, ct) / len(genres)), 3),
                "concepts_per_song": round(float(np.mean([r["n_concepts"] for r in rs])), 1)}

    out = {"run": str(args.run), "extraction_id": ctx.extraction_id, **summarise(rows),
           "per_genre": {g: summarise([r for r in rows if r["genre"] == g]) for g in genres},
           "seconds_per_song": round(float(np.median([r["seconds"] for r in rows])), 2),
           "setup_seconds": round(setup, 2), "seeds": [args.seed, args.seed + args.songs - 1]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
