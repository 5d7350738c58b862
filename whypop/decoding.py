"""Audio files to mono samples: decode (soundfile, so no FFmpeg), downmix, resample, fix length.

soundfile reads wav, flac, ogg, mp3, au and aiff through libsndfile. Every error a user's
file can cause is an :class:`~whypop.errors.InputError` with a one-line reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whypop.errors import InputError

AUDIO_EXTENSIONS = (".mp3", ".ogg", ".oga", ".flac", ".wav", ".wave", ".au", ".snd", ".aiff", ".aif", ".aifc")


@dataclass(frozen=True)
class Decoded:
    """Mono float32 samples in [-1, 1] and what the source file was."""

    samples: np.ndarray
    sample_rate: int  # Hz of the source
    channels: int  # of the source
    duration: float  # seconds decoded (before padding)


def decode(path: str | Path, max_seconds: float | None = None) -> Decoded:
    """Decode an audio file to mono float32, reading at most ``max_seconds``.

    Raises InputError with a one-line reason for anything unreadable or empty.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file missing: {path}")
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as fh:
            sr, channels = int(fh.samplerate), int(fh.channels)
            frames = -1 if max_seconds is None else int(math.ceil(max_seconds * sr))
            data = fh.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as exc:
        text = short_reason(exc)
        if "does not exist" in text or "Format not recognised" in text or "unknown format" in text.lower():
            text = f"not a recognised audio format, or corrupt ({path.suffix or 'no extension'})"
        raise InputError(f"cannot decode audio: {text}") from None
    if data.shape[0] == 0:
        raise InputError("no audio samples in file")
    mono = downmix(data)
    with np.errstate(over="ignore"):
        if not np.isfinite(np.dot(mono, mono)):  # NaN or inf, or float samples so large their power overflows
            mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
            if not np.isfinite(np.dot(mono, mono)):  # the image is relative to its peak: scale changes nothing
                mono *= np.float32(1.0) / np.abs(mono).max()
    return Decoded(mono, sr, channels, mono.shape[0] / sr)


def downmix(data: np.ndarray) -> np.ndarray:
    """(frames, channels) -> mono float32, the mean of the channels.

    A loop over channel columns: ``data.mean(axis=1)`` is far slower on interleaved
    audio (figures in docs/measurements.md).
    """
    channels = data.shape[1]
    if channels == 1:
        return np.ascontiguousarray(data[:, 0], dtype=np.float32)
    if channels == 2 and data.dtype == np.float32:
        # a * 0.5 + b * 0.5 is (a + b) * 0.5 bit for bit (halving is exact), in one BLAS
        # pass instead of three
        return data @ np.full(2, 0.5, dtype=np.float32)
    mono = np.array(data[:, 0], dtype=np.float32)
    for c in range(1, channels):
        mono += data[:, c]
    mono *= np.float32(1.0 / channels)
    return mono


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (libsoxr, high quality)."""
    if orig_sr == target_sr:
        return samples
    import soxr

    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def repeat_to(samples: np.ndarray, n: int) -> np.ndarray:
    """Loop a clip shorter than ``n`` samples until it fills them (``audio.pad = "repeat"``)."""
    if samples.shape[0] >= n or samples.shape[0] == 0:
        return samples
    return np.resize(np.asarray(samples, dtype=np.float32), n)


def fix_length(samples: np.ndarray, n: int) -> np.ndarray:
    """Pad with silence or keep the first ``n`` samples."""
    if samples.shape[0] >= n:
        return samples[:n]
    out = np.zeros(n, dtype=np.float32)
    out[: samples.shape[0]] = samples
    return out


def short_reason(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
