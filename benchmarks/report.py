"""Report benchmark: the size and build time of ``whypop report`` on a demo run or a thesis-size run.

Prints one JSON line::

    {"run": ..., "genres": ..., "concepts": ..., "significant": ..., "examples": ...,
     "html_bytes": ..., "total_bytes": ..., "media_bytes": ..., "plotly_js_bytes": ...,
     "floor_bytes": ..., "overhead_ratio": ..., "build_seconds": ..., "first_view_seconds": ...,
     "open_seconds": ...}

``floor_bytes`` is measured in the same run: plotly.js plus the media bytes the report
embeds (each distinct image once), i.e. what any self-contained file of the same
content holds at least; ``overhead_ratio`` = total_bytes / floor_bytes (base64 and the
figures' JSON). ``first_view_seconds``: headless Chromium opening the file until the first
figure is drawn (the others draw as they scroll into view); ``open_seconds``: until every
figure is drawn and every image decoded (both null without Chromium or with ``--no-browser``).

Without ``--run`` a synthetic thesis-size run is written through the store API
(default 8 genres x 25 concepts x 10 examples, 50 discovery songs per genre, 224 px
spectrograms of 30 s computed from the real audio fixtures at different offsets,
stored patch images as the extractor writes them, every concept significant: the
largest report of that size).

    python benchmarks/report.py [--run RUN_DIR] [--genres 8 --concepts 25 --examples 10] [--no-audio]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whypop.app.report import build_report, plotly_js  # noqa: E402
from whypop.audio import encode_png, spectrogram_from_samples  # noqa: E402
from whypop.decoding import decode, downmix  # noqa: E402
from whypop.config import load_config  # noqa: E402
from whypop.features import AUDIO_FEATURES  # noqa: E402
from whypop.results import save_arrays, save_masks  # noqa: E402
from whypop.store import RunStore, Track  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "audio"
AUDIO_SUFFIXES = {".ogg", ".mp3", ".wav", ".flac", ".au"}


def real_sources(seconds: float) -> list[tuple[np.ndarray, int]]:
    """Mono samples of every real fixture clip (for spectrograms with real content)."""
    out = []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        d = decode(path, max_seconds=seconds + 60)
        out.append((downmix(d.samples) if d.samples.ndim > 1 else d.samples, d.sample_rate))
    if not out:
        raise SystemExit(f"no audio fixtures under {FIXTURES}")
    return out


def make_thesis_run(root: Path, genres: int, concepts: int, examples: int, discovery: int, seed: int = 0) -> Path:
    """A valid run of ``genres`` x ``concepts`` concepts with ``examples`` examples each (all significant)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cfg = load_config("default", env=False)
    size, seconds = cfg.audio.image_size, cfg.audio.duration
    store = RunStore(root, create=True)
    store.set_meta("config", cfg.to_dict())
    store.set_meta("layout", "synthetic thesis-size")
    names = [f"Genre{g + 1}" for g in range(genres)]
    sources = real_sources(seconds)
    tracks, images = [], {}
    for g, genre in enumerate(names):
        for i in range(discovery):
            tid = f"{genre.lower()}-{i:03d}"
            tracks.append(Track(tid, genre, "test", f"{genre}/{tid}.wav", title=f"{genre} song {i}", artist="Synthetic"))
    store.upsert_tracks(tracks)
    for n, t in enumerate(tracks):
        samples, sr = sources[n % len(sources)]
        start = int(((n // len(sources)) * 1.37 % max(1.0, len(samples) / sr - seconds)) * sr)
        img = spectrogram_from_samples(samples[start:start + int(seconds * sr)], sr, cfg.audio)
        images[t.track_id] = img
        rel = f"spectrograms/{t.track_id}.png"
        store.write_bytes_atomic(rel, encode_png(img))
        store.record_track_result(t.track_id, ok=True, duration=seconds, sample_rate=sr, channels=1, spectrogram=rel,
                                  features={"audio": {s.name: float(rng.uniform(0, 1)) for s in AUDIO_FEATURES}})
    model_id, _ = store.begin_model(cfg.train.arch, {"train": cfg.train.__dict__})
    matrix = (np.eye(genres) * 40 + rng.integers(0, 4, size=(genres, genres))).astype(int).tolist()
    store.complete_model(model_id, {"accuracy": {"training": 0.95, "validation": 0.71, "test": 0.69},
                                    "confusion": {"labels": names, "matrix": matrix, "split": "test"}})
    eid, partial = store.begin_extraction({"extract": cfg.extract.__dict__ | {"segments": list(cfg.extract.segments)},
                                           "summary": cfg.summary.__dict__}, "synthetic", model_id)
    (partial / "patches").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rows, patches, summary, cid = [], [], {}, 0
    for g, genre in enumerate(names):
        ids = [t.track_id for t in tracks if t.genre == genre]
        refs = {}
        for tid in ids:
            masks = np.zeros((12, size, size), dtype=bool)
            for m in range(12):
                cy, cx = rng.uniform(0.1, 0.9, size=2) * size
                ry, rx = rng.uniform(0.05, 0.18, size=2) * size
                masks[m] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            refs[tid] = (save_masks(partial, tid, masks), masks)
        for j in range(concepts):
            cid += 1
            rows.append({"concept_id": cid, "genre": genre, "name": f"{genre} concept {j + 1}",
                         "tcav_mean": float(rng.uniform(0.55, 1.0)), "tcav_std": float(rng.uniform(0, 0.2)),
                         "p_value": float(10 ** -rng.uniform(3, 12)), "significant": True, "flags": [],
                         "cluster": int(rng.integers(0, 25)), "x": float(rng.normal(0, 30)),
                         "y": float(rng.normal(0, 30)), "n_patches": 30})
            for rank in range(examples):
                tid = ids[int(rng.integers(0, len(ids)))]
                ref_list, masks = refs[tid]
                m = int(rng.integers(0, len(ref_list)))
                ys, xs = np.nonzero(masks[m])
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                crop = images[tid][box[1]:box[3], box[0]:box[2]].copy()
                crop[~masks[m][box[1]:box[3], box[0]:box[2]]] = 117
                patch = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
                rel = f"patches/{cid}_{rank}.png"
                (partial / rel).write_bytes(encode_png(patch))
                patches.append({"concept_id": cid, "rank": rank, "track_id": tid, "x0": box[0], "y0": box[1],
                                "x1": box[2], "y1": box[3], "mask": ref_list[m], "distance": 0.1 * rank})
        summary[genre] = {"discovery": ids, "n_concepts": concepts, "n_significant": concepts}
    save_arrays(partial, concept_ids=np.arange(1, cid + 1), cluster_ids=np.arange(25),
                cluster_xy=rng.normal(0, 30, size=(25, 2)).astype(np.float32),
                similarity=np.eye(cid, dtype=np.float32),
                random_scores=rng.uniform(0.4, 0.6, size=(genres, 20)).astype(np.float32), random_genres=np.array(names))
    store.complete_extraction(eid, rows, patches, timings={"total": 0.0},
                              summary={"layer": cfg.extract.layer, "genres": summary})
    store.close()
    return root


def open_seconds(path: Path) -> tuple[float, float] | None:
    """(first view, everything): seconds headless Chromium takes to draw the figures at the top
    (the rest draw as they scroll into view), and to draw every figure and decode every image."""
    import shutil

    exe = shutil.which("chromium")
    if exe is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        t = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelectorAll('div[data-fig]')[0]._fullLayout", timeout=600_000)
        first = time.perf_counter() - t
        page.evaluate("window.whypopDrawAll()")
        page.wait_for_function("[...document.querySelectorAll('div[data-fig]')].every(d => d._fullLayout) && "
                               "[...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=600_000)
        seconds = time.perf_counter() - t
        browser.close()
    return first, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run (default: write a synthetic thesis-size run)")
    parser.add_argument("--genres", type=int, default=8)
    parser.add_argument("--concepts", type=int, default=25, help="per genre")
    parser.add_argument("--examples", type=int, default=10, help="per concept")
    parser.add_argument("--discovery", type=int, default=50, help="discovery songs per genre")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium load time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whypop-report-bench-") as tmp:
        if args.run:
            run = Path(args.run)
        else:
            t = time.perf_counter()
            run = make_thesis_run(Path(tmp) / "thesis", args.genres, args.concepts, args.examples, args.discovery)
            print(f"synthetic run written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        result = build_report(run, Path(tmp) / "report.html", audio=not args.no_audio)
        build = time.perf_counter() - t
        f = result.file
        js = len(plotly_js().encode())
        floor = js + f.media_bytes
        opened = None if args.no_browser else open_seconds(f.path)
        print(json.dumps({
            "run": str(run) if args.run else f"synthetic {args.genres}x{args.concepts}x{args.examples}",
            "concepts": result.concepts, "significant": result.significant, "examples": result.examples,
            "figures": f.figures, "images": f.images, "html_bytes": f.html_bytes, "total_bytes": f.total_bytes,
            "media_bytes": f.media_bytes, "media_folder": f.media_folder is not None, "plotly_js_bytes": js,
            "floor_bytes": floor, "overhead_ratio": round(f.total_bytes / floor, 3),
            "total_mb": round(f.total_bytes / 1e6, 2), "build_seconds": round(build, 2),
            "first_view_seconds": None if opened is None else round(opened[0], 2),
            "open_seconds": None if opened is None else round(opened[1], 2),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
