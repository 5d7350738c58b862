"""Samples to image: mel spectrogram, dB, resize (decoding is :mod:`whypop.decoding`,
the pixel <-> seconds/Hz map :mod:`whypop.geometry`).

One function per step, and :func:`spectrogram_image` chaining them with the thesis
settings (44.1 kHz, first 30 s, n_fft 1024, hop 512, 128 slaney mel bands, dB over an
80 dB range, 224x224 uint8, low frequencies at the bottom, time left to right).

:func:`spectrogram_from_samples` is the fast path used by preparation: it computes the
same image as the steps in sequence (to float32 rounding; 22.05 kHz sources to within a
few grey levels, see the note on the STFT core) at about three times librosa's speed
(``benchmarks/prepare.py``).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whypop.config import AudioConfig
from whypop.decoding import Decoded, decode, repeat_to, resample
from whypop.geometry import fmax_hz

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_SILENCE_POWER = 1e-10  # mel power below which a clip counts as silent

@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmax: float | None = None) -> np.ndarray:
    """Slaney mel filterbank (torchaudio's) from 0 Hz to ``fmax`` (default Nyquist), dense (bins, n_mels)."""
    import torchaudio.functional as AF

    top = sample_rate / 2 if fmax is None else float(fmax)
    fb = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, top, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
    return np.ascontiguousarray(fb.numpy(), dtype=np.float32)


def _filters(cfg: AudioConfig) -> np.ndarray:
    top = fmax_hz(cfg)
    return _mel_filters(cfg.sample_rate, cfg.n_fft, cfg.n_mels, None if top >= cfg.sample_rate / 2 else top)


# -- the STFT and mel core ----------------------------------------------------------------
#
# The image is defined on a 44.1 kHz grid (n_fft 1024, hop 512). A source at half that
# rate (22.05 kHz: GTZAN, librosa's examples, many FMA-derived clips) is not upsampled:
# its STFT is taken at the native rate with n_fft and hop halved. The frames then sit at
# the same times and the FFT bins at the same frequencies (bin spacing rate / n_fft is
# unchanged); the bins above 11.025 kHz are the ones upsampling leaves empty; and the
# power of the others differs by the resampler's gain (4 in the passband, which the
# half-length window cancels, falling to 0 at 11.025 kHz), folded into the filterbank
# from libsoxr's measured impulse response. The image equals resampling first to
# within a few grey levels (in the bands at 10-11 kHz, where the resampler's transition
# band is steep) and skips the resampling and half the FFT work.
#
# The FFTs read the frames in place from the samples (strided views; only the few
# frames at the edges are copied, for the padding), 512 frames a call, without a
# window: the periodic Hann window is applied after the FFT as its three-tap kernel in
# frequency, Xw[k] = X[k] / 2 - (X[k-1] + X[k+1]) / 4 (exact), which saves a pass over
# the frames. A compiled kernel (:func:`whypop._spectral.hann_power_mel`) takes each
# batch's FFT, still in the cache, to the windowed power, transposed in tiles of 8
# frames so that each bin's powers lie along the frames, and then to the mel bands,
# each the sum of its few nonzero weights times those rows (contiguous vector
# products). Per batch of 512 frames at 22.05 kHz: 0.03 ms for the power (numpy's
# unwindowed power took 0.06 ms) and 0.02 ms for the bands (the banded BLAS product
# took 0.12 ms). The log10 and the peak are taken per batch too, while it is in the
# cache. The big intermediates (power, mel) live in per-thread scratch buffers reused
# from clip to clip, and every FFT is of a full batch or into a scratch buffer: torch's
# FFT allocates its result, and a steady size lets the allocator reuse one block
# instead of growing and trimming the heap (which cost about 100 page faults, ~0.4 ms,
# per clip).


@dataclass(frozen=True)
class _Bands:
    """A filterbank's nonzero weights, band by band, rows in image order (highest first).

    Band r has weights[offsets[r] : offsets[r] + stops[r] - starts[r]] on bins
    starts[r]:stops[r] (a slaney filter covers a few bins; an empty band has none).
    """

    starts: np.ndarray  # int64 (n_mels,)
    stops: np.ndarray  # int64 (n_mels,)
    offsets: np.ndarray  # int64 (n_mels,)
    weights: np.ndarray  # float32, all bands' nonzero runs end to end
    lead: int  # leading bands with no weights (above a 22.05 kHz source's Nyquist: 20 of 128)

    @classmethod
    def of(cls, fb: np.ndarray) -> "_Bands":
        """From a dense (bins, n_mels) filterbank, low band first."""
        rows = fb[:, ::-1].T  # (n_mels, bins), image order
        starts, stops, runs = [], [], []
        for row in rows:
            nonzero = np.flatnonzero(row)
            lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (0, 0)
            starts.append(lo)
            stops.append(hi)
            runs.append(row[lo:hi])
        lengths = np.array([r.size for r in runs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        weights = np.ascontiguousarray(np.concatenate(runs) if runs else np.zeros(0), dtype=np.float32)
        lead = next((r for r, (lo, hi) in enumerate(zip(starts, stops)) if hi > lo), len(starts))
        return cls(np.array(starts, dtype=np.int64), np.array(stops, dtype=np.int64), offsets, weights, lead)


@dataclass(frozen=True)
class _Grid:
    """How the mel spectrogram of a source is computed (see the note above)."""

    rate: int  # Hz the STFT runs at (the source's when native, else cfg.sample_rate)
    n_fft: int
    hop: int
    bands: _Bands  # the filterbank over this grid's bins, rows in image order
    n_mels: int


def _native_factor(sr: int, cfg: AudioConfig) -> int:
    """2 when the STFT can run at the source rate ``sr`` = cfg.sample_rate / 2; else 1.

    Only k = 2: at k = 4 (11.025 kHz) the resampler's transition band is four bins wide
    and the images differ by up to a dozen grey levels at the source's Nyquist band.
    """
    k = 2
    if sr * k != cfg.sample_rate or cfg.n_fft % (2 * k) or cfg.hop_length % k or cfg.n_fft // k < 64:
        return 1
    return k


@functools.lru_cache(maxsize=16)
def _grid(sr: int, cfg: AudioConfig) -> _Grid:
    fb = _filters(cfg)
    k = _native_factor(sr, cfg)
    if k == 1:
        return _Grid(cfg.sample_rate, cfg.n_fft, cfg.hop_length, _Bands.of(fb), cfg.n_mels)
    n_fft = cfg.n_fft // k
    bins = n_fft // 2 + 1  # the first bins of the target grid, up to the source's Nyquist
    gain = _upsampling_gain(sr, cfg.sample_rate, cfg.n_fft, bins)
    return _Grid(sr, n_fft, cfg.hop_length // k, _Bands.of(fb[:bins] * gain[:, None]), cfg.n_mels)


def _upsampling_gain(src_sr: int, dst_sr: int, n_fft: int, bins: int) -> np.ndarray:
    """Power gain of :func:`resample` from src_sr up to dst_sr = k * src_sr, per STFT bin.

    At the first ``bins`` bins of an ``n_fft`` STFT at ``dst_sr``: the resampler's
    |H(f)|**2 (from its impulse response, which sums to k: k**2 in the passband, 0 at
    src_sr / 2) averaged over each bin's window response |W|**2, i.e. the exact ratio
    for a locally flat spectrum. Near src_sr / 2, where H falls by tens of dB within a
    few bins, this average is what the upsampled STFT measures, not H at the bin centre.
    """
    import torch

    oversample = 64
    fine = oversample * n_fft
    n = fine * src_sr // dst_sr
    impulse = np.zeros(n, dtype=np.float64)
    impulse[n // 2] = 1.0
    h2 = np.abs(np.fft.fft(resample(impulse, src_sr, dst_sr), n=fine)) ** 2
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).numpy()
    w2 = np.abs(np.fft.fft(window, n=fine)) ** 2
    smoothed = np.fft.ifft(np.fft.fft(h2) * np.fft.fft(w2)).real / w2.sum()  # circular: H2 (*) W2
    return np.maximum(smoothed[: bins * oversample : oversample], 0.0).astype(np.float32)


_CHUNK = 512  # frames per FFT call (128, 256 and 1024 measured no faster)
_scratch_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable float32 buffer of this thread (contents undefined)."""
    bufs = _scratch_local.__dict__.setdefault("bufs", {})
    size = math.prod(shape)
    buf = bufs.get(name)
    if buf is None or buf.size < size:
        buf = bufs[name] = np.empty(max(size, 1), dtype=np.float32)
    return buf[:size].reshape(shape)


def _padded(x: np.ndarray, length: int, n_total: int, half: int, start: int, stop: int) -> np.ndarray:
    """Samples start:stop of the centred signal: x[:length], silence to n_total, reflected ends.

    Padded index i is sample s = i - half; beyond either end the signal is reflected
    (numpy's "reflect": s < 0 reads -s, s >= n_total reads 2 (n_total - 1) - s), or
    zero when it is shorter than half a window. Slices, not index arrays: this runs
    twice per clip, and index arrays cost 20 us a call.
    """
    out = np.zeros(stop - start, dtype=np.float32)
    lo, hi = start - half, stop - half  # the samples s covered
    a, b = max(lo, 0), min(hi, length)
    if a < b:
        out[a - lo : b - lo] = x[a:b]
    if n_total <= half:
        return out
    a, b = max(lo, 1 - length), min(hi, 0)  # left end: x[-s] for 0 < -s < length
    if a < b:
        out[a - lo : b - lo] = x[-a : -b : -1]
    edge = 2 * (n_total - 1)  # right end: x[edge - s] for 0 <= edge - s < length
    a, b = max(lo, n_total, edge - length + 1), min(hi, edge + 1)
    if a < b:
        out[a - lo : b - lo] = x[edge - a : edge - b : -1] if edge - b >= 0 else x[edge - a :: -1]
    return out


def _mel_of_batch(frames: "torch.Tensor", grid: _Grid, out: np.ndarray, bits: np.ndarray, col0: int,
                  levels: bool) -> int:
    """Mel power of the (frames, n_fft) raw frames into ``out[:, col0 : col0 + frames]``.

    ``bits`` is ``out`` viewed as uint32. With ``levels``, log10 of the power floored
    at 1e-10 instead (but for the leading empty bands), computed while the block is
    still in the cache. Returns the largest power as float32 bits (see
    :func:`whypop._spectral.hann_power_mel`). torch's FFT (MKL) is twice as fast as
    pocketfft's (numpy, scipy) here. It always allocates its result, so the caller
    keeps batch sizes steady (see the note above). The window, power and bands are
    the compiled kernel's.
    """
    import torch

    n, bins = frames.shape[0], grid.n_fft // 2 + 1
    if n == _CHUNK:
        spec = torch.view_as_real(torch.fft.rfft(frames, dim=1)).numpy()  # (frames, bins, 2)
    else:  # into a scratch buffer: other sizes would make the allocator grow and trim the heap
        spec = _scratch("spectrum", (n, bins, 2))
        torch.fft.rfft(frames, dim=1, out=torch.view_as_complex(torch.from_numpy(spec)))
    b = grid.bands
    floor = _LEVEL_FLOOR if levels else _POWER_FLOOR
    top = _kernel()(spec.reshape(n, 2 * bins), grid.n_fft % 2 == 1, b.starts, b.stops, b.offsets, b.weights,
                    floor, _scratch("power", (bins, _CHUNK)), out, bits, col0)
    if levels:  # the leading empty bands stay at the floor (see _levels_to_image)
        block = out[b.lead :, col0 : col0 + n]
        np.log10(block, out=block)
    return int(top)


_LEVEL_FLOOR, _POWER_FLOOR = np.float32(_SILENCE_POWER), np.float32(0.0)


@functools.cache
def _kernel():
    """The compiled window, power and mel kernel (imports numba on first use)."""
    from whypop._spectral import hann_power_mel

    return hann_power_mel


def _mel_image_order(samples: np.ndarray, n_total: int, n_frames: int, grid: _Grid, out: np.ndarray,
                     levels: bool = False) -> tuple[int, float]:
    """Mel power into ``out`` (n_mels, n_frames), highest band first.

    Returns the frames computed and the log10 of the largest power (NaN or inf if
    any is); with ``levels``, ``out`` holds log10 of the power floored at 1e-10.

    ``samples`` padded with silence to ``n_total`` samples; STFT with center=True and
    reflect padding (constant when shorter than half a window), as torchaudio's
    MelSpectrogram. Frames wholly in the silent padding have zero power and are not
    computed (their columns are left as they were: the image path never reads them,
    and zeroing 2,400 columns of a 2 s clip cost 0.05 ms); frames wholly inside the
    audio are read in place (no padded copy).
    """
    import torch

    n_fft, hop, half = grid.n_fft, grid.hop, grid.n_fft // 2
    x = np.ascontiguousarray(samples, dtype=np.float32)
    length = min(x.shape[0], n_total)
    if length == 0:
        out[:] = 0.0
        return 0, -math.inf
    used = n_frames
    if n_total - length > n_fft:  # a silent tail: frames past the audio are all zero
        used = min(n_frames, (half + length - 1) // hop + 1)
    # frames f whose window [f*hop - half, f*hop - half + n_fft) lies inside x[:length]
    first = -(-half // hop)
    last = min((length - (n_fft - half)) // hop, used - 1) if length >= n_fft else -1
    sources = []  # (first frame, frames tensor)
    if last >= first:
        if first > 0:
            head = _padded(x, length, n_total, half, 0, (first - 1) * hop + n_fft)
            sources.append((0, torch.from_numpy(head).unfold(0, n_fft, hop)))
        body = x[first * hop - half : last * hop - half + n_fft]
        sources.append((first, torch.from_numpy(body).unfold(0, n_fft, hop)))
        start = last + 1
    else:
        start = 0
    if start < used:
        tail = _padded(x, length, n_total, half, start * hop, (used - 1) * hop + n_fft)
        sources.append((start, torch.from_numpy(tail).unfold(0, n_fft, hop)))

    top, bits = 0, out.view(np.uint32)  # float32 bits of the largest power so far
    for f0, frames in sources:  # consecutive frame ranges, together 0:used
        for i in range(0, frames.shape[0], _CHUNK):
            top = max(top, _mel_of_batch(frames[i : i + _CHUNK], grid, out, bits, f0 + i, levels))
    peak = np.array(top, dtype=np.uint32).view(np.float32)[()]
    return used, float(np.log10(peak)) if peak > 0 or peak != peak else -math.inf  # the levels' own log10


def mel_power(samples: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Mel power spectrogram (n_mels, frames) of samples at cfg.sample_rate, row 0 = lowest band.

    The same numbers as ``torchaudio.transforms.MelSpectrogram(center=True,
    pad_mode="reflect", power=2, mel_scale="slaney", norm="slaney")`` (to float32
    rounding): batched real FFTs on strided frames, the window applied in frequency,
    and a sparse filterbank product.
    """
    samples = np.asarray(samples, dtype=np.float32)
    n = samples.shape[0]
    frames = 1 + n // cfg.hop_length
    out = np.zeros((cfg.n_mels, frames), dtype=np.float32)
    _mel_image_order(samples, n, frames, _grid(cfg.sample_rate, cfg), out)
    return out[::-1].copy()


def _unit_in_place(power: np.ndarray, top_db: float, used: int | None = None) -> np.ndarray:
    """:func:`power_to_unit` in place; columns from ``used`` on are known to be 0 power."""
    if used is None or used >= power.shape[-1]:
        used = power.shape[-1]
    part = power[..., :used]
    peak = float(part.max()) if part.size else 0.0
    if not np.isfinite(peak) or peak <= _SILENCE_POWER:
        power[...] = 0.0
        return power

    def unit(p: np.ndarray) -> np.ndarray:  # (10 log10(p) - 10 log10(peak)) / top_db + 1, clipped
        np.maximum(p, np.float32(_SILENCE_POWER), out=p)
        np.log10(p, out=p)
        p *= np.float32(10.0 / top_db)
        p += np.float32(1.0 - 10.0 * math.log10(peak) / top_db)
        return np.clip(p, 0.0, 1.0, out=p)

    unit(part)
    if used < power.shape[-1]:
        power[..., used:] = unit(np.zeros(1, dtype=np.float32))[0]
    return power


def power_to_unit(power: np.ndarray, top_db: float) -> np.ndarray:
    """Decibels relative to the clip's peak, clipped at -top_db, scaled to [0, 1].

    A silent clip (no band above 1e-10) is all zeros: never NaN or -inf.
    """
    return _unit_in_place(np.array(power, dtype=np.float32), top_db)


# -- the resize ---------------------------------------------------------------------------
#
# Pillow's BILINEAR resize of a float image, as two banded matrix products: along the
# time axis (each output column averages about 23 of 2584 frames), then along the 128
# bands (each output row reads 2 or 3). The same coefficients as Pillow (float64,
# normalised to sum 1; Pillow also accumulates in float64, the products here in
# float32: the images agree to 1e-4 grey levels) at a third of the time (0.15 ms vs
# 0.5 ms), and a silent tail of constant columns costs nothing.


@functools.lru_cache(maxsize=32)
def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's BILINEAR resampling of ``n_in`` pixels to ``n_out`` as an (n_out, n_in) matrix.

    Pillow's precompute_coeffs (Resample.c): a triangle of half-width max(n_in / n_out, 1)
    input pixels around each output pixel's centre, bounds rounded as Pillow rounds
    them, weights normalised to sum 1.
    """
    scale = n_in / n_out
    spread = max(scale, 1.0)  # the triangle widens when shrinking (antialiasing)
    out = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - spread + 0.5), 0), min(int(centre + spread + 0.5), n_in)
        x = np.arange(lo, hi)
        w = np.maximum(1.0 - np.abs((x - centre + 0.5) / spread), 0.0)
        total = w.sum()
        out[i, lo:hi] = w / total if total != 0.0 else w
    return out


_Band = tuple[int, int, int, int, np.ndarray]  # (o0, o1, lo, hi, weights): outputs o0:o1 read inputs lo:hi


def _bands(matrix: np.ndarray, block: int) -> tuple[_Band, ...]:
    """An (n_out, n_in) resampling matrix as blocks of ``block`` outputs over the inputs they read."""
    out = []
    for o0 in range(0, matrix.shape[0], block):
        o1 = min(o0 + block, matrix.shape[0])
        touched = np.flatnonzero(matrix[o0:o1].any(axis=0))
        lo, hi = int(touched[0]), int(touched[-1]) + 1
        out.append((o0, o1, lo, hi, np.ascontiguousarray(matrix[o0:o1, lo:hi], dtype=np.float32)))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _resizer(rows: int, cols: int, size: int) -> tuple[tuple[_Band, ...], tuple[_Band, ...]]:
    """The (column, row) bands of a (rows, cols) -> (size, size) bilinear resize.

    Blocks of 16 output columns read about 210 of 2584 frames each (a twelfth of the
    dense product's work in 14 calls); blocks of 32 output rows read about 20 of the
    128 bands (the dense 224 x 128 product took 0.13 ms, as long as the columns' one).
    Column weights are stored transposed, for ``values[:, lo:hi] @ weights``.
    """
    cols_bands = tuple((o0, o1, lo, hi, np.ascontiguousarray(w.T)) for o0, o1, lo, hi, w in _bands(_bilinear(cols, size), 16))
    return cols_bands, _bands(_bilinear(rows, size), 32)


def _resize(values: np.ndarray, size: int, used: int | None = None, fill: float = 0.0, lead: int = 0) -> np.ndarray:
    """float32 (rows, cols) -> (size, size) float32, as Pillow's BILINEAR resize.

    With ``used``, columns from ``used`` on are taken to be ``fill``: blocks that read
    only those are ``fill`` (weights sum to 1), and those that read some are computed
    after filling them in ``values`` (which is modified). Likewise rows before
    ``lead``, which are not read. The result is a scratch buffer of this thread,
    valid until the next call.
    """
    rows, cols = values.shape
    used = cols if used is None else used
    col_bands, row_bands = _resizer(rows, cols, size)
    across = _scratch("resize", (rows, size))
    across[:lead] = fill
    for c0, c1, lo, hi, weights in col_bands:
        if lo >= used:
            across[lead:, c0:c1] = fill
            continue
        if hi > used:
            values[lead:, used:hi] = fill
        np.matmul(values[lead:, lo:hi], weights, out=across[lead:, c0:c1])
    out = _scratch("resized", (size, size))
    for r0, r1, lo, hi, weights in row_bands:
        np.matmul(weights, across[lo:hi], out=out[r0:r1])
    return out


def _grey(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """round(values * scale + offset), clipped to 0..255, as uint8 (values is modified)."""
    values *= np.float32(scale)
    values += np.float32(offset)
    np.rint(values, out=values)
    return np.clip(values, 0, 255, out=values).astype(np.uint8)


def _image(unit_top_first: np.ndarray, size: int) -> np.ndarray:
    """C-contiguous float32 (rows, cols) in [0, 1], top row first -> (size, size) uint8."""
    return _grey(_resize(unit_top_first, size), 255.0, 0.0)


def to_image(unit: np.ndarray, size: int) -> np.ndarray:
    """(n_mels, frames) in [0, 1], low band first -> (size, size) uint8, low band at the bottom."""
    return _image(np.ascontiguousarray(unit[::-1], dtype=np.float32), size)


def _levels_to_image(levels: np.ndarray, used: int, log_peak: float, cfg: AudioConfig, lead: int = 0) -> np.ndarray:
    """log10 mel power (image order; columns from ``used`` on silent) -> the uint8 image.

    ``levels`` holds log10 of the power floored at 1e-10 on columns :used (rows before
    ``lead`` are empty bands, at the floor whatever they hold), and ``log_peak`` is
    their largest. They are floored again at log10 peak - top_db / 10 (where the unit
    value of :func:`power_to_unit` reaches 0; the cap at the peak changes nothing but
    lets numpy use its fast clip kernel, three times faster than np.maximum with a
    scalar), in place. The unit value 10 (log10 p - log10 peak) / top_db + 1 is affine
    in log10 p, and the resize is linear with weights summing to 1, so the affine map
    is applied to the 224 x 224 result instead of the 128 x 2584 input. A silent clip
    (no band above 1e-10) or a non-finite peak gives black.
    """
    silent = math.log10(_SILENCE_POWER)
    if not math.isfinite(log_peak) or log_peak <= silent:
        return np.zeros((cfg.image_size, cfg.image_size), dtype=np.uint8)
    log_floor = np.float32(max(silent, log_peak - cfg.top_db / 10.0))
    part = levels[lead:, :used]
    np.clip(part, log_floor, np.float32(log_peak), out=part)
    resized = _resize(levels, cfg.image_size, used, fill=float(log_floor), lead=lead)
    scale = 10.0 / cfg.top_db
    return _grey(resized, 255.0 * scale, 255.0 * (1.0 - scale * log_peak))


def spectrogram_from_samples(samples: np.ndarray, sr: int, cfg: AudioConfig) -> np.ndarray:
    """Mono samples at any rate -> the uint8 spectrogram image.

    Resample to cfg.sample_rate (or stay native, see the note above), keep the first
    cfg.duration seconds or pad (with silence, or with ``audio.pad = "repeat"`` by
    looping the clip), mel power, dB, resize.
    """
    grid = _grid(int(sr), cfg)
    if cfg.pad == "repeat":
        samples = repeat_to(samples, int(math.ceil(cfg.duration * sr)))
    if grid.rate != sr:
        samples = resample(samples, sr, grid.rate)
    n_target = int(round(cfg.duration * cfg.sample_rate))
    n_total = n_target if grid.rate == cfg.sample_rate else int(round(cfg.duration * grid.rate))
    frames = 1 + n_target // cfg.hop_length
    levels = _scratch("mel", (cfg.n_mels, frames))
    used, log_peak = _mel_image_order(samples, n_total, frames, grid, levels, levels=True)
    return _levels_to_image(levels, used, log_peak, cfg, grid.bands.lead)


def spectrogram_image(path: str | Path, cfg: AudioConfig) -> tuple[np.ndarray, Decoded]:
    """Decode a file and return its spectrogram image and what was decoded."""
    decoded = decode(path, max_seconds=cfg.duration)
    return spectrogram_from_samples(decoded.samples, decoded.sample_rate, cfg), decoded


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W) -> PNG bytes (grayscale), zlib level 1 (the level's cost and size: docs/measurements.md)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
