"""Audio descriptors on synthetic signals with known answers, on real clips, and the helpers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whypop.errors import InputError
from whypop.features import (
    AUDIO_FEATURES,
    ECHONEST_FEATURES,
    FeatureSpec,
    compute_audio_features,
    format_value,
    percentile_scale,
    read_echonest,
)

SR = 22050
FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "audio"
DRUMS = FIXTURES / "librosa-data" / "admiralbob77_-_Choice_-_Drum-bass.ogg"
STRINGS = FIXTURES / "librosa-data" / (
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
)
SPEECH = FIXTURES / "librosa-data" / "198-209-0000.ogg"


def _seconds(duration: float, sr: int = SR) -> np.ndarray:
    """Sample times (s) of a clip of the given duration."""
    return np.arange(int(duration * sr)) / sr


def _sine(freq: float, duration: float = 5.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    """A pure tone (Hz) as float32."""
    return (amp * np.sin(2 * np.pi * freq * _seconds(duration, sr))).astype(np.float32)


def _click_track(bpm: float, duration: float = 20.0, sr: int = SR) -> np.ndarray:
    """Short decaying 1 kHz blips every beat, first one at 0.25 s."""
    y = np.zeros(int(duration * sr), dtype=np.float64)
    blip = np.sin(2 * np.pi * 1000 * _seconds(0.03, sr)) * np.exp(-_seconds(0.03, sr) / 0.005)
    for t in np.arange(0.25, duration - 0.05, 60.0 / bpm):
        start = int(round(t * sr))
        y[start : start + blip.size] += blip
    return (0.8 * y).astype(np.float32)


def _drum_loop(duration: float = 10.0, sr: int = SR) -> np.ndarray:
    """Decaying white-noise bursts every quarter second: a crude drum loop."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(duration * sr))
    hit = _seconds(0.2, sr)
    for t in np.arange(0.0, duration - 0.2, 0.25):
        start = int(t * sr)
        y[start : start + hit.size] += rng.standard_normal(hit.size) * np.exp(-hit / 0.02)
    return (0.3 * y).astype(np.float32)


def _chord(duration: float = 10.0, sr: int = SR) -> np.ndarray:
    """A sustained C major chord of harmonic tones."""
    t = _seconds(duration, sr)
    y = sum(np.sin(2 * np.pi * f * h * t) / h for f in (261.6, 329.6, 392.0) for h in (1, 2, 3))
    return (0.1 * y).astype(np.float32)


def _load(path: Path, seconds: float = 30.0) -> tuple[np.ndarray, int]:
    """The first seconds of a fixture clip, mixed to mono float32."""
    if not path.exists():
        pytest.skip(f"fixture clip not found: {path}")
    with sf.SoundFile(path) as f:
        y = f.read(frames=int(seconds * f.samplerate), dtype="float32", always_2d=True)
        return y.mean(axis=1), f.samplerate


def _assert_clean(values: dict[str, float | None]) -> None:
    """Every descriptor present, each None or a finite float."""
    assert list(values) == [spec.name for spec in AUDIO_FEATURES]
    for name, value in values.items():
        assert value is None or (isinstance(value, float) and math.isfinite(value)), (name, value)


# --- specs -------------------------------------------------------------------------------


def test_feature_specs_are_ordered_and_complete():
    assert [s.name for s in AUDIO_FEATURES] == [
        "tempo", "loudness", "brightness", "noisiness",
        "percussiveness", "bass_weight", "onset_rate", "dynamic_range",
    ]  # fmt: skip
    assert [s.name for s in ECHONEST_FEATURES] == [
        "acousticness", "danceability", "energy", "instrumentalness",
        "liveness", "speechiness", "tempo", "valence",
    ]  # fmt: skip
    for spec in AUDIO_FEATURES + ECHONEST_FEATURES:
        assert spec.label and spec.meaning and "\n" not in spec.meaning


# --- audio descriptors: known answers ----------------------------------------------------


@pytest.mark.parametrize(("bpm", "sr"), [(90, SR), (140, SR), (140, 44100)])
def test_click_track_tempo_within_2_bpm(bpm, sr):
    values = compute_audio_features(_click_track(bpm, sr=sr), sr)
    assert values["tempo"] == pytest.approx(bpm, abs=2.0)
    assert values["onset_rate"] == pytest.approx(bpm / 60.0, rel=0.1)
    _assert_clean(values)


def test_sine_loudness_and_brightness():
    values = compute_audio_features(_sine(2000.0, amp=1.0), SR)
    assert values["loudness"] == pytest.approx(-3.01, abs=0.05)  # full-scale sine: RMS = 1/sqrt(2)
    assert values["brightness"] == pytest.approx(2000.0, rel=0.05)


def test_bass_weight_low_sine_high_and_2khz_sine_low():
    assert compute_audio_features(_sine(80.0), SR)["bass_weight"] > 0.9
    assert compute_audio_features(_sine(2000.0), SR)["bass_weight"] < 0.05


def test_white_noise_is_noisier_than_a_sine():
    noise = (0.1 * np.random.default_rng(1).standard_normal(5 * SR)).astype(np.float32)
    noisy = compute_audio_features(noise, SR)["noisiness"]
    tonal = compute_audio_features(_sine(440.0), SR)["noisiness"]
    assert noisy > 0.3 > 0.05 > tonal


def test_drum_loop_is_more_percussive_than_a_chord():
    drums = compute_audio_features(_drum_loop(), SR)["percussiveness"]
    chord = compute_audio_features(_chord(), SR)["percussiveness"]
    assert drums > 0.5 > 0.2 > chord


def test_dynamic_range_of_a_20_db_step():
    noise = np.random.default_rng(2).standard_normal(10 * SR)
    y = (noise * np.where(np.arange(noise.size) < 5 * SR, 0.1, 0.01)).astype(np.float32)
    assert compute_audio_features(y, SR)["dynamic_range"] == pytest.approx(20.0, abs=1.5)


# --- audio descriptors: what cannot be measured ------------------------------------------


@pytest.mark.parametrize("duration", [0.0, 0.3, 30.0])
def test_silence_gives_none_everywhere(duration):
    values = compute_audio_features(np.zeros(int(duration * SR), dtype=np.float32), SR)
    _assert_clean(values)
    assert all(value is None for value in values.values())


@pytest.mark.parametrize("duration", [0.01, 0.3])
def test_short_audio_gives_none_or_finite(duration):
    noise = (0.1 * np.random.default_rng(3).standard_normal(int(duration * SR))).astype(np.float32)
    values = compute_audio_features(noise, SR)
    _assert_clean(values)
    assert values["loudness"] == pytest.approx(-20.0, abs=1.0)
    assert values["tempo"] is None and values["onset_rate"] is None
    if duration >= 0.3:
        assert values["brightness"] is not None and values["noisiness"] is not None


def test_near_silence_has_a_level_and_no_nan():
    y = (1e-6 * np.random.default_rng(4).standard_normal(5 * SR)).astype(np.float32)
    values = compute_audio_features(y, SR)
    _assert_clean(values)
    assert values["loudness"] == pytest.approx(-120.0, abs=1.0)
    assert values["brightness"] is None  # below the -80 dBFS floor


def test_non_finite_samples_are_treated_as_silence():
    y = _sine(440.0)
    y[::1000] = np.nan
    _assert_clean(compute_audio_features(y, SR))


def test_rejects_multichannel_audio():
    with pytest.raises(InputError, match="mono"):
        compute_audio_features(np.zeros((2, SR), dtype=np.float32), SR)


# --- real clips ----------------------------------------------------------------------------


def test_drum_and_bass_clip_is_more_percussive_than_strings():
    drums = compute_audio_features(*_load(DRUMS))
    strings = compute_audio_features(*_load(STRINGS))
    _assert_clean(drums)
    _assert_clean(strings)
    assert drums["percussiveness"] > strings["percussiveness"] + 0.1


def test_speech_clip_gives_finite_values():
    values = compute_audio_features(*_load(SPEECH))
    _assert_clean(values)
    assert all(value is not None for value in values.values())


# --- percentile_scale and format_value -----------------------------------------------------


def test_percentile_scale_ranks_ties_and_none():
    scaled = percentile_scale({"a": 3.0, "b": 1.0, "c": None, "d": 2.0, "e": 2.0, "f": 5.0})
    assert list(scaled) == ["a", "b", "c", "d", "e", "f"]
    assert scaled == {"a": 0.75, "b": 0.0, "c": None, "d": 0.375, "e": 0.375, "f": 1.0}


def test_percentile_scale_edge_cases():
    assert percentile_scale({}) == {}
    assert percentile_scale({"x": None}) == {"x": None}
    assert percentile_scale({"x": -4.0, "y": None}) == {"x": 0.5, "y": None}
    assert percentile_scale({"x": 1.0, "y": 1.0}) == {"x": 0.5, "y": 0.5}
    with_nan = percentile_scale({"x": float("nan"), "y": 1.0, "z": 2.0})
    assert with_nan == {"x": None, "y": 0.0, "z": 1.0}


def test_format_value():
    specs = {spec.name: spec for spec in AUDIO_FEATURES}
    assert format_value(specs["tempo"], 92.34) == "92.3 BPM"
    assert format_value(specs["loudness"], -14.24) == "-14.2 dB"
    assert format_value(specs["brightness"], 1523.4) == "1523 Hz"
    assert format_value(specs["noisiness"], 0.4211) == "0.42"
    assert format_value(specs["onset_rate"], 3.456) == "3.46/s"
    assert format_value(specs["loudness"], None) == "not measurable"
    assert format_value(FeatureSpec("x", "X", "dB", "m"), -0.04) == "0.0 dB"


# --- read_echonest -------------------------------------------------------------------------

_ECHONEST_NAMES = [spec.name for spec in ECHONEST_FEATURES]


def _write_echonest(path: Path, names: list[str], rows: list[list[str]]) -> None:
    """A CSV in FMA's layout: 3 header rows, then a 'track_id' row, audio features first."""
    groups = [("audio_features", n) for n in names] + [
        ("metadata", "album_name"), ("metadata", "artist_name"),
        ("social_features", "artist_discovery"), ("temporal_features", "000"),
    ]  # fmt: skip
    lines = [
        "," + ",".join("echonest" for _ in groups),
        "," + ",".join(group for group, _ in groups),
        "," + ",".join(name for _, name in groups),
        "track_id" + "," * len(groups),
    ] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_read_echonest(tmp_path):
    path = tmp_path / "echonest.csv"
    rows = [
        ["2", "0.41", "0.67", "0.63", "0.01", "0.17", "0.16", "165.92", "0.57", "A", "B", "0.3", "1"],
        ["3", "0.37", "0.53", "0.82", "0.02", "0.10", "0.05", "126.95", "0.26", "A", "B", "0.3", "2"],
        ["5", "", "", "", "", "", "", "", "", "Other", "B, with comma", "0.1", "0.3"],
        ["10", "0.95", "0.16", "0.62", "", "0.09", "0.03", "90.0", "0.1", "x", "y", "", ""],
    ]
    rows[2][10] = '"B, with comma"'
    _write_echonest(path, _ECHONEST_NAMES, rows)

    table = read_echonest(path)

    assert list(table.columns) == _ECHONEST_NAMES
    assert table.index.tolist() == [2, 3, 10]  # track 5 has all eight missing
    assert table.index.dtype.kind == "i"
    assert all(dtype.kind == "f" for dtype in table.dtypes)
    assert table.loc[3, "tempo"] == pytest.approx(126.95)
    assert math.isnan(table.loc[10, "instrumentalness"])


def test_read_echonest_missing_columns_raise(tmp_path):
    path = tmp_path / "echonest.csv"
    kept = [n for n in _ECHONEST_NAMES if n not in ("valence", "liveness")]
    _write_echonest(path, kept, [["2"] + ["0.5"] * len(kept) + ["a", "b", "0.1", "0.2"]])
    with pytest.raises(InputError, match="liveness, valence"):
        read_echonest(path)


def test_read_echonest_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_echonest(tmp_path / "nope.csv")
