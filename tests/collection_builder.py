"""Build a folder-per-genre collection of short, low-rate clips from the audio fixtures.

GTZAN's shape: mono WAV at 22.05 kHz, one folder per genre, clips shorter than the
30 s window. Each genre takes its clips from one fixture (cycled, at different offsets),
optionally pitched by resampling, so the genres differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOURCES = (
    "librosa-data/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "librosa-data/Karissa_Hobbs_-_Lets_Go_Fishin.ogg",
    "librosa-data/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg",
    "librosa-data/Kevin_MacLeod_-_Vibe_Ace.ogg",
    "librosa-data/admiralbob77_-_Choice_-_Drum-bass.ogg",
)
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def build_collection(audio_root: Path, out: Path, genres: int = 10, clips: int = 10,
                     seconds: tuple[float, float] = (15.0, 20.0), sample_rate: int = 22050,
                     seed: int = 0) -> Path:
    """Write ``out/<genre>/<genre>.000NN.wav``; returns ``out``."""
    import soundfile as sf
    import soxr

    rng = np.random.default_rng(seed)
    for g in range(genres):
        name = GENRES[g % len(GENRES)] + ("" if g < len(GENRES) else str(g // len(GENRES)))
        data, sr = sf.read(str(Path(audio_root) / SOURCES[g % len(SOURCES)]), dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        if g // len(SOURCES) % 2:  # the second genre of a source: a fifth higher
            mono = soxr.resample(mono, sr * 3 // 2, sr).astype(np.float32)
        if sr != sample_rate:
            mono = soxr.resample(mono, sr, sample_rate).astype(np.float32)
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for c in range(clips):
            n = int(rng.uniform(*seconds) * sample_rate)
            start = int(rng.integers(0, max(1, len(mono))))
            clip = np.take(mono, np.arange(start, start + n), mode="wrap")  # cycled past the end
            sf.write(str(folder / f"{name}.{c:05d}.wav"), clip, sample_rate, subtype="PCM_16")
    return Path(out)
