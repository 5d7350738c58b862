"""Spectrogram image pixels <-> seconds and Hz, through the geometry the image is built with.

:mod:`whypop.audio` builds the image as the mel power of an STFT (frames centred at
``f * hop / sample_rate`` seconds, ``center=True``), ``n_mels`` slaney bands whose centres
lie evenly on the slaney mel scale from 0 Hz to the Nyquist frequency, resized from
(n_mels, frames) to (image_size, image_size) by Pillow's bilinear resize, highest band on
the top row. Pillow maps output pixel ``i`` onto input coordinates ``[i, i + 1) * scale``
(input pixel ``j`` centred at ``j + 0.5``), so:

- column ``c`` covers frames ``[c, c + 1) * frames / image_size`` (in frame-centre
  coordinates minus half a frame), i.e. seconds ``(c * frames / image_size - 0.5) * hop /
  sample_rate``: within half a hop (5.8 ms) of ``c * duration / image_size``;
- row ``r`` (from the top) covers input rows ``[r, r + 1) * n_mels / image_size``; input
  row ``u`` (continuous, from the top) is mel ``(n_mels + 0.5 - u) * step`` with ``step =
  mel(Nyquist) / (n_mels + 1)`` (band ``b``, counted from the bottom, peaks at mel ``(b + 1)
  * step``).

The outermost edges are stretched to the window's ends (0 s and ``duration``; 0 Hz and
the Nyquist frequency, where the lowest and highest bands' triangles end), so the pixels
tile the whole time-frequency window: every (second, Hz) in it lies in exactly one
pixel. Inside, edges are exact; the resize's blur (about one input pixel either side)
and each band's width mean a pixel also *sees* a little of its neighbours' cells.

Regions known to be empty (:func:`empty_regions`): the rows above a source's Nyquist
frequency when it is below the mel range's top (``audio.fmax``), and the columns after
a short song ends when it is padded with silence (``audio.pad``).

Also here, unchanged: the planted-box approximation :func:`box_to_pixels` (linear in mel
from 0 Hz to Nyquist over the image height) that extraction uses for planted regions,
:func:`pixel_to_seconds` and :func:`hz_to_mel`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from whypop.config import AudioConfig

# -- the slaney mel scale -----------------------------------------------------------------

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: float | np.ndarray) -> float | np.ndarray:
    """Slaney mel scale (as librosa and torchaudio's mel_scale='slaney')."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    return np.where(hz >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-9) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(mel: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


def fmax_hz(audio: AudioConfig) -> float:
    """The top of the image's mel range in Hz: ``audio.fmax``, or the Nyquist frequency of ``audio.sample_rate``.

    ``"auto"`` is resolved by preparation (to the sources' common Nyquist frequency) and
    stored as a number in the run's configuration; unresolved, it means the Nyquist frequency.
    """
    if isinstance(audio.fmax, str):
        return audio.sample_rate / 2
    return min(float(audio.fmax), audio.sample_rate / 2)


# -- exact pixel edges --------------------------------------------------------------------


def frame_count(audio: AudioConfig) -> int:
    """STFT frames of the image's window (``1 + samples // hop``, as audio.py computes them)."""
    return 1 + int(round(audio.duration * audio.sample_rate)) // audio.hop_length


@functools.lru_cache(maxsize=16)
def _column_edges(audio: AudioConfig) -> np.ndarray:
    size, frames = audio.image_size, frame_count(audio)
    u = np.arange(size + 1, dtype=np.float64) * frames / size
    t = np.clip((u - 0.5) * audio.hop_length / audio.sample_rate, 0.0, audio.duration)
    t[0], t[-1] = 0.0, audio.duration
    t.setflags(write=False)
    return t


@functools.lru_cache(maxsize=16)
def _row_edges_mel(audio: AudioConfig) -> np.ndarray:
    size, n = audio.image_size, audio.n_mels
    step = float(hz_to_mel(fmax_hz(audio))) / (n + 1)
    u = np.arange(size + 1, dtype=np.float64) * n / size
    mel = (n + 0.5 - u) * step
    mel[0], mel[-1] = (n + 1) * step, 0.0
    mel.setflags(write=False)
    return mel


def column_edges_s(audio: AudioConfig) -> np.ndarray:
    """Seconds of the ``image_size + 1`` column edges, left to right (0 .. duration)."""
    return _column_edges(audio)


def row_edges_hz(audio: AudioConfig) -> np.ndarray:
    """Hz of the ``image_size + 1`` row edges, top to bottom (the mel range's top .. 0)."""
    return np.minimum(mel_to_hz(_row_edges_mel(audio)), fmax_hz(audio))


def column_to_seconds(x: float | np.ndarray, audio: AudioConfig) -> float | np.ndarray:
    """Image column coordinate (continuous, 0 .. image_size: edges at integers) -> seconds."""
    edges = _column_edges(audio)
    out = np.interp(np.asarray(x, dtype=np.float64), np.arange(edges.size), edges)
    return float(out) if np.ndim(out) == 0 else out


def seconds_to_column(t: float | np.ndarray, audio: AudioConfig) -> float | np.ndarray:
    """Seconds -> image column coordinate (continuous; clipped to 0 .. image_size)."""
    edges = _column_edges(audio)
    out = np.interp(np.asarray(t, dtype=np.float64), edges, np.arange(edges.size))
    return float(out) if np.ndim(out) == 0 else out


def row_to_hz(y: float | np.ndarray, audio: AudioConfig) -> float | np.ndarray:
    """Image row coordinate from the top (continuous, 0 .. image_size) -> Hz (linear in mel between edges)."""
    mel = _row_edges_mel(audio)
    out = np.minimum(mel_to_hz(np.interp(np.asarray(y, dtype=np.float64), np.arange(mel.size), mel)), fmax_hz(audio))
    return float(out) if np.ndim(out) == 0 else out


def hz_to_row(hz: float | np.ndarray, audio: AudioConfig) -> float | np.ndarray:
    """Hz -> image row coordinate from the top (continuous; clipped to 0 .. image_size)."""
    mel = _row_edges_mel(audio)  # decreasing: interpolate on the reversed arrays
    m = hz_to_mel(np.maximum(np.asarray(hz, dtype=np.float64), 0.0))
    out = np.interp(m, mel[::-1], np.arange(mel.size, dtype=np.float64)[::-1])
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class Region:
    """A time-frequency rectangle: seconds from the clip start and Hz."""

    start_s: float
    end_s: float
    low_hz: float
    high_hz: float

    def to_dict(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s, "low_hz": self.low_hz, "high_hz": self.high_hz}

    @classmethod
    def from_dict(cls, d: dict) -> "Region":
        return cls(float(d["start_s"]), float(d["end_s"]), float(d["low_hz"]), float(d["high_hz"]))


def pixels_to_region(box: tuple[int, int, int, int], audio: AudioConfig) -> Region:
    """Pixel box (x0, y0, x1, y1), y0 the top row, end-exclusive -> the Region its pixels cover."""
    x0, y0, x1, y1 = box
    return Region(float(column_to_seconds(x0, audio)), float(column_to_seconds(x1, audio)),
                  float(row_to_hz(y1, audio)), float(row_to_hz(y0, audio)))


def region_to_pixels(region: Region, audio: AudioConfig) -> tuple[int, int, int, int]:
    """The smallest pixel box (x0, y0, x1, y1), y0 the top row, whose cells cover the Region.

    Inverse of :func:`pixels_to_region` on pixel boxes (up to float rounding at the edges).
    """
    size, eps = audio.image_size, 1e-6
    x0 = int(np.floor(seconds_to_column(region.start_s, audio) + eps))
    x1 = int(np.ceil(seconds_to_column(region.end_s, audio) - eps))
    y0 = int(np.floor(hz_to_row(region.high_hz, audio) + eps))
    y1 = int(np.ceil(hz_to_row(region.low_hz, audio) - eps))
    x0, y0 = min(max(x0, 0), size - 1), min(max(y0, 0), size - 1)
    return x0, y0, min(max(x1, x0 + 1), size), min(max(y1, y0 + 1), size)


def mask_region(mask: np.ndarray, audio: AudioConfig) -> Region | None:
    """The bounding Region of a (image_size, image_size) mask's pixels (None when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return pixels_to_region((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1), audio)


def mask_cells(mask: np.ndarray, audio: AudioConfig) -> list[Region]:
    """Every mask pixel as its (seconds, Hz) cell, row by row from the top."""
    t, f = _column_edges(audio), row_edges_hz(audio)
    ys, xs = np.nonzero(mask)
    return [Region(float(t[x]), float(t[x + 1]), float(f[y + 1]), float(f[y])) for y, x in zip(ys, xs)]


# -- masks on an STFT grid ----------------------------------------------------------------


def bin_rows(sample_rate: int, n_fft: int, audio: AudioConfig) -> np.ndarray:
    """Image row (from the top) of each of the ``n_fft // 2 + 1`` STFT bins; -1 above the image's Nyquist."""
    hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
    rows = np.minimum(np.floor(hz_to_row(hz, audio)).astype(np.int64), audio.image_size - 1)
    rows[hz > fmax_hz(audio) + 1e-9] = -1
    return rows


def frame_columns(sample_rate: int, hop: int, n_frames: int, audio: AudioConfig, offset_s: float = 0.0) -> np.ndarray:
    """Image column of each STFT frame (centred at ``offset_s + f * hop / sample_rate`` s); -1 outside the window."""
    t = offset_s + np.arange(n_frames, dtype=np.float64) * hop / sample_rate
    cols = np.minimum(np.floor(seconds_to_column(t, audio)).astype(np.int64), audio.image_size - 1)
    cols[(t < 0) | (t >= audio.duration)] = -1
    return cols


def stft_mask(mask: np.ndarray, audio: AudioConfig, sample_rate: int, n_fft: int, hop: int, n_frames: int,
              offset_s: float = 0.0, soft_bins: int = 0, soft_frames: int = 0) -> np.ndarray:
    """An image mask as a (n_fft // 2 + 1, n_frames) float32 mask on an STFT grid of any rate and size.

    Each bin and frame takes the value of the pixel whose cell holds its centre frequency
    and centre time (frames centred at ``offset_s + f * hop / sample_rate``); bins above the
    image's Nyquist and frames outside its window are 0. ``soft_bins`` / ``soft_frames``
    smooth the edges with a Hann kernel of that half-width (raised-cosine-shaped ramps
    about that many bins / frames wide either side; 0 keeps them hard). The result of a
    mask ``M`` and of ``1 - M`` sum to 1 wherever the grid lies inside the image.
    """
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != (audio.image_size, audio.image_size):
        raise ValueError(f"mask shape {m.shape} is not the image's ({audio.image_size}, {audio.image_size})")
    rows = bin_rows(sample_rate, n_fft, audio)
    cols = frame_columns(sample_rate, hop, n_frames, audio, offset_s)
    padded = np.zeros((audio.image_size + 1, audio.image_size + 1), dtype=np.float32)  # index -1: outside
    padded[:-1, :-1] = m
    out = padded[rows][:, cols]
    return soften(out, soft_bins, soft_frames)


def soften(grid: np.ndarray, soft_bins: int, soft_frames: int) -> np.ndarray:
    """Smooth a (bins, frames) mask with normalised Hann kernels (edges become raised-cosine ramps)."""
    from scipy.ndimage import convolve1d

    out = np.array(grid, dtype=np.float32)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    if rows.size == 0 or (soft_bins <= 0 and soft_frames <= 0):
        return out
    # only the block around the nonzero values changes (zeros outside it stay zeros)
    r0, r1 = max(int(rows[0]) - soft_bins, 0), min(int(rows[-1]) + soft_bins + 1, out.shape[0])
    c0, c1 = max(int(cols[0]) - soft_frames, 0), min(int(cols[-1]) + soft_frames + 1, out.shape[1])
    block = out[r0:r1, c0:c1]
    for axis, half in ((0, soft_bins), (1, soft_frames)):
        if half > 0 and block.shape[axis] > 1:
            kernel = np.hanning(2 * half + 3)[1:-1].astype(np.float32)  # 2 * half + 1 nonzero taps
            block = convolve1d(block, kernel / kernel.sum(), axis=axis, mode="nearest")
    out[r0:r1, c0:c1] = block
    return out


# -- the planted-box approximation (extraction's planted regions) -------------------------


def box_to_pixels(t0: float, t1: float, f0: float, f1: float, cfg: AudioConfig) -> tuple[int, int, int, int]:
    """A time-frequency box (seconds, Hz) -> pixel box (x0, y0, x1, y1), y0 at the top row.

    Time maps linearly over the kept duration; frequency through the mel scale up to
    the Nyquist frequency, with low frequencies at the bottom of the image. (An
    approximation of :func:`region_to_pixels`, within a pixel or so; extraction's planted
    regions are defined with it.)
    """
    size = cfg.image_size
    nyquist = fmax_hz(cfg)
    top = float(hz_to_mel(nyquist))
    x0 = int(np.floor(np.clip(t0 / cfg.duration, 0, 1) * size))
    x1 = int(np.ceil(np.clip(t1 / cfg.duration, 0, 1) * size))
    m0 = float(hz_to_mel(max(f0, 0.0))) / top
    m1 = float(hz_to_mel(min(f1, nyquist))) / top
    y0 = int(np.floor((1 - min(m1, 1.0)) * size))
    y1 = int(np.ceil((1 - max(m0, 0.0)) * size))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def pixel_to_seconds(x: float, cfg: AudioConfig) -> float:
    """Image column -> seconds from the clip start (linear; see :func:`column_to_seconds` for the exact map)."""
    return float(x) / cfg.image_size * cfg.duration


# -- regions known to be empty: above the source's Nyquist, padding after the song ends ----
#
# Exact for the image pipeline of whypop.audio: a mel band is empty when none of its filter weights
# falls on an FFT bin below the source's Nyquist frequency; an STFT frame is silent when
# its window starts after the last sample (silence padding only); an image row (column)
# is empty when every band (frame) its bilinear resize reads is.


@functools.lru_cache(maxsize=64)
def empty_top_rows(source_rate: int, cfg: AudioConfig) -> int:
    """How many image rows, from the top, lie wholly above the source's Nyquist frequency."""
    from whypop.audio import _bilinear, _filters

    nyquist = float(source_rate) / 2
    if nyquist >= fmax_hz(cfg):
        return 0
    fb = _filters(cfg)  # (bins, n_mels), low band first
    freqs = np.arange(fb.shape[0]) * cfg.sample_rate / cfg.n_fft
    live = fb[freqs < nyquist].any(axis=0)[::-1]  # image order: highest band first
    lead = int(np.argmax(live)) if live.any() else len(live)
    reads = _bilinear(cfg.n_mels, cfg.image_size) != 0  # (size, n_mels)
    empty = ~reads[:, lead:].any(axis=1)
    return int(np.argmin(empty)) if not empty.all() else cfg.image_size


@functools.lru_cache(maxsize=256)
def first_padding_column(duration: float, cfg: AudioConfig) -> int:
    """The first image column wholly after the song ends (``image_size`` when none is)."""
    from whypop.audio import _bilinear

    if cfg.pad != "silence" or duration >= cfg.duration:
        return cfg.image_size
    length = int(round(duration * cfg.sample_rate))
    frames = 1 + int(round(cfg.duration * cfg.sample_rate)) // cfg.hop_length
    silent = np.arange(frames) * cfg.hop_length - cfg.n_fft // 2 >= length  # the window starts after the audio
    reads = _bilinear(frames, cfg.image_size) != 0  # (size, frames)
    empty = ~(reads & ~silent[None, :]).any(axis=1)
    live = np.flatnonzero(~empty)
    return int(live[-1]) + 1 if live.size else 0


ABOVE_NYQUIST, PADDING = 1, 2  # bits of an empty-region map (as whypop.ace.flags reads them)


def empty_regions(source_rate: int | None, duration: float | None, cfg: AudioConfig) -> np.ndarray:
    """uint8 (size, size): bit 1 above the source's Nyquist, bit 2 padding after the song ends."""
    size = cfg.image_size
    out = np.zeros((size, size), dtype=np.uint8)
    if source_rate:
        out[: empty_top_rows(int(source_rate), cfg)] |= ABOVE_NYQUIST
    if duration:
        out[:, first_padding_column(float(duration), cfg) :] |= PADDING
    return out
