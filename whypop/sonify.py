"""A spectrogram mask as sound: the song's own audio, filtered to (or cleared of) the region.

A mask on the spectrogram image (a concept patch) is mapped through
:mod:`whypop.geometry` onto the STFT of the song's *original* samples at their own rate,
softened (Hann-smoothed edges, a couple of bins and frames wide, against "musical
noise"), applied, and inverted with the matching inverse STFT (periodic Hann window, hop
a quarter of the window: perfect reconstruction). Nothing is synthesised: ``solo`` is
the part of the song the region covers, ``without`` the rest, and the two sum to the
original (to float rounding) before the output gain.

- ``solo`` of an example: the region's time span plus ``context_s`` either side, in which
  the region's frequencies fade in and out (raised cosine), so the sound does not start
  with a click and the ear can lock onto it;
- ``without`` of an example: the same span, the song minus that (complementary) mask;
- a *song* rendering (several patches of one concept in a song): the whole analysed
  window from 0 s, so a player's time stays the song's time.

Loudness: solo clips are brought to ``target_dbfs`` RMS over the region's span (at most
``max_gain_db`` of gain, never a peak above ``peak_dbfs``), so quiet concepts are
audible; ``without`` keeps the song's level (lowered only if it would clip). The gain is
reported.

When the source audio is missing, :func:`image_to_samples` makes a stand-in from the
stored image by Griffin-Lim (phase estimated, mel resolution): it sounds worse, and the
clip says so in ``fallback``.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whypop.config import AudioConfig
from whypop.geometry import Region, bin_rows, frame_columns, hz_to_row, mask_region, seconds_to_column, soften

SOLO, WITHOUT = "solo", "without"
MODES = (SOLO, WITHOUT)
GRIFFIN_LIM = "griffin-lim"


@dataclass(frozen=True)
class ListenSettings:
    """How regions are rendered (defaults: 46 ms windows, half a second of context)."""

    window_s: float = 0.046  # STFT window, rounded to a power of two of samples (2048 at 44.1 kHz)
    overlap: int = 4  # window / hop
    soft_bins: int = 1  # half-width of the frequency smoothing, in STFT bins (21.5 Hz each)
    soft_frames: int = 2  # half-width of the time smoothing, in hops (11.6 ms each)
    context_s: float = 0.5  # solo examples: seconds of faded context either side
    target_dbfs: float = -20.0  # solo: RMS over the region's span
    peak_dbfs: float = -1.0
    max_gain_db: float = 40.0
    edge_fade_s: float = 0.005  # raised-cosine fade at the clip's ends (no clicks)
    griffin_lim_iters: int = 32

    def stft_size(self, sample_rate: int) -> tuple[int, int]:
        """(n_fft, hop) at a sample rate."""
        n_fft = 2 ** max(6, int(round(math.log2(max(sample_rate * self.window_s, 64)))))
        return n_fft, n_fft // self.overlap

    def key(self) -> str:
        """A short stable digest of the settings (cache keys)."""
        import hashlib

        return hashlib.sha1(repr(sorted(self.__dict__.items())).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Clip:
    """A rendered clip and what it is."""

    samples: np.ndarray = field(repr=False)  # float32 mono, gain applied
    sample_rate: int
    mode: str
    start_s: float  # where the clip starts in the song (seconds)
    region: Region  # the region's bounding box (song seconds, Hz)
    gain_db: float
    fallback: str | None = None  # None: the song's own audio; else what stood in for it and why

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    def info(self) -> "ClipInfo":
        return ClipInfo(self.mode, self.region, self.start_s, self.duration, self.sample_rate, self.gain_db, self.fallback)

    def wav_bytes(self) -> bytes:
        return wav_bytes(self.samples, self.sample_rate)


@dataclass(frozen=True)
class ClipInfo:
    """A clip's description (what ``whypop listen --json`` prints and the cache stores)."""

    mode: str
    region: Region
    clip_start_s: float
    clip_duration_s: float
    sample_rate: int
    gain_db: float
    fallback: str | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode, **self.region.to_dict(), "clip_start_s": self.clip_start_s,
                "clip_duration_s": self.clip_duration_s, "sample_rate": self.sample_rate,
                "gain_db": self.gain_db, "fallback": self.fallback}

    @classmethod
    def from_dict(cls, d: dict) -> "ClipInfo":
        return cls(str(d["mode"]), Region.from_dict(d), float(d["clip_start_s"]), float(d["clip_duration_s"]),
                   int(d["sample_rate"]), float(d["gain_db"]), d.get("fallback"))


@dataclass(frozen=True)
class Separation:
    """A span of the song split by a mask: solo + without == original (before any gain)."""

    original: np.ndarray
    solo: np.ndarray | None
    without: np.ndarray | None
    sample_rate: int
    start_s: float  # song time of sample 0
    region: Region
    n_fft: int
    hop: int


def separate(samples: np.ndarray, sample_rate: int, mask: np.ndarray, audio: AudioConfig,
             settings: ListenSettings = ListenSettings(), whole: bool = False,
             modes: tuple[str, ...] = MODES) -> Separation:
    """Split the song by an image mask, over the region's span plus context (or the whole window).

    Only the parts in ``modes`` are computed (the others are None).
    ``samples``: the song from its start, mono, at ``sample_rate``. The image's window is
    the first ``audio.duration`` seconds; beyond the song's real end there is no audio.
    Raises ValueError for an empty mask.
    """
    import torch

    region = mask_region(mask, audio)
    if region is None:
        raise ValueError("the mask is empty")
    x = np.asarray(samples, dtype=np.float32)
    sr = int(sample_rate)
    window_end = audio.duration
    if whole:
        clip0, clip1 = 0.0, window_end
    else:
        clip0, clip1 = max(0.0, region.start_s - settings.context_s), min(window_end, region.end_s + settings.context_s)
    s0, s1 = int(round(clip0 * sr)), max(int(round(clip1 * sr)), int(round(clip0 * sr)) + 1)
    n_fft, hop = settings.stft_size(sr)
    seg0 = s0 - n_fft  # real samples either side where the song has them, so the edges are exact
    seg = _slice(x, seg0, s1 + n_fft)
    seg[max(0, int(round(window_end * sr)) - seg0):] = 0.0  # beyond the image's window: not in any region
    spec = torch.stft(torch.from_numpy(seg), n_fft, hop, window=_hann(n_fft), center=True, return_complex=True)
    m = _region_mask(mask, audio, region, sr, n_fft, hop, spec.shape[1], seg0 / sr, clip0, clip1, whole, settings)
    a, b = s0 - seg0, s1 - seg0
    parts = {}
    for mode in modes:  # each by its own inverse STFT (so solo + without == original is a real check)
        weights = torch.from_numpy(m if mode == SOLO else 1.0 - m)
        wave = torch.istft(spec * weights, n_fft, hop, window=_hann(n_fft), center=True, length=seg.shape[0])
        parts[mode] = wave.numpy()[a:b].copy()
    return Separation(seg[a:b].copy(), parts.get(SOLO), parts.get(WITHOUT), sr, s0 / sr, region, n_fft, hop)


def render(samples: np.ndarray, sample_rate: int, mask: np.ndarray, audio: AudioConfig, mode: str,
           settings: ListenSettings = ListenSettings(), whole: bool = False, fallback: str | None = None) -> Clip:
    """The ``solo`` or ``without`` clip of a mask, loudness set (see the module note)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: allowed are {', '.join(MODES)}")
    sep = separate(samples, sample_rate, mask, audio, settings, whole, modes=(mode,))
    out = sep.solo if mode == SOLO else sep.without
    sr = sep.sample_rate
    peak = float(np.abs(out).max()) if out.size else 0.0
    peak_cap = 10 ** (settings.peak_dbfs / 20) / peak if peak > 0 else 1.0
    if mode == SOLO:
        a = max(0, int(round((sep.region.start_s - sep.start_s) * sr)))
        b = min(out.shape[0], int(round((sep.region.end_s - sep.start_s) * sr)))
        core = out[a:b] if b > a else out
        rms = float(np.sqrt(np.mean(np.square(core, dtype=np.float64)))) if core.size else 0.0
        gain = 10 ** (settings.target_dbfs / 20) / rms if rms > 1e-9 else 1.0
        gain = min(gain, 10 ** (settings.max_gain_db / 20), peak_cap)
    else:
        gain = min(1.0, peak_cap)
    clip = (out * np.float32(gain)).astype(np.float32)
    _fade_ends(clip, int(settings.edge_fade_s * sr))
    return Clip(clip, sr, mode, sep.start_s, sep.region, 20 * math.log10(gain), fallback)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV (every browser plays it)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_wav(clip: Clip, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(clip.wav_bytes())
    return path


def band_share(samples: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> float:
    """Share of a signal's spectral energy between ``low_hz`` and ``high_hz`` (whole-signal power spectrum)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return 0.0
    power = np.abs(np.fft.rfft(x)) ** 2
    hz = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    total = power.sum()
    return float(power[(hz >= low_hz) & (hz <= high_hz)].sum() / total) if total > 0 else 0.0


# -- Griffin-Lim from the image (no source audio) -------------------------------------------


def image_to_samples(image: np.ndarray, audio: AudioConfig, n_iter: int = 32, seed: int = 0,
                     start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """A stand-in waveform at ``audio.sample_rate`` for the image's window, by Griffin-Lim.

    With ``start_s`` / ``end_s``, only that span (plus a quarter second either side) is
    reconstructed, in place in an otherwise silent window: an example needs only its clip.

    The uint8 image is read back as dB below its peak, resampled from pixels onto the mel
    bands and STFT frames through :mod:`whypop.geometry`, spread from bands to FFT bins
    (each bin the filterbank-weighted mean of its bands' power), and given a phase by
    ``n_iter`` Griffin-Lim iterations. Level is relative (the image keeps no absolute
    level); pitch detail finer than a mel band is lost.
    """
    import torch
    import torchaudio

    size = audio.image_size
    img = np.asarray(image, dtype=np.float64)
    if img.shape != (size, size):
        raise ValueError(f"image shape {img.shape} is not ({size}, {size})")
    db = (img / 255.0 - 1.0) * audio.top_db
    fb = _filterbank(audio.sample_rate, audio.n_fft, audio.n_mels)  # (bins, n_mels), low band first
    centres = _band_centres_hz(audio)
    rows = hz_to_row(centres, audio) - 0.5  # pixel-centre coordinates of each band
    frames = 1 + int(round(audio.duration * audio.sample_rate)) // audio.hop_length
    cols = seconds_to_column(np.arange(frames) * audio.hop_length / audio.sample_rate, audio) - 0.5
    band_db = _interp_rows(db, rows)  # (n_mels, size)
    mel_db = _interp_rows(band_db.T, cols).T  # (n_mels, frames)
    mel_power = 10 ** (mel_db / 10)
    weight = fb.sum(axis=1, keepdims=True)
    power = (fb @ mel_power) / np.maximum(weight, 1e-12)
    power[weight[:, 0] <= 1e-12] = 0.0
    hop = audio.hop_length
    pad = int(math.ceil(0.25 * audio.sample_rate / hop))
    f0 = max(0, int(math.floor(start_s * audio.sample_rate / hop)) - pad)
    f1 = frames if end_s is None else min(frames, int(math.ceil(end_s * audio.sample_rate / hop)) + pad + 1)
    f1 = max(f1, f0 + 2)
    magnitude = torch.from_numpy(np.sqrt(power[:, f0:f1]).astype(np.float32))
    gl = torchaudio.transforms.GriffinLim(n_fft=audio.n_fft, hop_length=audio.hop_length, power=1.0, n_iter=n_iter,
                                          window_fn=torch.hann_window, rand_init=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        part = gl(magnitude).numpy().astype(np.float32)
    wave = np.zeros((frames - 1) * hop, dtype=np.float32)
    n = min(part.shape[0], wave.shape[0] - f0 * hop)
    wave[f0 * hop : f0 * hop + n] = part[:n]  # frame f is centred at sample f * hop
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return wave / peak * 0.5 if peak > 0 else wave


# -- internals ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int):
    import torch

    return torch.hann_window(n_fft, periodic=True)


@functools.lru_cache(maxsize=4)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import torchaudio.functional as AF

    fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
    return fb.numpy().astype(np.float64)


def _band_centres_hz(audio: AudioConfig) -> np.ndarray:
    from whypop.geometry import hz_to_mel, mel_to_hz

    step = float(hz_to_mel(audio.sample_rate / 2)) / (audio.n_mels + 1)
    return mel_to_hz(np.arange(1, audio.n_mels + 1) * step)


def _interp_rows(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (n, m) along axis 0 at fractional indices ``at`` (clamped)."""
    n = values.shape[0]
    at = np.clip(at, 0.0, n - 1.0)
    lo = np.floor(at).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (at - lo)[:, None]
    return values[lo] * (1 - w) + values[hi] * w


def _slice(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """x[a:b] with zeros where a or b lie outside x."""
    out = np.zeros(b - a, dtype=np.float32)
    lo, hi = max(a, 0), min(b, x.shape[0])
    if lo < hi:
        out[lo - a : hi - a] = x[lo:hi]
    return out


def _region_mask(mask: np.ndarray, audio: AudioConfig, region: Region, sr: int, n_fft: int, hop: int,
                 n_frames: int, offset_s: float, clip0: float, clip1: float, whole: bool,
                 settings: ListenSettings) -> np.ndarray:
    """The soft STFT mask: the image mask on the grid, and for solo examples the faded context."""
    size = audio.image_size
    rows = bin_rows(sr, n_fft, audio)
    cols = frame_columns(sr, hop, n_frames, audio, offset_s)
    t = offset_s + np.arange(n_frames) * hop / sr
    weight = np.ones(n_frames, dtype=np.float32)
    if not whole:  # context: the region's first / last column, faded in / out by a raised cosine
        used = np.flatnonzero(np.asarray(mask).any(axis=0))
        first, last = int(used[0]), int(used[-1])
        before, after = t < region.start_s, t >= region.end_s
        cols = np.where(before & (t >= clip0), first, cols)
        cols = np.where(after & (t < clip1), last, cols)
        cols = np.where((t < clip0) | (t >= clip1), -1, cols)
        sides = ((before, region.start_s, region.start_s - clip0), (after, region.end_s, clip1 - region.end_s))
        for side, edge, length in sides:
            if length > 0:
                ramp = 0.5 + 0.5 * np.cos(np.pi * np.clip(np.abs(t - edge) / length, 0, 1))
                weight = np.where(side, ramp, weight).astype(np.float32)
    padded = np.zeros((size + 1, size + 1), dtype=np.float32)
    padded[:-1, :-1] = np.asarray(mask, dtype=np.float32)
    m = padded[rows][:, cols] * weight[None, :]
    return soften(m, settings.soft_bins, settings.soft_frames)


def _fade_ends(x: np.ndarray, n: int) -> None:
    n = min(n, x.shape[0] // 2)
    if n <= 0:
        return
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
