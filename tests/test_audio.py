"""Audio to spectrogram: formats, channels, rates, bad files, orientation, exact mel power."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from whypop import audio, decoding
from whypop.config import AudioConfig
from whypop.errors import InputError

CFG = AudioConfig()
SIZE = CFG.image_size


def _tone(sr: int, seconds: float, hz: float = 440.0, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(int(hz))
    mono = amp * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(t.size)
    if channels == 1:
        return mono.astype(np.float32)
    # different content per channel: the tone moved by a few samples, plus a little noise
    return np.stack([np.roll(mono, 7 * c) for c in range(channels)], axis=1).astype(np.float32)


def _check_image(img: np.ndarray) -> None:
    assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8
    assert img.max() > 100, "a loud clip gives a bright spectrogram"


# -- formats, channels and rates ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt, subtype, sr, channels",
    [
        ("u8.wav", "WAV", "PCM_U8", 22050, 1),
        ("s16.wav", "WAV", "PCM_16", 44100, 1),
        ("s24.wav", "WAV", "PCM_24", 44100, 2),
        ("f32.wav", "WAV", "FLOAT", 44100, 1),
        ("f64.wav", "WAV", "DOUBLE", 48000, 1),
        ("stereo.wav", "WAV", "PCM_16", 44100, 2),
        ("six.wav", "WAV", "PCM_16", 48000, 6),
        ("low.wav", "WAV", "PCM_16", 8000, 1),
        ("high.wav", "WAV", "PCM_24", 96000, 2),
        ("clip.flac", "FLAC", "PCM_16", 44100, 2),
        ("clip.aiff", "AIFF", "PCM_16", 22050, 1),
        ("clip.au", "AU", "PCM_16", 11025, 1),
    ],
)
def test_formats_channels_and_rates(tmp_path, name, fmt, subtype, sr, channels):
    path = tmp_path / name
    sf.write(path, _tone(sr, 3.0, channels=channels), sr, format=fmt, subtype=subtype)
    img, decoded = audio.spectrogram_image(path, CFG)
    _check_image(img)
    assert decoded.sample_rate == sr and decoded.channels == channels
    assert decoded.samples.ndim == 1 and decoded.samples.dtype == np.float32
    assert decoded.duration == pytest.approx(3.0, abs=1e-3)


def test_channels_are_averaged(tmp_path):
    x = _tone(44100, 1.0)
    path = tmp_path / "opposite.wav"
    sf.write(path, np.stack([x, -x, 0.5 * x, 0.5 * x], axis=1), 44100, subtype="FLOAT")
    decoded = decoding.decode(path)
    np.testing.assert_allclose(decoded.samples, 0.25 * x, atol=1e-6)


def test_stereo_downmix_is_the_exact_mean():
    data = _tone(44100, 2.0, channels=2)
    data[::7] *= 1e-3  # a wide range of magnitudes
    expected = (data[:, 0] + data[:, 1]) * np.float32(0.5)
    assert np.array_equal(decoding.downmix(data), expected)


def test_real_ogg_fixture_mono_22k(audio_fixtures):
    img, decoded = audio.spectrogram_image(audio_fixtures / "openmic" / "000046_3840.ogg", CFG)
    _check_image(img)
    assert (decoded.sample_rate, decoded.channels) == (22050, 1)


def test_real_mp3_fixture_stereo_44k(audio_fixtures):
    img, decoded = audio.spectrogram_image(audio_fixtures / "fma_small" / "000" / "000010.mp3", CFG)
    _check_image(img)
    assert (decoded.sample_rate, decoded.channels) == (44100, 2)
    assert decoded.duration == pytest.approx(2.0, abs=0.1)


def test_longer_than_30s_is_trimmed_to_the_first_30s(audio_fixtures, tmp_path):
    long_clip = audio_fixtures / "librosa-data" / "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"
    assert sf.info(str(long_clip)).duration > 100
    decoded = decoding.decode(long_clip, max_seconds=30)
    assert decoded.samples.shape[0] == 30 * decoded.sample_rate and decoded.duration == 30.0
    # what comes after 30 s does not change the image
    sr = 22050
    head = _tone(sr, 30.0)
    sf.write(tmp_path / "head.wav", head, sr, subtype="FLOAT")
    tail = np.random.default_rng(1).uniform(-1, 1, sr * 10).astype(np.float32)
    sf.write(tmp_path / "long.wav", np.concatenate([head, tail]), sr, subtype="FLOAT")
    img_long, dec_long = audio.spectrogram_image(tmp_path / "long.wav", CFG)
    img_head, _ = audio.spectrogram_image(tmp_path / "head.wav", CFG)
    assert dec_long.duration == 30.0
    assert np.array_equal(img_long, img_head)


# -- quiet, short and bad input -------------------------------------------------------------


@pytest.mark.parametrize("sr", [44100, 22050, 8000])
def test_silence_gives_a_finite_black_image(tmp_path, sr):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(sr * 2, np.float32), sr)
    img, _ = audio.spectrogram_image(path, CFG)
    assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8 and (img == 0).all()
    unit = audio.power_to_unit(audio.mel_power(np.zeros(44100, np.float32), CFG), CFG.top_db)
    assert np.isfinite(unit).all() and (unit == 0).all()


def test_non_finite_samples_do_not_poison_the_image(tmp_path):
    x = _tone(44100, 2.0)
    x[1000:1010] = np.nan
    x[5000] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    img, decoded = audio.spectrogram_image(path, CFG)
    assert np.isfinite(decoded.samples).all()
    _check_image(img)


def test_float_samples_too_large_for_their_power_give_the_normal_image(tmp_path):
    """A float file at 1e30 (its power overflows float32) is the same picture as at 0.3."""
    x = _tone(44100, 2.0)
    sf.write(tmp_path / "normal.wav", x, 44100, subtype="FLOAT")
    sf.write(tmp_path / "huge.wav", x * np.float32(1e30), 44100, subtype="FLOAT")
    normal, _ = audio.spectrogram_image(tmp_path / "normal.wav", CFG)
    huge, decoded = audio.spectrogram_image(tmp_path / "huge.wav", CFG)
    assert np.isfinite(decoded.samples).all() and np.abs(decoded.samples).max() <= 1.0
    _check_image(huge)
    assert np.abs(huge.astype(int) - normal).max() <= 1


def test_a_short_clip_is_padded_with_silence(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _tone(44100, 0.3), 44100)
    img, decoded = audio.spectrogram_image(path, CFG)
    _check_image(img)
    assert decoded.duration == pytest.approx(0.3, abs=1e-3)
    content_cols = int(np.ceil(0.3 / CFG.duration * SIZE)) + 2  # plus the resize's reach
    assert img[:, :content_cols].max() > 100
    assert (img[:, content_cols + 1 :] == 0).all(), "the padding is silence (black)"


def _assert_one_line_input_error(path, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        audio.spectrogram_image(path, CFG)
    text = str(err.value)
    assert "\n" not in text and 0 < len(text) < 300


@pytest.mark.parametrize("name", ["corrupt.wav", "corrupt.ogg", "corrupt.flac", "corrupt.mp3"])
def test_random_bytes_are_an_input_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_one_line_input_error(path, "cannot decode audio")


def test_empty_file_is_an_input_error(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    _assert_one_line_input_error(path, "empty file")


def test_text_file_named_mp3_is_an_input_error(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("these are my liner notes, not an mp3\n" * 20)
    _assert_one_line_input_error(path, "cannot decode audio")


def test_header_without_samples_is_an_input_error(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 44100)
    _assert_one_line_input_error(path, "no audio samples")


def test_missing_file_is_an_input_error(tmp_path):
    _assert_one_line_input_error(tmp_path / "gone.wav", "missing")


# -- orientation and coordinates ------------------------------------------------------------


def _row_profile(img: np.ndarray) -> np.ndarray:
    return img[:, 10:-10].astype(float).mean(axis=1)


def test_low_frequencies_at_the_bottom_high_at_the_top():
    low = audio.spectrogram_from_samples(_tone(44100, 30.0, hz=80.0, amp=0.5), 44100, CFG)
    high = audio.spectrogram_from_samples(_tone(44100, 30.0, hz=12000.0, amp=0.5), 44100, CFG)
    assert _row_profile(low).argmax() > 0.8 * SIZE
    assert _row_profile(high).argmax() < 0.3 * SIZE


# -- the numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [
    AudioConfig(),
    AudioConfig(sample_rate=22050, hop_length=256, image_size=128),
    AudioConfig(n_fft=1023, hop_length=500, n_mels=64),  # odd: the window's last tap folds differently
])
@pytest.mark.parametrize("seconds", [13.0, 3.0, 0.01])  # 13 s: more frames than one FFT batch
def test_mel_power_equals_torchaudio(preset, seconds):
    import torch
    import torchaudio

    x = np.random.default_rng(0).standard_normal(int(preset.sample_rate * seconds)).astype(np.float32) * 0.1
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=preset.sample_rate, n_fft=preset.n_fft, hop_length=preset.hop_length,
        n_mels=preset.n_mels, power=2.0, mel_scale="slaney", norm="slaney",
        pad_mode="reflect" if x.size > preset.n_fft // 2 else "constant",
    )(torch.from_numpy(x)).numpy()
    ours = audio.mel_power(x, preset)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.max()))


def _padded_by_index(x, length, n_total, half, start, stop):
    """The reference for audio._padded: numpy "reflect" by index arrays."""
    idx = np.arange(start, stop) - half
    if n_total > half:
        idx = np.where(idx < 0, -idx, idx)
        idx = np.where(idx >= n_total, 2 * (n_total - 1) - idx, idx)
    out = np.zeros(stop - start, dtype=np.float32)
    ok = (idx >= 0) & (idx < length)
    out[ok] = x[idx[ok]]
    return out


def test_padded_edges_equal_reflect_by_index():
    """Head and tail frames: reflected ends, silence past the audio, short and long signals."""
    rng = np.random.default_rng(3)
    for _ in range(3000):
        half, n_total = int(rng.integers(1, 600)), int(rng.integers(1, 3000))
        length = int(rng.integers(1, n_total + 1))
        x = rng.standard_normal(length + int(rng.integers(0, 50))).astype(np.float32)
        start = int(rng.integers(0, n_total + 2 * half))
        stop = int(rng.integers(start + 1, n_total + 2 * half + 2))
        args = (x, length, n_total, half, start, stop)
        np.testing.assert_array_equal(audio._padded(*args), _padded_by_index(*args), err_msg=str(args[1:]))


def test_padding_shortcut_equals_padding_first():
    """Frames wholly in the silent padding are skipped; the result is the same."""
    x = _tone(44100, 2.0)
    fast = audio.spectrogram_from_samples(x, 44100, CFG)
    padded = decoding.fix_length(x, int(CFG.duration * CFG.sample_rate))
    slow = audio.to_image(audio.power_to_unit(audio.mel_power(padded, CFG), CFG.top_db), SIZE)
    assert np.abs(fast.astype(int) - slow).max() <= 1


@pytest.mark.parametrize("shape", [(128, 2584), (128, 174), (64, 300), (300, 50), (224, 224)])
def test_resize_equals_pillow_bilinear(shape):
    """The matrix resize reproduces Pillow's BILINEAR resize of a float image."""
    from PIL import Image

    values = np.random.default_rng(1).random(shape, dtype=np.float32)
    h, w = shape
    ref = np.asarray(Image.frombuffer("F", (w, h), values, "raw", "F", 0, 1).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(audio._resize(values.copy(), SIZE), ref, rtol=0, atol=1e-6)


def test_resize_of_a_constant_tail_equals_filling_it():
    values = np.random.default_rng(2).random((128, 2584), dtype=np.float32)
    filled = values.copy()
    filled[:, 300:] = -3.0
    np.testing.assert_allclose(audio._resize(values, SIZE, used=300, fill=-3.0), audio._resize(filled, SIZE), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seconds", [30.0, 2.0])
def test_fast_image_equals_the_steps_in_sequence(seconds):
    """dB after a floor and the affine map after the resize: the image of power_to_unit then to_image."""
    x = _tone(44100, seconds, hz=3000.0)
    x[: x.size // 3] *= 1e-3  # a quiet start: much of it below the -80 dB floor
    fast = audio.spectrogram_from_samples(x, 44100, CFG)
    padded = decoding.fix_length(x, int(CFG.duration * CFG.sample_rate))
    slow = audio.to_image(audio.power_to_unit(audio.mel_power(padded, CFG), CFG.top_db), SIZE)
    diff = np.abs(fast.astype(int) - slow)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_22khz_sources_match_resampling_first(audio_fixtures):
    """22.05 kHz clips skip the upsampling; the image stays within a few grey levels."""
    decoded = decoding.decode(audio_fixtures / "librosa-data" / "Kevin_MacLeod_-_Vibe_Ace.ogg", max_seconds=30)
    assert decoded.sample_rate == 22050
    native = audio.spectrogram_from_samples(decoded.samples, 22050, CFG)
    up = decoding.resample(decoded.samples, 22050, 44100)
    reference = audio.spectrogram_from_samples(up, 44100, CFG)
    diff = np.abs(native.astype(int) - reference)
    assert diff.max() <= 6 and diff.mean() < 0.05


def test_png_round_trip(tmp_path):
    from PIL import Image

    img = audio.spectrogram_from_samples(_tone(44100, 2.0), 44100, CFG)
    path = tmp_path / "x.png"
    path.write_bytes(audio.encode_png(img))
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (SIZE, SIZE)
        assert np.array_equal(np.asarray(im), img)
