"""Human-understandable features of a song: audio descriptors and FMA's Echo Nest columns.

The audio descriptors (tempo, loudness, brightness, ...) are computed from the waveform in
one pass over a single STFT, fast enough to run for every track during preparation. The
Echo Nest features come precomputed with FMA (``echonest.csv``). ``percentile_scale``
puts any feature on a common 0..1 scale across a collection, and ``format_value`` writes
a value for the UI.

librosa and pandas are imported lazily, so importing this module (for the specs and the
formatting) stays cheap.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import pandas

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature as the UI shows it: machine name, plain label, unit and a one-line meaning."""

    name: str
    label: str
    unit: str
    meaning: str


AUDIO_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("tempo", "Tempo", "BPM", "Speed of the beat, in beats per minute."),
    FeatureSpec(
        "loudness", "Loudness", "dB", "Average level (RMS) relative to digital full scale."
    ),
    FeatureSpec(
        "brightness", "Brightness", "Hz", "Centre of mass of the spectrum: higher sounds brighter."
    ),
    FeatureSpec(
        "noisiness", "Noisiness", "", "Spectral flatness: 0 for pure tones, near 1 for white noise."
    ),
    FeatureSpec(
        "percussiveness", "Percussiveness", "",
        "Share of the energy in drums and other short hits (0..1).",
    ),
    FeatureSpec(
        "bass_weight", "Bass weight", "", "Share of the spectral energy below 250 Hz (0..1)."
    ),
    FeatureSpec("onset_rate", "Note density", "/s", "Detected note and drum onsets per second."),
    FeatureSpec(
        "dynamic_range", "Dynamic range", "dB",
        "Spread between loud and quiet passages (95th minus 10th percentile of the level).",
    ),
)

ECHONEST_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "acousticness", "Acousticness", "",
        "Echo Nest's confidence that the track is acoustic (0..1).",
    ),
    FeatureSpec(
        "danceability", "Danceability", "",
        "Echo Nest's estimate of how suitable the track is for dancing (0..1).",
    ),
    FeatureSpec("energy", "Energy", "", "Echo Nest's perceived intensity and activity (0..1)."),
    FeatureSpec(
        "instrumentalness", "Instrumentalness", "",
        "Echo Nest's confidence that the track has no vocals (0..1).",
    ),
    FeatureSpec(
        "liveness", "Liveness", "", "Echo Nest's confidence that an audience is present (0..1)."
    ),
    FeatureSpec(
        "speechiness", "Speechiness", "",
        "Echo Nest's estimate of spoken words in the track (0..1).",
    ),
    FeatureSpec(
        "tempo", "Tempo (Echo Nest)", "BPM",
        "Echo Nest's estimate of the beat speed, in beats per minute.",
    ),
    FeatureSpec(
        "valence", "Valence", "",
        "Echo Nest's musical positiveness: high is happy, low is sad or angry (0..1).",
    ),
)

# Analysis grid: everything is computed from one STFT at this rate.
SAMPLE_RATE = 22050  # Hz
N_FFT = 2048  # samples (93 ms)
HOP = 512  # samples (23 ms)
N_MELS = 128  # bands of the mel spectrogram used for separation and onsets

SILENCE_DB = -80.0  # frames whose RMS is below this (dBFS) are silent
GATE_DB = 60.0  # frames more than this below the loudest frame do not count either
FLATNESS_BAND = 0.45  # flatness looks at bins up to this fraction of the (input's) sample rate
BASS_CUTOFF_HZ = 250.0
SUBSONIC_HZ = 20.0  # energy below this (DC, rumble) is left out of bass_weight
HPSS_KERNEL = (17, 17)  # (time frames, mel bands) of the harmonic/percussive median filters

DIGITAL_SILENCE = 1e-20  # mean square below this (-200 dBFS) is all-zero audio
MIN_SECONDS_SPECTRUM = 0.05  # shorter audio gives only a loudness
MIN_SECONDS_TEMPO = 5.0  # shorter audio has too few beats for a tempo
MIN_SECONDS_RHYTHM = 1.0  # shorter audio gives no onset rate, percussiveness or dynamic range
MIN_ACTIVE_FRAMES = 3  # fewer non-silent frames than this: spectral features are not measurable

_DECIMALS = {"BPM": 1, "dB": 1, "Hz": 0, "/s": 2, "": 2}
_NO_SPACE_UNITS = {"/s", "%"}


def compute_audio_features(y: np.ndarray, sr: int) -> dict[str, float | None]:
    """Mono signal at any sample rate -> {name: value} for AUDIO_FEATURES; None = not measurable."""
    import librosa

    y = _as_clean_mono(y, sr)
    out: dict[str, float | None] = {spec.name: None for spec in AUDIO_FEATURES}
    if y.size == 0:
        return out
    y = y - np.float32(np.mean(y, dtype=np.float64))  # a DC offset is inaudible: leave it out
    mean_square = float(np.mean(np.square(y, dtype=np.float64)))
    if mean_square <= DIGITAL_SILENCE:
        return out
    out["loudness"] = _finite(10.0 * math.log10(mean_square))
    duration = y.size / sr  # seconds
    if duration < MIN_SECONDS_SPECTRUM:
        return out

    if sr != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
        y = y.astype(np.float32, copy=False)
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    mag = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=True))  # (bins, frames)
    frame_rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP, center=True)[0]
    n = min(mag.shape[1], frame_rms.size)
    mag, frame_db = mag[:, :n], 20.0 * np.log10(np.maximum(frame_rms[:n], 1e-10))
    active = frame_db > max(SILENCE_DB, float(frame_db.max()) - GATE_DB)
    if int(active.sum()) < MIN_ACTIVE_FRAMES:
        logger.debug("audio is (near) silent: %d active frames", int(active.sum()))
        return out

    power = np.square(mag, dtype=np.float32)
    out.update(_spectral_features(mag, power, active, input_sr=sr))
    if duration >= MIN_SECONDS_RHYTHM:
        out.update(_rhythm_features(power, frame_db[active], duration))
    return {name: None if value is None else _finite(value) for name, value in out.items()}


def read_echonest(path: str | Path) -> pandas.DataFrame:
    """FMA's echonest.csv -> DataFrame by int track_id, the ECHONEST_FEATURES as float columns."""
    import pandas as pd

    from whypop.errors import InputError

    path = Path(path)
    try:
        raw = pd.read_csv(path, index_col=0, header=[0, 1, 2], low_memory=False)
    except FileNotFoundError as err:
        raise InputError(f"echonest file not found: {path}") from err
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(
            f"{path} is not an FMA echonest.csv (3 header rows, track_id first): {err}"
        ) from err

    names = [spec.name for spec in ECHONEST_FEATURES]
    wanted = [("echonest", "audio_features", name) for name in names]
    present = set()
    if raw.columns.nlevels == 3:
        present = {tuple(str(level) for level in col) for col in raw.columns}
    missing = [name for name, col in zip(names, wanted) if col not in present]
    if missing:
        raise InputError(
            f"{path} lacks the Echo Nest columns ('echonest', 'audio_features', <name>) for: "
            + ", ".join(missing)
        )

    table = pd.DataFrame(
        {name: pd.to_numeric(raw[col], errors="coerce") for name, col in zip(names, wanted)}
    ).astype("float64")
    ids = pd.to_numeric(pd.Series(raw.index, index=raw.index), errors="coerce")
    bad_ids = ids.isna() | (ids != ids.round())
    if bad_ids.any():
        logger.warning("%s: dropping %d rows without an integer track_id", path, int(bad_ids.sum()))
    table = table[~bad_ids.to_numpy()]
    table.index = pd.Index(ids[~bad_ids].astype("int64").to_numpy(), name="track_id")
    table = table.dropna(how="all")
    if table.index.has_duplicates:
        duplicated = table.index.duplicated(keep="first")
        logger.warning("%s: %d duplicate track ids, keeping the first", path, int(duplicated.sum()))
        table = table[~duplicated]
    return table


def percentile_scale(values: Mapping[K, float | None]) -> dict[K, float | None]:
    """Raw values across the collection -> percentile rank in [0, 1] (ties averaged, None kept)."""
    keys = [key for key, value in values.items() if value is not None and math.isfinite(value)]
    out: dict[K, float | None] = {key: None for key in values}
    if not keys:
        return out
    if len(keys) == 1:
        out[keys[0]] = 0.5
        return out
    raw = np.array([values[key] for key in keys], dtype=np.float64)
    order = np.argsort(raw, kind="stable")
    ranks = np.empty(raw.size, dtype=np.float64)
    ranks[order] = np.arange(raw.size, dtype=np.float64)
    _, group = np.unique(raw, return_inverse=True)
    ranks = (np.bincount(group, weights=ranks) / np.bincount(group))[group]  # average over ties
    for key, rank in zip(keys, ranks / (raw.size - 1)):
        out[key] = float(rank)
    return out


def format_value(spec: FeatureSpec, value: float | None) -> str:
    """Value with its unit for the UI, e.g. '92.3 BPM', '-14.2 dB', 'not measurable' for None."""
    if value is None or not math.isfinite(value):
        return "not measurable"
    text = f"{value:.{_DECIMALS.get(spec.unit, 2)}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    if not spec.unit:
        return text
    return f"{text}{spec.unit}" if spec.unit in _NO_SPACE_UNITS else f"{text} {spec.unit}"


# --- internals ---------------------------------------------------------------------------


def _as_clean_mono(y: np.ndarray, sr: int) -> np.ndarray:
    """Validate the input and return a finite float32 1-D copy-or-view of it."""
    from whypop.errors import InputError

    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"audio must be mono (1-D), got shape {y.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise InputError(f"sample rate must be a positive integer (Hz), got {sr!r}")
    if not np.issubdtype(y.dtype, np.floating):
        raise InputError(f"audio must be floating point in [-1, 1], got dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        bad = int(np.sum(~np.isfinite(y)))
        logger.warning("audio holds %d NaN/inf samples; treating them as silence", bad)
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    return y


def _spectral_features(
    mag: np.ndarray, power: np.ndarray, active: np.ndarray, input_sr: int
) -> dict[str, float]:
    """Brightness, noisiness and bass weight from the STFT, averaged over non-silent frames."""
    import librosa

    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=N_FFT)
    centroid = librosa.feature.spectral_centroid(S=mag, sr=SAMPLE_RATE, n_fft=N_FFT)
    in_band = freqs <= FLATNESS_BAND * min(input_sr, SAMPLE_RATE)  # upsampled: empty above Nyquist
    flatness = librosa.feature.spectral_flatness(S=mag[in_band], power=2.0)
    return {
        "brightness": float(np.mean(centroid[0, active])),
        "noisiness": float(np.mean(flatness[0, active])),
        "bass_weight": _bass_weight(power[:, active], freqs),
    }


def _rhythm_features(power: np.ndarray, active_db: np.ndarray, duration: float) -> dict[str, float]:
    """Dynamic range, percussiveness, onset rate and (for long enough audio) tempo."""
    import librosa

    mel_power = _mel_basis() @ power  # (N_MELS, frames), energy-preserving bands
    envelope = _onset_envelope(mel_power)
    onsets = librosa.onset.onset_detect(
        onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP, units="frames"
    )
    values = {
        "dynamic_range": float(np.percentile(active_db, 95) - np.percentile(active_db, 10)),
        "percussiveness": _percussiveness(np.sqrt(mel_power)),
        "onset_rate": len(onsets) / duration,
    }
    if duration >= MIN_SECONDS_TEMPO:
        values["tempo"] = _tempo(envelope)
    return values


def _finite(value: float) -> float | None:
    """The value as a float, or None when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None


def _bass_weight(power: np.ndarray, freqs: np.ndarray) -> float:
    """Share of the power from SUBSONIC_HZ up that lies below BASS_CUTOFF_HZ."""
    spectrum = power.sum(axis=1, dtype=np.float64)
    audible = freqs >= SUBSONIC_HZ
    total = float(spectrum[audible].sum())
    if total <= 0.0:
        return math.nan
    return float(spectrum[audible & (freqs < BASS_CUTOFF_HZ)].sum()) / total


def _percussiveness(mag: np.ndarray) -> float:
    """Share of the energy that harmonic/percussive separation assigns to the percussive part.

    The 128-band mel magnitude is separated instead of the 1025-bin STFT: several times
    faster (measured: docs/measurements.md) with nearly the same shares.
    """
    import librosa

    harmonic, percussive = librosa.decompose.hpss(mag, kernel_size=HPSS_KERNEL, power=2.0)
    h = float(np.sum(np.square(harmonic, dtype=np.float64)))
    p = float(np.sum(np.square(percussive, dtype=np.float64)))
    if h + p <= 0.0:
        return math.nan
    return p / (h + p)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """Unnormalised mel filter bank (each band sums the power of its bins), built once."""
    import librosa

    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, norm=None)
    return basis.astype(np.float32)


def _onset_envelope(mel_power: np.ndarray) -> np.ndarray:
    """Spectral-flux onset strength (one value per STFT frame) from the mel power spectrogram."""
    import librosa

    mel_db = librosa.power_to_db(mel_power, ref=1.0, top_db=None, amin=1e-10)
    mel_db = np.maximum(mel_db, mel_db.max() - 80.0)
    return librosa.onset.onset_strength(S=mel_db, sr=SAMPLE_RATE, hop_length=HOP)


def _tempo(envelope: np.ndarray) -> float:
    """Tempo in BPM: librosa's tempogram estimate, refined to sub-frame precision."""
    import librosa

    coarse = librosa.feature.tempo(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP)
    coarse = float(coarse[0])
    if not (math.isfinite(coarse) and coarse > 0.0):
        return math.nan
    refined = _refine_tempo(envelope, coarse)
    return coarse if refined is None else refined


def _refine_tempo(envelope: np.ndarray, coarse_bpm: float) -> float | None:
    """Sharpen a coarse tempo from the autocorrelation peaks at multiples of its beat period.

    The tempogram only knows whole-frame lags (23 ms at hop 512), so 140 BPM reads as
    143.6. Peaks of the onset envelope's autocorrelation near k periods (k = 1, 2, ...) are
    located with parabolic interpolation, and a line through the origin fitted to them gives
    the period; the error of one peak is divided by k. None when the peaks are not clear.
    """
    frames_per_minute = 60.0 * SAMPLE_RATE / HOP
    period = frames_per_minute / coarse_bpm  # frames
    x = envelope.astype(np.float64) - float(np.mean(envelope))
    n = x.size
    max_lag = int(0.5 * n)
    if period < 2.0 or period * 2 > max_lag:
        return None
    spectrum = np.fft.rfft(x, n=2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: max_lag + 2]
    acf /= n - np.arange(acf.size)  # unbiased: every lag weighs the same
    if acf[0] <= 0.0:
        return None

    lags: list[float] = []
    weights: list[float] = []
    ks: list[int] = []
    k = 1
    while k * period + 2 < max_lag:
        centre = k * period
        half = max(1.0, min(0.3 * period, 4.0))
        lo, hi = max(1, int(math.floor(centre - half))), min(max_lag, int(math.ceil(centre + half)))
        m = lo + int(np.argmax(acf[lo : hi + 1]))
        if lo < m < hi and acf[m] > 0.1 * acf[0]:
            a, b, c = acf[m - 1], acf[m], acf[m + 1]
            curvature = a - 2.0 * b + c
            shift = 0.5 * (a - c) / curvature if curvature < 0.0 else 0.0
            lags.append(m + float(np.clip(shift, -0.5, 0.5)))
            weights.append(float(acf[m]))
            ks.append(k)
            kk = np.asarray(ks, dtype=np.float64)
            ww = np.asarray(weights)
            period = float(np.sum(ww * kk * np.asarray(lags)) / np.sum(ww * kk * kk))
        k += 1
    if len(ks) < 2:
        return None
    refined = frames_per_minute / period
    coarse_period = frames_per_minute / coarse_bpm
    if abs(period - coarse_period) > 0.5 + 0.02 * coarse_period:  # beyond the tempogram's lag grid
        logger.debug("tempo refinement went too far (%.1f -> %.1f BPM)", coarse_bpm, refined)
        return None
    return refined
