"""Pixels <-> seconds and Hz: checked against images the real spectrogram code builds."""

from __future__ import annotations

import numpy as np
import pytest

from whypop import audio, geometry
from whypop.config import AudioConfig

CFG = AudioConfig()
SIZE = CFG.image_size


def _row_profile(img: np.ndarray) -> np.ndarray:
    return img[:, 10:-10].astype(float).mean(axis=1)


def _tone_at(sr: int, hz: float, t0: float, t1: float, seconds: float = 30.0) -> np.ndarray:
    x = np.zeros(int(sr * seconds), np.float32)
    seg = slice(int(t0 * sr), int(t1 * sr))
    x[seg] = 0.5 * np.sin(2 * np.pi * hz * np.arange(seg.stop - seg.start) / sr)
    return x


# -- the planted-box approximation (moved from audio.py, unchanged) --------------------------


@pytest.mark.parametrize("hz", [150.0, 700.0, 2500.0, 9000.0])
def test_box_to_pixels_maps_a_band(hz):
    sr = 44100
    t0, t1 = 10.0, 14.0
    img = audio.spectrogram_from_samples(_tone_at(sr, hz, t0, t1), sr, CFG)
    x0, y0, x1, y1 = geometry.box_to_pixels(t0, t1, hz / 1.15, hz * 1.15, CFG)
    assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
    rows = _row_profile(img)
    band = SIZE / CFG.n_mels  # pixels per mel band: a tone lights the one or two bands around it
    assert y0 - band <= rows.argmax() < y1 + band, "the tone's brightest row lies in the box's rows"
    assert (y1 - y0) < 0.25 * SIZE
    cols = np.flatnonzero(img.max(axis=0) > 128)
    assert x0 - 1 <= cols.min() and cols.max() <= x1, "the tone's columns lie in the box's columns"
    assert geometry.pixel_to_seconds(x0, CFG) == pytest.approx(t0, abs=CFG.duration / SIZE)


def test_box_to_pixels_covers_the_whole_range():
    assert geometry.box_to_pixels(0, CFG.duration, 0, CFG.sample_rate / 2, CFG) == (0, 0, SIZE, SIZE)


# -- the exact map -----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG, AudioConfig(sample_rate=22050, hop_length=256, image_size=128, duration=10.0)])
def test_edges_tile_the_window(cfg):
    t, f = geometry.column_edges_s(cfg), geometry.row_edges_hz(cfg)
    assert t.shape == f.shape == (cfg.image_size + 1,)
    assert t[0] == 0 and t[-1] == cfg.duration and np.all(np.diff(t) > 0)
    assert f[0] == pytest.approx(cfg.sample_rate / 2) and f[-1] == 0 and np.all(np.diff(f) < 0)
    # columns are within half a hop of the linear map; the last band's centre is one mel step below Nyquist
    x = np.arange(1, cfg.image_size)
    assert np.abs(t[1:-1] - x * cfg.duration / cfg.image_size).max() <= 0.5 * cfg.hop_length / cfg.sample_rate + 1e-9


@pytest.mark.parametrize("hz", [60.0, 150.0, 700.0, 2500.0, 9000.0, 16000.0])
def test_a_tone_lights_the_row_its_frequency_maps_to(hz):
    img = audio.spectrogram_from_samples(_tone_at(44100, hz, 0.0, 30.0), 44100, CFG)
    brightest = int(_row_profile(img).argmax())
    assert abs(brightest - geometry.hz_to_row(hz, CFG)) <= 1.5, (brightest, geometry.hz_to_row(hz, CFG))
    lo, hi = geometry.row_edges_hz(CFG)[brightest + 1], geometry.row_edges_hz(CFG)[brightest]
    band = (geometry.hz_to_mel(CFG.sample_rate / 2) / (CFG.n_mels + 1))  # one band's mel step
    assert geometry.hz_to_mel(lo) - band <= geometry.hz_to_mel(hz) <= geometry.hz_to_mel(hi) + band


@pytest.mark.parametrize("t", [0.7, 9.31, 22.05])
def test_a_click_lights_the_column_its_time_maps_to(t):
    sr = 44100
    x = np.zeros(sr * 30, np.float32)
    x[int(t * sr) : int(t * sr) + 64] = 0.9
    img = audio.spectrogram_from_samples(x, sr, CFG)
    brightest = int(img[: SIZE // 2].astype(float).mean(axis=0).argmax())
    assert abs(brightest + 0.5 - geometry.seconds_to_column(t, CFG)) <= 1.0


def test_continuous_maps_invert_each_other():
    x = np.linspace(0, SIZE, 997)
    assert np.allclose(geometry.seconds_to_column(geometry.column_to_seconds(x, CFG), CFG), x, atol=1e-9)
    assert np.allclose(geometry.hz_to_row(geometry.row_to_hz(x, CFG), CFG), x, atol=1e-6)
    hz = np.linspace(1, 22000, 101)
    assert np.allclose(geometry.mel_to_hz(geometry.hz_to_mel(hz)), hz)


def test_pixel_boxes_round_trip_through_regions():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x0, x1 = sorted(rng.choice(SIZE + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(SIZE + 1, 2, replace=False))
        box = (int(x0), int(y0), int(x1), int(y1))
        region = geometry.pixels_to_region(box, CFG)
        assert region.start_s < region.end_s and region.low_hz < region.high_hz
        assert geometry.region_to_pixels(region, CFG) == box
        assert geometry.Region.from_dict(region.to_dict()) == region
    assert geometry.pixels_to_region((0, 0, SIZE, SIZE), CFG) == geometry.Region(0.0, CFG.duration, 0.0, CFG.sample_rate / 2)


def test_mask_cells_and_bounding_region():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[100:103, 50:52] = True
    cells = geometry.mask_cells(mask, CFG)
    assert len(cells) == 6
    region = geometry.mask_region(mask, CFG)
    assert region == geometry.pixels_to_region((50, 100, 52, 103), CFG)
    assert min(c.start_s for c in cells) == region.start_s and max(c.high_hz for c in cells) == region.high_hz
    assert geometry.mask_region(np.zeros((SIZE, SIZE), bool), CFG) is None


@pytest.mark.parametrize("sr, n_fft, hop", [(44100, 2048, 512), (22050, 512, 128), (48000, 1024, 256)])
def test_stft_mask_follows_the_box_and_complements(sr, n_fft, hop):
    box = (40, 60, 80, 120)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    n_frames = 1 + int(CFG.duration * sr) // hop
    m = geometry.stft_mask(mask, CFG, sr, n_fft, hop, n_frames)
    assert m.shape == (n_fft // 2 + 1, n_frames)
    region = geometry.pixels_to_region(box, CFG)
    hz = np.arange(n_fft // 2 + 1) * sr / n_fft
    t = np.arange(n_frames) * hop / sr
    inside = (hz[:, None] >= region.low_hz) & (hz[:, None] < region.high_hz) & (t >= region.start_s) & (t < region.end_s)
    assert np.array_equal(m > 0.5, inside)
    rest = geometry.stft_mask(~mask, CFG, sr, n_fft, hop, n_frames)
    in_image = (hz[:, None] <= CFG.sample_rate / 2) & (t < CFG.duration)
    assert np.allclose((m + rest)[in_image & np.ones_like(inside)], 1.0)
    soft = geometry.stft_mask(mask, CFG, sr, n_fft, hop, n_frames, soft_bins=3, soft_frames=4)
    soft_rest = geometry.stft_mask(~mask, CFG, sr, n_fft, hop, n_frames, soft_bins=3, soft_frames=4)
    assert soft.min() >= 0 and soft.max() <= 1 + 1e-6
    assert np.allclose((soft + soft_rest)[in_image & np.ones_like(inside)][:100], 1.0, atol=1e-5)
    assert 0 < soft[inside].mean() < 1 and soft[inside].mean() > 0.8
