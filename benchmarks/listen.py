"""Listening benchmark: rendering one concept example of a 30 s song, first time and cached.

Prints one JSON line::

    {"first_render_ms": ..., "cached_ms": ..., "route_cached_ms": ..., "baseline_stft_istft_ms": ...,
     "decode_ms": ..., ...}

A run with the default audio settings (44.1 kHz, 30 s, 224 px images) is written to a
temporary directory: one 30 s WAV song (tones and noise), its spectrogram, and an
extraction with one concept whose example is a SLIC-sized segment (an ellipse of about
a 25th of the image, 6 s wide). ``first_render_ms``: :meth:`whypop.listen.Listener.example`
with an empty cache (decode, mask, STFT, mask, inverse STFT, loudness, WAV, write to the
cache), median of ``--repeat`` renders after one warm-up; ``cached_ms``: the same call with
the clip cached (a stat, a sidecar read); ``route_cached_ms``: the cached clip fetched
through the Flask route (test client). The baseline, measured in the same run: the bare
``torch.stft`` + ``torch.istft`` of the whole 30 s song at the same window and hop, and
the song's decode.

    python benchmarks/listen.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the whypop command sets it

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from whypop.audio import encode_png, spectrogram_from_samples  # noqa: E402
from whypop.decoding import decode  # noqa: E402
from whypop.config import Config  # noqa: E402
from whypop.listen import Listener  # noqa: E402
from whypop.results import save_masks  # noqa: E402
from whypop.sonify import ListenSettings  # noqa: E402
from whypop.store import RunStore, Track  # noqa: E402


def build_run(root: Path) -> tuple[RunStore, int, int]:
    """A one-song run at the default settings; returns (store, extraction id, concept id)."""
    import soundfile as sf

    cfg = Config()
    a = cfg.audio
    store = RunStore(root, create=True)
    (root / "audio").mkdir()
    store.set_meta("audio_root", str((root / "audio").resolve()))
    store.set_meta("config", cfg.to_dict())
    sr = a.sample_rate
    t = np.arange(int(30 * sr)) / sr
    rng = np.random.default_rng(0)
    song = (0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    sf.write(str(root / "audio" / "song.wav"), song, sr, subtype="PCM_16")
    store.upsert_tracks([Track("song", "Test", "test", "song.wav", title="Song")])
    store.write_bytes_atomic("spectrograms/song.png", encode_png(spectrogram_from_samples(song, sr, a)))
    store.record_track_result("song", ok=True, duration=30.0, sample_rate=sr, channels=1,
                              spectrogram="spectrograms/song.png", features={})
    eid, partial = store.begin_extraction({"extract": {}, "summary": {}}, "bench", None)
    size = a.image_size
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size * 0.55) / (size * 0.12)) ** 2 + ((xx - size * 0.5) / (size * 0.1)) ** 2 <= 1
    ref = save_masks(partial, "song", mask[None])[0]
    ys, xs = np.nonzero(mask)
    concept = {"concept_id": 1, "genre": "Test", "name": "Test concept 1", "tcav_mean": 0.9, "tcav_std": 0.01,
               "p_value": 1e-6, "significant": True, "flags": [], "cluster": 0, "x": 0.0, "y": 0.0, "n_patches": 1}
    patch = {"concept_id": 1, "rank": 0, "track_id": "song", "x0": int(xs.min()), "y0": int(ys.min()),
             "x1": int(xs.max()) + 1, "y1": int(ys.max()) + 1, "mask": ref, "distance": 0.0}
    store.complete_extraction(eid, [concept], [patch], timings={}, summary={"genres": {"Test": {"discovery": ["song"]}}})
    return store, eid, 1


def _median_ms(fn, repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args()

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="whypop-bench-listen-"))
    try:
        store, eid, cid = build_run(tmp / "run")
        settings = ListenSettings()
        listener = Listener(store, settings)
        cache = Path(store.extraction(eid)["path"]) / "listen"

        def clear():
            shutil.rmtree(cache, ignore_errors=True)

        first = listener.example(eid, cid, 0, "solo")  # warm-up: imports, FFT plans
        info = first.info
        first_ms = _median_ms(lambda: listener.example(eid, cid, 0, "solo"), args.repeat, before=clear)
        listener.example(eid, cid, 0, "solo")
        cached_ms = _median_ms(lambda: listener.example(eid, cid, 0, "solo"), args.repeat)
        assert listener.example(eid, cid, 0, "solo").cached

        from whypop.app import create_app

        client = create_app(store.root, prefix="/").server.test_client()
        url = f"/listen/{eid}/{cid}/0/solo.wav"
        assert client.get(url).status_code == 200
        route_ms = _median_ms(lambda: client.get(url).data, args.repeat)

        path = store.audio_path("song")
        decoded = decode(path, max_seconds=30.0)
        n_fft, hop = settings.stft_size(decoded.sample_rate)
        x, window = torch.from_numpy(decoded.samples), torch.hann_window(n_fft)

        def bare():
            spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
            torch.istft(spec, n_fft, hop, window=window, center=True, length=x.shape[0])

        bare()
        baseline_ms = _median_ms(bare, args.repeat)
        decode_ms = _median_ms(lambda: decode(path, max_seconds=30.0), args.repeat)
        print(json.dumps({
            "first_render_ms": first_ms, "cached_ms": cached_ms, "route_cached_ms": route_ms,
            "baseline_stft_istft_ms": baseline_ms, "decode_ms": decode_ms, "target_first_render_ms": 150,
            "song_s": 30.0, "sample_rate": decoded.sample_rate, "n_fft": n_fft, "hop": hop,
            "clip_s": round(info.clip_duration_s, 3), "region_s": round(info.region.end_s - info.region.start_s, 3),
            "repeat": args.repeat, "torch_threads": torch.get_num_threads(),
            "first_render_vs_baseline": round(first_ms / baseline_ms, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        }, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
