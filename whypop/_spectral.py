"""Compiled core of the mel spectrogram: windowed power and mel bands of an FFT batch.

Imported by :mod:`whypop.audio` on the first spectrogram (numba compiles these once
and caches them on disk). See the note on the STFT core in ``audio.py``.
"""

from __future__ import annotations

import numba
import numpy as np

# No "nnan"/"ninf": non-finite input must still come out non-finite (the caller's peak
# check turns it into a clear outcome instead of an arbitrary image).
_FAST = {"contract", "arcp", "nsz", "reassoc"}
_TILE = 8  # frames transposed at a time (8 x 1 KB rows stay in L1; see docs/measurements.md)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FAST)
def _hann_power_row(s, p, bins, odd):
    """|FFT of the Hann-windowed frame|^2 from the FFT ``s`` (re, im interleaved) of the raw frame.

    The periodic Hann window is w[n] = 1/2 - cos(2 pi n / N) / 2, so the windowed
    spectrum is X[k] / 2 - (X[k-1] + X[k+1]) / 4, with X[-1] = conj(X[1]) and, past the
    last bin, X[N/2 + 1] = conj(X[N/2 - 1]) (even N) or X[(N+1)/2] = conj(X[(N-1)/2]) (odd N).
    """
    half, quarter = np.float32(0.5), np.float32(0.25)
    re = (s[0] - s[2]) * half  # the imaginary parts cancel: X[-1] = conj(X[1])
    p[0] = re * re
    last = bins - 1
    for k in range(1, last):
        re = s[2 * k] * half - quarter * (s[2 * k - 2] + s[2 * k + 2])
        im = s[2 * k + 1] * half - quarter * (s[2 * k - 1] + s[2 * k + 3])
        p[k] = re * re + im * im
    if last > 0:
        r0, i0 = s[2 * last - 2], s[2 * last - 1]
        if odd:  # the neighbour past the last bin is conj(X[last])
            re = s[2 * last] * half - quarter * (r0 + s[2 * last])
            im = s[2 * last + 1] * half - quarter * (i0 - s[2 * last + 1])
        else:  # conj(X[last - 1]); X[N/2] of a real frame is real
            re = (s[2 * last] - r0) * half
            im = np.float32(0.0)
        p[last] = re * re + im * im


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FAST)
def hann_power_mel(spec, odd, starts, stops, offsets, weights, floor, power_t, out, bits, col0):
    """Mel bands of the Hann-windowed frames whose raw FFTs are ``spec``, at least ``floor``.

    spec: (frames, 2 * bins) float32, each row an rfft (re, im interleaved); odd: the
    FFT length is odd. Bands (image order) r = 0.. have weights[offsets[r]:...] on bins
    starts[r]:stops[r]. power_t: (bins, >= frames) float32 scratch. Writes
    out[r, col0 + f] for every band r and frame f (NaN stays NaN), and returns the
    largest as the bits of a float32 (``bits`` is ``out`` viewed as uint32: for
    values >= 0 the integer order is the float order, and any NaN or inf compares
    above every finite value, which an integer maximum finds without a NaN check).
    """
    frames, bins = spec.shape[0], spec.shape[1] // 2
    tile = np.empty((_TILE, bins), np.float32)
    for f0 in range(0, frames, _TILE):
        n = min(_TILE, frames - f0)
        for t in range(n):
            _hann_power_row(spec[f0 + t], tile[t], bins, odd)
        if n == _TILE:  # a fixed trip count: the compiler unrolls the transposition
            for k in range(bins):
                for t in range(_TILE):
                    power_t[k, f0 + t] = tile[t, k]
        else:
            for k in range(bins):
                for t in range(n):
                    power_t[k, f0 + t] = tile[t, k]
    top = np.uint32(0)
    for r in range(starts.shape[0]):
        row = out[r, col0 : col0 + frames]
        row[:] = 0.0
        base = offsets[r] - starts[r]
        for k in range(starts[r], stops[r]):
            w = weights[base + k]
            power = power_t[k]
            for f in range(frames):
                row[f] += w * power[f]
        for f in range(frames):
            if row[f] < floor:
                row[f] = floor
        row_bits = bits[r, col0 : col0 + frames]
        for f in range(frames):
            top = max(top, row_bits[f])
    return top
