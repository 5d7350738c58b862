"""The demo collection: synthetic "genres" with planted concepts at known places.

Every clip is random background material drawn from one distribution shared by all
genres (coloured noise with a slow level drift, a few sustained chords, soft
percussive hits in random bands), plus one *signature*: a genre-specific sound
confined to a genre-specific frequency band during one segment of the clip. The
genre can therefore only be told from the signature, and we know exactly where it
is (a :class:`PlantedBox` in seconds and Hz), so later stages can check whether the
concepts ACE finds sit on it.

Optionally one genre also carries a deliberate *artefact*: in a share of its clips a
silent band, either a time interval with the audio zeroed or a frequency band zeroed
over the whole clip (the audio counterpart of the black augmentation bands a model
may wrongly learn). Artefacts never overlap the signature. In the clips with an
artefact the signature can be made quieter (``artefact_signature_db``), so that the
artefact carries information the signature does not always give, as a recording
artefact that comes with a genre's productions would: the model then learns it.

Levels: the background is loudness-normalised (RMS -40 dBFS for every clip), so its
level carries no genre information; the signature is set 8-14 dB above the
background's power in its band (during its segment and over the whole clip, whichever
is higher, and at least -15 dB of the background's full-band power). Spectrograms are
scaled in decibels relative to the clip's peak, so a signature that raised the peak (a
kick easily adds 10-17 dB over the noise) would darken its whole image and let a model
recognise the genre from the overall brightness instead of the sound (a 4-genre model
did exactly that with Kick). So every clip carries a steady 20 Hz hum 16 dB above the
background's loudest mel bin: it sets the peak of every spectrogram alike (a bright
bottom row), and a signature is still held down in the rare clip where it would rise
above it. Peaks land around -4 dBFS; a ceiling scales a clip down only if it would
exceed -1 dBFS (rare, so the gain stays independent of the genre).

Determinism: each clip's random streams come from ``(seed, genre index, clip index)``,
so the same arguments write byte-identical files, and a clip does not change when
other genres or more clips are added.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.fft

from whypop.progress import Progress, ProgressEvent, null_progress

log = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
PEAK_CEILING = 10 ** (-1 / 20)  # -1 dBFS
_BACKGROUND_RMS_DBFS = -40.0  # background loudness (RMS over the clip), dBFS: headroom for the hum
_SIGNATURE_SNR_DB = (8.0, 14.0)  # signature power over background power, in its box
_SIGNATURE_FLOOR = 10 ** (-15 / 10)  # signature power at least -15 dB of the background's
_SIGNATURE_SPAN = (0.25, 0.5)  # segment length, share of the clip (1-2 s of a 4 s clip)
_ARTEFACT_TIME_SPAN = (0.0625, 0.10)  # silent interval, share of the clip (0.25-0.4 s of 4 s)
_ARTEFACT_MEL_SPAN = (0.08, 0.10)  # silent frequency band, share of the mel range
_FADE = 0.010  # seconds of fade at signature edges
_RAMP = 0.005  # seconds of ramp just outside a silent interval (no clicks)
_GAP_SECONDS = 0.020  # kept between a silent interval and the signature
_GAP_MEL = 0.01  # share of the mel range kept between a silent band and the signature
_MIN_SAMPLE_RATE = 22050  # the hats signature reaches 10.5 kHz
_HUM_HZ = 20.0  # the steady hum that sets every spectrogram's peak (below every signature band)
_HUM_DB = 16.0  # its mel peak over the background's loudest mel bin
_PEAK_RISE_DB = 0.1  # how far a signature may raise the clip's mel-spectrogram peak
_PEAK_ANALYSIS = dict(n_fft=1024, hop_length=256, n_mels=128)  # the demo config's mel analysis


@dataclass(frozen=True)
class PlantedBox:
    """A planted time-frequency region of one clip."""

    kind: str  # "signature" or "artefact"
    label: str  # signature name ("kick", ...) or "silent-band"
    t0: float  # seconds from clip start
    t1: float
    f0: float  # Hz; a silent time interval spans 0..sample_rate/2
    f1: float


@dataclass(frozen=True)
class DemoClip:
    """One written clip and what was planted in it."""

    track_id: str  # e.g. "demo-kick-0007"
    genre: str  # e.g. "Kick"
    path: Path  # the wav written
    split: str  # "training" | "validation" | "test"
    boxes: tuple[PlantedBox, ...]

    @property
    def signature(self) -> PlantedBox:
        return next(b for b in self.boxes if b.kind == "signature")

    @property
    def artefact(self) -> PlantedBox | None:
        return next((b for b in self.boxes if b.kind == "artefact"), None)


# -- signatures ----------------------------------------------------------------------------

Synth = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, samples, sr) -> signal


@dataclass(frozen=True)
class _Signature:
    label: str
    f0: float  # Hz, the band the sound is confined to
    f1: float
    synth: Synth


def _onsets(rng: np.random.Generator, n: int, sr: int, period: tuple[float, float], jitter: float = 0.1) -> np.ndarray:
    """Regular onsets (samples) with a random period in seconds and small timing jitter."""
    p = rng.uniform(*period)
    times = np.arange(0.0, n / sr, p)
    times = times + rng.uniform(-jitter, jitter, times.size) * p
    times[0] = 0.0
    return np.clip(np.round(times * sr).astype(np.int64), 0, n - 1)


def _add(out: np.ndarray, start: int, event: np.ndarray) -> None:
    end = min(out.size, start + event.size)
    out[start:end] += event[: end - start]


def _kick(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Repeated thumps: a sine falling fast from ~450 Hz to ~45 Hz, decaying."""
    out = np.zeros(n)
    t = np.arange(int(0.3 * sr)) / sr
    for start in _onsets(rng, n, sr, (0.28, 0.45)):
        top, bottom, drop = rng.uniform(380, 520), rng.uniform(42, 60), rng.uniform(0.02, 0.04)
        freq = bottom + (top - bottom) * np.exp(-t / drop)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        _add(out, start, rng.uniform(0.7, 1.0) * np.sin(phase) * np.exp(-t / rng.uniform(0.08, 0.14)))
    return out


def _hats(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Short noise ticks on a fast grid with random accents."""
    out = np.zeros(n)
    t = np.arange(int(0.15 * sr)) / sr
    for start in _onsets(rng, n, sr, (0.08, 0.13), jitter=0.05):
        tick = rng.standard_normal(t.size) * np.exp(-t / rng.uniform(0.015, 0.04))
        _add(out, start, rng.uniform(0.4, 1.0) * tick)
    return out


def _pluck(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Decaying harmonic notes (fundamentals 660-1000 Hz, a pentatonic set)."""
    notes = 660.0 * 2 ** (np.array([0, 2, 4, 7, 9]) / 12)
    out = np.zeros(n)
    t = np.arange(int(0.4 * sr)) / sr
    for start in _onsets(rng, n, sr, (0.16, 0.28)):
        f = rng.choice(notes) * (1 + rng.uniform(-0.005, 0.005))
        tau = rng.uniform(0.08, 0.2)
        note = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * k / tau) / k for k in (1, 2, 3))
        _add(out, start, rng.uniform(0.7, 1.0) * note)
    return out


def _back_to_back(rng: np.random.Generator, n: int, sr: int, seconds: tuple[float, float],
                  gap: tuple[float, float], event: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Events of random length one after the other, a random gap apart; ``event(t)`` renders one."""
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(*seconds) * sr)
        _add(out, pos, event(np.arange(length) / sr))
        pos += length + int(rng.uniform(*gap) * sr)
    return out


def _formant(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Vowel-like bursts: a voiced harmonic series shaped by two formants in 1.7-3.8 kHz."""

    def burst(t: np.ndarray) -> np.ndarray:
        length = t.size
        f0 = rng.uniform(110, 220)
        inst = f0 * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 6) * t))  # vibrato
        phase = 2 * np.pi * np.cumsum(inst) / sr
        formants = ((rng.uniform(1900, 2400), rng.uniform(120, 220)), (rng.uniform(2700, 3400), rng.uniform(150, 260)))
        out = np.zeros(length)
        for k in range(1, int(3800 / f0) + 1):
            fk = k * f0
            w = sum(math.exp(-0.5 * ((fk - fc) / bw) ** 2) for fc, bw in formants) + 0.03
            if fk >= 1600 and w > 0.04:
                out += w * np.sin(k * phase)
        return out * np.hanning(length) * rng.uniform(0.7, 1.0)

    return _back_to_back(rng, n, sr, (0.15, 0.3), (0.03, 0.09), burst)


def _chirp(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Repeated rising sweeps, ~3.1 kHz up to ~5.8 kHz."""

    def sweep(t: np.ndarray) -> np.ndarray:
        lo, hi = rng.uniform(3100, 3500), rng.uniform(5200, 5900)
        freq = lo * (hi / lo) ** (t / t[-1])
        return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(t.size) * rng.uniform(0.7, 1.0)

    return _back_to_back(rng, n, sr, (0.12, 0.25), (0.02, 0.07), sweep)


def _bell(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Struck bells: inharmonic partials (ratios 1, 1.19, 1.56, 1.83, 2.09) from 1.25-1.4 kHz."""
    ratios = np.array([1.0, 1.19, 1.56, 1.83, 2.09])
    out = np.zeros(n)
    t = np.arange(int(0.8 * sr)) / sr
    for start in _onsets(rng, n, sr, (0.35, 0.6)):
        base = rng.uniform(1250, 1400)
        strike = np.zeros(t.size)
        for j, r in enumerate(ratios):
            tau = rng.uniform(0.25, 0.5) / (1 + 0.4 * j)
            strike += rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * base * r * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / tau)
        _add(out, start, strike)
    return out


def _buzz(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Gated sawtooth notes (fundamentals 55-95 Hz; harmonics kept in 150-700 Hz)."""

    def note(t: np.ndarray) -> np.ndarray:
        f0 = rng.uniform(55, 95)
        saw = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(760 / f0) + 1))
        env = np.minimum(1.0, np.minimum(t / 0.01, (t[-1] - t) / 0.02))
        return saw * env * rng.uniform(0.7, 1.0)

    return _back_to_back(rng, n, sr, (0.2, 0.4), (0.03, 0.08), note)


def _sweep(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A third-octave noise band gliding across 2.5-7 kHz (up or down) over the segment."""
    t = np.arange(n) / sr
    lo, hi = 2500 * 2 ** (1 / 6), 7000 * 2 ** (-1 / 6)
    pos = t / max(t[-1], 1e-9)
    if rng.random() < 0.5:
        pos = 1 - pos
    centre = lo * (hi / lo) ** pos
    out = np.zeros(n)
    for offset in rng.uniform(-1 / 6, 1 / 6, 24):
        inst = centre * 2**offset
        out += np.sin(2 * np.pi * np.cumsum(inst) / sr + rng.uniform(0, 2 * np.pi))
    return out


_SIGNATURES = (
    _Signature("kick", 30.0, 600.0, _kick),
    _Signature("hats", 5500.0, 10500.0, _hats),
    _Signature("pluck", 650.0, 1500.0, _pluck),
    _Signature("formant", 1700.0, 3800.0, _formant),
    _Signature("chirp", 3000.0, 6000.0, _chirp),
    _Signature("bell", 1200.0, 3000.0, _bell),
    _Signature("buzz", 150.0, 700.0, _buzz),
    _Signature("sweep", 2500.0, 7000.0, _sweep),
)
GENRE_SIGNATURES: tuple[str, ...] = tuple(s.label for s in _SIGNATURES)
"""Signature kinds in genre order: genre i of the demo is ``GENRE_SIGNATURES[i]``."""

SIGNATURE_BANDS: dict[str, tuple[float, float]] = {s.label: (s.f0, s.f1) for s in _SIGNATURES}
"""Each signature's frequency band in Hz (the f0, f1 of its boxes)."""


def genre_name(index: int) -> str:
    """Folder and label name of demo genre ``index`` (e.g. 0 -> "Kick")."""
    return GENRE_SIGNATURES[index].capitalize()


# -- mel scale -----------------------------------------------------------------------------

_F_SP = 200.0 / 3  # slaney: Hz per mel below 1 kHz
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < 1000.0 else 15.0 + math.log(hz / 1000.0) / _LOGSTEP


def _mel_to_hz(mel: float) -> float:
    return mel * _F_SP if mel < 15.0 else 1000.0 * math.exp((mel - 15.0) * _LOGSTEP)


def hz_to_mel_fraction(hz: float, sample_rate: int) -> float:
    """Position of ``hz`` on the slaney mel axis from 0 Hz (0.0) to sample_rate/2 (1.0)."""
    return _hz_to_mel(min(max(hz, 0.0), sample_rate / 2)) / _hz_to_mel(sample_rate / 2)


def _mel_fraction_to_hz(fraction: float, sample_rate: int) -> float:
    return _mel_to_hz(fraction * _hz_to_mel(sample_rate / 2))


# -- synthesis -----------------------------------------------------------------------------


def _bandpass(x: np.ndarray, sr: int, f0: float, f1: float) -> np.ndarray:
    """Keep only the FFT bins in [f0, f1] Hz (zero-padded to a fast length, same length out)."""
    m = scipy.fft.next_fast_len(x.size, real=True)
    spec = scipy.fft.rfft(x, m)
    freqs = np.fft.rfftfreq(m, 1 / sr)
    spec[(freqs < f0) | (freqs > f1)] = 0
    return scipy.fft.irfft(spec, m)[: x.size]


def _band_power(x: np.ndarray, sr: int, f0: float, f1: float) -> float:
    """Mean power per sample of ``x`` within [f0, f1] Hz (Parseval on the zero-padded FFT)."""
    m = scipy.fft.next_fast_len(x.size, real=True)
    spec = scipy.fft.rfft(x, m)
    freqs = np.fft.rfftfreq(m, 1 / sr)
    keep = (freqs >= f0) & (freqs <= f1)
    return float(2 * np.sum(np.abs(spec[keep]) ** 2) / (m * x.size))


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Genre-free material: coloured noise, chords and soft hits, RMS-normalised to 1."""
    t = np.arange(n) / sr
    # coloured noise (pink .. brown) above ~30 Hz, with a slow random level drift (+-6 dB)
    m = scipy.fft.next_fast_len(n, real=True)
    freqs = np.fft.rfftfreq(m, 1 / sr)
    shape = np.where(freqs > 30, np.maximum(freqs, 1.0) ** (-rng.uniform(0.8, 2.0) / 2), 0.0)
    white = rng.standard_normal((2, freqs.size))  # gaussian noise, drawn as its spectrum
    noise = scipy.fft.irfft((white[0] + 1j * white[1]) * shape, m)[:n]
    knots = rng.uniform(-6, 6, int(n / sr * 2) + 2)
    drift = 10 ** (np.interp(t, np.linspace(0, t[-1], knots.size), knots) / 20)
    noise *= drift / np.sqrt(np.mean(noise**2) + 1e-20)
    bg = noise * 10 ** (rng.uniform(-6, 0) / 20)
    # a few sustained chords
    for _ in range(rng.integers(1, 4)):
        length = int(rng.uniform(0.5, 2.5) * sr)
        start = int(rng.integers(0, n))
        length = min(length, n - start)
        if length < int(0.05 * sr):
            continue
        tt = np.arange(length) / sr
        root = 80 * 2 ** rng.uniform(0, math.log2(600 / 80))
        intervals = ((0, 4, 7), (0, 3, 7), (0, 7), (0, 5, 9))[rng.integers(0, 4)]
        roll = rng.uniform(1.0, 2.0)
        chord = np.zeros(length)
        for semis in intervals:
            f = root * 2 ** (semis / 12)
            step = np.exp(2j * np.pi * f * tt)  # harmonic k is step**k: no sin per harmonic
            partial = np.ones(length, dtype=complex)
            for k in range(1, min(7, int((sr / 2 - 500) / f) + 1)):
                partial *= step
                chord += (partial * np.exp(1j * rng.uniform(0, 2 * np.pi))).imag / k**roll
        attack, release = rng.uniform(0.02, 0.1), rng.uniform(0.1, 0.3)
        env = np.clip(np.minimum(tt / attack, (tt[-1] - tt) / release), 0, 1)
        chord *= env / np.sqrt(np.mean(chord**2) + 1e-20)
        bg[start : start + length] += chord * 10 ** (rng.uniform(-12, -2) / 20)
    # soft percussive hits in random bands
    hit_len = scipy.fft.next_fast_len(int(0.3 * sr), real=True)
    th = np.arange(hit_len) / sr
    for _ in range(rng.integers(4, 15)):
        centre = 60 * 2 ** rng.uniform(0, math.log2(9000 / 60))
        half = 2 ** (rng.uniform(0.5, 2.0) / 2)
        burst = rng.standard_normal(hit_len) * np.exp(-th / rng.uniform(0.005, 0.06))
        burst = _bandpass(burst, sr, centre / half, min(centre * half, sr / 2))
        burst /= np.sqrt(np.mean(burst[: int(0.05 * sr)] ** 2) + 1e-20)
        _add(bg, int(rng.integers(0, n)), burst * 10 ** (rng.uniform(-10, 0) / 20))
    return bg / np.sqrt(np.mean(bg**2) + 1e-20)


def _signature_segment(rng: np.random.Generator, sig: _Signature, n: int, sr: int) -> tuple[int, int, np.ndarray]:
    """Place the signature: (start sample, end sample, band-limited unit-level signal)."""
    length = int(round(rng.uniform(*_SIGNATURE_SPAN) * n))
    start = int(rng.integers(0, n - length + 1))
    x = _bandpass(sig.synth(rng, length, sr), sr, sig.f0, sig.f1)
    fade = max(1, int(_FADE * sr))
    ramp = np.minimum(1.0, np.minimum(np.arange(length) + 1, length - np.arange(length)) / fade)
    return start, start + length, x * ramp


def _pick_interval(rng: np.random.Generator, lo: float, hi: float, width: float, avoid: tuple[float, float], gap: float) -> float:
    """A start in [lo, hi - width] such that [start, start+width] keeps ``gap`` from ``avoid``."""
    spans = [(lo, avoid[0] - gap - width), (avoid[1] + gap, hi - width)]
    spans = [(a, b) for a, b in spans if b > a]
    total = sum(b - a for a, b in spans)
    assert total > 0, "no room for the artefact"  # signature <= 50%, artefact <= 10%
    u = rng.uniform(0, total)
    for a, b in spans:
        if u <= b - a:
            return a + u
        u -= b - a
    return spans[-1][1]


def _plant_artefact(
    rng: np.random.Generator, audio: np.ndarray, sr: int, signature: PlantedBox
) -> PlantedBox:
    """Zero a time interval or a frequency band of ``audio`` (in place), away from the signature."""
    n = audio.size
    seconds = n / sr
    if rng.random() < 0.5:
        width = int(round(rng.uniform(*_ARTEFACT_TIME_SPAN) * n))
        start = int(round(_pick_interval(rng, 0.0, n, width, (signature.t0 * sr, signature.t1 * sr), _GAP_SECONDS * sr)))
        start = min(max(start, 0), n - width)
        r = int(_RAMP * sr)
        fall = 0.5 * (1 + np.cos(np.pi * np.arange(1, r + 1) / (r + 1)))  # just below 1 .. just above 0
        lo, hi = max(0, start - r), min(n, start + width + r)
        audio[lo:start] *= fall[r - (start - lo) :]
        audio[start + width : hi] *= fall[::-1][: hi - start - width]
        audio[start : start + width] = 0
        return PlantedBox("artefact", "silent-band", start / sr, (start + width) / sr, 0.0, sr / 2)
    width = rng.uniform(*_ARTEFACT_MEL_SPAN)
    avoid = (hz_to_mel_fraction(signature.f0, sr), hz_to_mel_fraction(signature.f1, sr))
    lowest = hz_to_mel_fraction(2 * _HUM_HZ, sr)  # keep the hum: it sets the image's scale
    m0 = _pick_interval(rng, lowest, 1.0, width, avoid, _GAP_MEL)
    f0, f1 = _mel_fraction_to_hz(m0, sr), _mel_fraction_to_hz(min(m0 + width, 1.0), sr)
    spec = scipy.fft.rfft(audio)  # exact length: the band is zero over the whole clip
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs >= f0) & (freqs <= f1)] = 0
    audio[:] = scipy.fft.irfft(spec, n)
    return PlantedBox("artefact", "silent-band", 0.0, seconds, f0, f1)


def _hum(bg: np.ndarray, sr: int) -> np.ndarray:
    """A steady sine at ``_HUM_HZ`` whose mel peak is ``_HUM_DB`` over that of ``bg``."""
    from whypop.audio import mel_power
    from whypop.config import AudioConfig

    cfg = AudioConfig(sample_rate=sr, **_PEAK_ANALYSIS)
    hum = np.sin(2 * np.pi * _HUM_HZ * np.arange(bg.size) / sr)
    ratio = float(mel_power(bg, cfg).max()) / float(mel_power(hum, cfg).max())
    return hum * math.sqrt(ratio * 10 ** (_HUM_DB / 10))


def _peak_safe_gain(bg: np.ndarray, start: int, x: np.ndarray, gain: float, sr: int) -> float:
    """``gain``, or the largest lower gain at which adding ``x * gain`` at ``start`` keeps
    the mel-spectrogram peak of ``bg`` (within ``_PEAK_RISE_DB``).

    A bisection on the log of the gain (the peak of the mixture grows with the gain,
    but near the limit it is set jointly by background and signature, so rescaling by
    the overshoot converges too slowly): 10 steps over 3 decades, about 0.7% precise.
    """
    from whypop.audio import mel_power
    from whypop.config import AudioConfig

    cfg = AudioConfig(sample_rate=sr, **_PEAK_ANALYSIS)
    limit = float(mel_power(bg, cfg).max()) * 10 ** (_PEAK_RISE_DB / 10)
    audio = bg.copy()

    def fits(g: float) -> bool:
        audio[:] = bg
        audio[start : start + x.size] += x * g
        return float(mel_power(audio, cfg).max()) <= limit

    if fits(gain):
        return gain
    lo, hi = math.log(gain) - 3 * math.log(10), math.log(gain)  # lo: 60 dB down, always fits
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(math.exp(mid)) else (lo, mid)
    return math.exp(lo)


def _render_clip(
    seed: int, genre: int, index: int, n: int, sr: int, artefact: bool, artefact_signature_db: float = 0.0,
) -> tuple[np.ndarray, tuple[PlantedBox, ...]]:
    """One clip's int16 samples and planted boxes; depends only on the arguments."""
    bg_rng, sig_rng, art_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, genre, index]).spawn(3))
    sig = _SIGNATURES[genre]
    bg = _background(bg_rng, n, sr) * 10 ** (_BACKGROUND_RMS_DBFS / 20)
    hum = _hum(bg, sr)
    start, end, x = _signature_segment(sig_rng, sig, n, sr)
    seg = bg[start:end]
    # above the band's background both during the segment and over the whole clip
    target = max(
        _band_power(seg, sr, sig.f0, sig.f1),
        _band_power(bg, sr, sig.f0, sig.f1),
        _SIGNATURE_FLOOR * float(np.mean(seg**2)),
    )
    target *= 10 ** (sig_rng.uniform(*_SIGNATURE_SNR_DB) / 10)
    if artefact:
        target *= 10 ** (artefact_signature_db / 10)
    bg += hum  # after the level of the signature is set: the hum is no part of its band's background
    gain = _peak_safe_gain(bg, start, x, math.sqrt(target / (float(np.mean(x**2)) + 1e-30)), sr)
    audio = bg.copy()
    audio[start : start + x.size] += x * gain
    boxes = [PlantedBox("signature", sig.label, start / sr, end / sr, sig.f0, sig.f1)]
    if artefact:
        boxes.append(_plant_artefact(art_rng, audio, sr, boxes[0]))
    peak = float(np.max(np.abs(audio)))
    if peak > PEAK_CEILING:
        audio *= PEAK_CEILING / peak
    pcm = np.round(audio * 32767).astype("<i2")
    return pcm, tuple(boxes)


def _split_labels(n: int, shares: tuple[float, float, float], rng: np.random.Generator) -> list[str]:
    """Seeded split of n clips by shares (largest remainder, so counts add up to n)."""
    raw = [s * n for s in shares]
    counts = [int(math.floor(r)) for r in raw]
    for i in sorted(range(3), key=lambda i: counts[i] - raw[i])[: n - sum(counts)]:
        counts[i] += 1
    labels = [name for name, c in zip(SPLITS, counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n)]


def _artefact_flags(splits: list[str], share: float, rng: np.random.Generator) -> list[bool]:
    """Pick round(share * count) clips within each split, so every split has the artefact rate."""
    flags = [False] * len(splits)
    for name in SPLITS:
        members = [i for i, s in enumerate(splits) if s == name]
        for i in rng.permutation(members)[: int(round(share * len(members)))]:
            flags[int(i)] = True
    return flags


def _validate(
    genres: int, clips_per_genre: int, clip_seconds: float, sample_rate: int, seed: int,
    artefact_genre: int | None, artefact_share: float, split: tuple[float, float, float],
    artefact_signature_db: float = 0.0,
) -> None:
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(genres) or not 1 <= genres <= len(_SIGNATURES):
        raise ValueError(f"genres={genres!r}: allowed 1..{len(_SIGNATURES)}")
    if not is_int(clips_per_genre) or clips_per_genre < 1:
        raise ValueError(f"clips_per_genre={clips_per_genre!r}: at least 1")
    if not isinstance(clip_seconds, (int, float)) or not math.isfinite(clip_seconds) or clip_seconds < 1:
        raise ValueError(f"clip_seconds={clip_seconds!r}: at least 1 s")
    if not is_int(sample_rate) or sample_rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate={sample_rate!r}: at least {_MIN_SAMPLE_RATE} Hz (signatures reach 10.5 kHz)")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r}: a non-negative integer")
    if artefact_genre is not None and (not is_int(artefact_genre) or not 0 <= artefact_genre < genres):
        raise ValueError(f"artefact_genre={artefact_genre!r}: None or 0..{genres - 1} (genres={genres})")
    if not isinstance(artefact_signature_db, (int, float)) or not -30.0 <= artefact_signature_db <= 0.0:
        raise ValueError(f"artefact_signature_db={artefact_signature_db!r}: allowed -30..0 dB")
    if not 0.0 <= artefact_share <= 1.0:
        raise ValueError(f"artefact_share={artefact_share!r}: allowed 0..1")
    if len(split) != 3 or any(not 0 <= s <= 1 for s in split) or abs(sum(split) - 1) > 1e-6:
        raise ValueError(f"split={tuple(split)!r}: three shares (training, validation, test) in 0..1 summing to 1")


def generate_demo(
    out_dir: Path,
    *,
    genres: int = 4,
    clips_per_genre: int = 40,
    clip_seconds: float = 4.0,
    sample_rate: int = 22050,
    seed: int = 0,
    artefact_genre: int | None = 3,
    artefact_share: float = 0.7,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    artefact_signature_db: float = 0.0,
    progress: Progress = null_progress,
) -> list[DemoClip]:
    """Write the demo collection as ``out_dir/<Genre>/<track_id>.wav`` (16-bit mono).

    Genre i is ``GENRE_SIGNATURES[i]`` capitalised. ``artefact_genre`` (an index, or
    None) gets a silent band in a share ``artefact_share`` of its clips (per split),
    whose signature is ``artefact_signature_db`` louder (negative: quieter).
    ``split`` gives training/validation/test shares, assigned per genre with ``seed``.
    Same arguments, same bytes; stale ``demo-*.wav`` clips of an earlier run in the genre
    folders are removed so a folder reader sees exactly this collection.
    Raises ValueError naming any bad argument. Returns clips in genre, then index order.
    """
    _validate(genres, clips_per_genre, clip_seconds, sample_rate, seed, artefact_genre, artefact_share, split,
              artefact_signature_db)
    import soundfile as sf

    out_dir = Path(out_dir)
    n = int(round(clip_seconds * sample_rate))
    total = genres * clips_per_genre
    clips: list[DemoClip] = []
    for g in range(genres):
        label, name = GENRE_SIGNATURES[g], genre_name(g)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        plan_rng = np.random.default_rng(np.random.SeedSequence([seed, g, 2**31]))
        splits = _split_labels(clips_per_genre, split, plan_rng)
        flags = _artefact_flags(splits, artefact_share, plan_rng) if g == artefact_genre else [False] * clips_per_genre
        for i in range(clips_per_genre):
            pcm, boxes = _render_clip(seed, g, i, n, sample_rate, flags[i], artefact_signature_db)
            track_id = f"demo-{label}-{i:04d}"
            path = folder / f"{track_id}.wav"
            tmp = folder / f"{track_id}.wav.tmp"
            sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")
            os.replace(tmp, path)
            clips.append(DemoClip(track_id, name, path, splits[i], boxes))
            progress(ProgressEvent("prepare", "demo clips", len(clips), total))
    _remove_stale(out_dir, {c.path.name for c in clips})
    n_art = sum(c.artefact is not None for c in clips)
    log.info("demo: %d clips of %.1f s in %d genres written to %s (%d with a silent band)",
             total, clip_seconds, genres, out_dir, n_art)
    return clips


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete demo clips of an earlier, larger run (only files named like ours)."""
    for label in GENRE_SIGNATURES:
        folder = out_dir / label.capitalize()
        if not folder.is_dir():
            continue
        pattern = re.compile(rf"demo-{label}-\d{{4,}}\.wav(\.tmp)?")
        for path in folder.iterdir():
            if pattern.fullmatch(path.name) and path.name not in keep:
                log.info("demo: removing stale clip %s", path)
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


FRESH_INDEX = 2**30  # clip index of fresh songs: no collection writes this many clips per genre


def make_song(
    genre: str, seed: int, out: Path, *, clip_seconds: float = 4.0, sample_rate: int = 22050,
    genres: int = len(_SIGNATURES),
) -> DemoClip:
    """Write one fresh demo clip of ``genre`` (a name such as "Kick") to ``out`` and return it.

    The clip comes from the same generator as the collection, with the clip index
    ``FRESH_INDEX`` (beyond any collection's clip count) and ``seed``, so it belongs to no
    run while being drawn from the same distribution; the same arguments write the same
    bytes. Fresh clips carry no artefact: the signature is the genre's only mark.
    Raises ValueError naming a bad argument.
    """
    names = [genre_name(i) for i in range(genres)]
    match = [i for i, n in enumerate(names) if n.lower() == str(genre).strip().lower()]
    if not match:
        raise ValueError(f"unknown demo genre {genre!r}: allowed are {', '.join(names)}")
    _validate(genres, 1, clip_seconds, sample_rate, seed, None, 0.0, (1.0, 0.0, 0.0))
    import soundfile as sf

    g = match[0]
    n = int(round(clip_seconds * sample_rate))
    pcm, boxes = _render_clip(int(seed), g, FRESH_INDEX, n, sample_rate, False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, out)
    return DemoClip(f"fresh-{GENRE_SIGNATURES[g]}-{int(seed)}", names[g], out, "fresh", boxes)
