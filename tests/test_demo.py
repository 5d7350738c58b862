"""The demo generator: files, determinism, planted boxes, separability, the artefact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whypop.demo import GENRE_SIGNATURES, DemoClip, generate_demo, hz_to_mel_fraction

SR = 22050
SECONDS = 4.0
N_FFT, HOP = 1024, 256  # the demo's spectrogram settings
GENRES = 4
CLIPS = 24
ARTEFACT_GENRE = 3
SHARE = 0.7
MARGIN = 0.05  # seconds kept clear around a signature when measuring the background


def stft_power(samples: np.ndarray) -> np.ndarray:
    """(frames, bins) power, Hann window, centred frames (frame i at i * HOP / SR s)."""
    padded = np.pad(samples, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    return np.abs(np.fft.rfft(frames * window, axis=1)) ** 2


FREQS = np.fft.rfftfreq(N_FFT, 1 / SR)


def frame_times(power: np.ndarray) -> np.ndarray:
    return np.arange(power.shape[0]) * HOP / SR


def box_power(power: np.ndarray, t0: float, t1: float, f0: float, f1: float) -> float:
    t = frame_times(power)
    return float(power[np.ix_((t >= t0) & (t <= t1), (FREQS >= f0) & (FREQS <= f1))].mean())


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[DemoClip], list[tuple[int, int]]]:
    out = tmp_path_factory.mktemp("demo")
    calls: list[tuple[int, int]] = []
    clips = generate_demo(
        out, genres=GENRES, clips_per_genre=CLIPS, clip_seconds=SECONDS, sample_rate=SR, seed=3,
        artefact_genre=ARTEFACT_GENRE, artefact_share=SHARE, progress=lambda e: calls.append((e.done, e.total)),
    )
    return out, clips, calls


@pytest.fixture(scope="module")
def powers(demo) -> dict[str, np.ndarray]:
    _, clips, _ = demo
    return {c.track_id: stft_power(sf.read(c.path, dtype="float64")[0]) for c in clips}


def by_genre(clips: list[DemoClip]) -> dict[str, list[DemoClip]]:
    out: dict[str, list[DemoClip]] = {}
    for c in clips:
        out.setdefault(c.genre, []).append(c)
    return out


def test_files_layout_and_format(demo):
    out, clips, calls = demo
    assert len(clips) == GENRES * CLIPS
    assert [c.genre for c in clips[::CLIPS]] == [s.capitalize() for s in GENRE_SIGNATURES[:GENRES]]
    assert len({c.track_id for c in clips}) == len(clips)
    for c in clips:
        assert c.path == out / c.genre / f"{c.track_id}.wav"
        assert c.track_id.replace("-", "").isalnum()
        info = sf.info(str(c.path))
        assert (info.channels, info.samplerate, info.subtype, info.frames) == (1, SR, "PCM_16", int(SECONDS * SR))
    on_disk = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted(c.path.relative_to(out) for c in clips)  # no temporary files left
    assert calls == [(i, len(clips)) for i in range(1, len(clips) + 1)]


def test_levels_never_clip(demo):
    _, clips, _ = demo
    peaks = [np.abs(sf.read(c.path, dtype="int16")[0]).max() for c in clips]
    assert max(peaks) <= round(10 ** (-1 / 20) * 32767)  # at most -1 dBFS
    assert min(peaks) > 0.05 * 32767  # and not near silence


def test_splits_are_stratified_per_genre(demo):
    _, clips, _ = demo
    for genre, members in by_genre(clips).items():
        counts = [sum(c.split == s for c in members) for s in ("training", "validation", "test")]
        assert counts == [14, 5, 5], genre  # 24 x (0.6, 0.2, 0.2), largest remainder


def test_one_signature_box_inside_clip_and_band(demo):
    _, clips, _ = demo
    bands = {}
    for genre, members in by_genre(clips).items():
        areas = []
        for c in members:
            sig = [b for b in c.boxes if b.kind == "signature"]
            assert len(sig) == 1
            b = sig[0]
            assert b.label == genre.lower()
            assert 0 <= b.t0 < b.t1 <= SECONDS
            assert 0.25 * SECONDS - 1e-3 <= b.t1 - b.t0 <= 0.5 * SECONDS + 1e-3
            assert 0 < b.f0 < b.f1 <= SR / 2
            bands.setdefault(genre, set()).add((b.f0, b.f1))
            height = hz_to_mel_fraction(b.f1, SR) - hz_to_mel_fraction(b.f0, SR)
            areas.append((b.t1 - b.t0) / SECONDS * height)
        assert 0.04 <= min(areas) and max(areas) <= 0.2, genre  # share of the mel image
        assert 0.05 <= np.mean(areas) <= 0.15, genre
    assert all(len(v) == 1 for v in bands.values())  # one band per genre
    spans = sorted(next(iter(v)) for v in bands.values())
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # default genres: disjoint bands


def test_signatures_never_raise_the_spectrogram_peak(demo):
    """Images are scaled relative to the clip's peak: a signature must not set that peak.

    Otherwise the whole image of its genre darkens (a kick added 10-17 dB) and a model can
    tell the genre from the brightness alone. The peak is the hum's, in every clip. The
    mel analysis is the demo config's.
    """
    from whypop import demo as D
    from whypop.audio import mel_power
    from whypop.config import AudioConfig

    _, clips, _ = demo
    cfg = AudioConfig(sample_rate=SR, n_fft=1024, hop_length=256, n_mels=128)
    for c in clips[:: max(1, len(clips) // 24)]:
        genre, index = D.GENRE_SIGNATURES.index(c.signature.label), int(c.track_id.rsplit("-", 1)[1])
        bg_rng = np.random.default_rng(np.random.SeedSequence([3, genre, index]).spawn(3)[0])
        background = D._background(bg_rng, int(SECONDS * SR), SR) * 10 ** (D._BACKGROUND_RMS_DBFS / 20)
        background += D._hum(background, SR)
        clip = sf.read(c.path, dtype="float32")[0]
        rise_db = 10 * np.log10(mel_power(clip, cfg).max() / mel_power(background, cfg).max())
        assert rise_db < 0.3, (c.track_id, rise_db)


HUM_CLEAR = 60.0  # Hz: below this, the STFT leakage of the demo's 20 Hz hum fills every clip


def test_signature_energy_separates_genres(demo, powers):
    """In-box energy of a genre's clips is far above the same region in other genres' clips."""
    _, clips, _ = demo
    for genre, members in by_genre(clips).items():
        f0, f1 = members[0].signature.f0, members[0].signature.f1
        band = (FREQS >= max(f0, HUM_CLEAR)) & (FREQS <= f1)
        # per clip, the band's mean power in every frame: boxes of this genre only differ in time
        profile = {c.track_id: powers[c.track_id][:, band].mean(axis=1) for c in clips}
        others = [c.track_id for c in clips if c.genre != genre]
        own, cross, outside = [], [], []
        for c in members:
            b = c.signature
            t = frame_times(powers[c.track_id])
            inside, away = (t >= b.t0) & (t <= b.t1), (t < b.t0 - MARGIN) | (t > b.t1 + MARGIN)
            own.append(profile[c.track_id][inside].mean())
            outside.append(profile[c.track_id][away].mean())
            cross.append(np.mean([profile[o][inside].mean() for o in others]))
        own, cross, outside = map(np.asarray, (own, cross, outside))
        assert own.mean() / cross.mean() > 5, genre
        assert own.mean() / outside.mean() > 5, genre  # in-box vs same band, rest of the clip
        assert np.all(own > 1.5 * outside), genre  # every clip: above its own background


def test_background_does_not_depend_on_genre(demo, powers):
    """Mean energy away from the signature is the same for every genre (within 20%)."""
    _, clips, _ = demo
    means = {}
    for genre, members in by_genre(clips).items():
        energy = []
        for c in members:
            art = c.artefact
            if art is not None and art.f0 > 0:
                continue  # a zeroed frequency band lowers the energy on purpose
            p, t = powers[c.track_id], frame_times(powers[c.track_id])
            keep = (t < c.signature.t0 - MARGIN) | (t > c.signature.t1 + MARGIN)
            if art is not None:
                keep &= (t < art.t0 - MARGIN) | (t > art.t1 + MARGIN)
            energy.append(float(p[keep].mean()))
        assert len(energy) >= 10, genre
        means[genre] = np.mean(energy)
    assert max(means.values()) / min(means.values()) < 1.2, means


def test_artefact_only_in_its_genre_at_the_share(demo):
    _, clips, _ = demo
    artefact_genre = GENRE_SIGNATURES[ARTEFACT_GENRE].capitalize()
    for genre, members in by_genre(clips).items():
        arts = [b for c in members for b in c.boxes if b.kind == "artefact"]
        if genre != artefact_genre:
            assert arts == [], genre
            continue
        assert all(sum(b.kind == "artefact" for b in c.boxes) <= 1 for c in members)
        assert abs(len(arts) / len(members) - SHARE) <= 0.1
        for split in ("training", "validation", "test"):
            assert any(c.artefact is not None for c in members if c.split == split)
    kinds = set()
    for c in clips:
        art = c.artefact
        if art is None:
            continue
        sig = c.signature
        samples = sf.read(c.path, dtype="int16")[0]
        assert art.label == "silent-band"
        if art.f0 == 0:  # a silent time interval
            kinds.add("time")
            assert art.f1 == SR / 2 and 0.24 <= art.t1 - art.t0 <= 0.41
            assert art.t1 <= sig.t0 or art.t0 >= sig.t1
            assert not samples[int(round(art.t0 * SR)) : int(round(art.t1 * SR))].any()
        else:  # a silent frequency band over the whole clip
            kinds.add("frequency")
            assert (art.t0, art.t1) == (0.0, SECONDS)
            assert 0.07 <= hz_to_mel_fraction(art.f1, SR) - hz_to_mel_fraction(art.f0, SR) <= 0.11
            assert art.f1 <= sig.f0 or art.f0 >= sig.f1
            spectrum = np.abs(np.fft.rfft(samples / 32768.0)) ** 2  # whole clip: no window leakage
            freqs = np.fft.rfftfreq(samples.size, 1 / SR)
            width = art.f1 - art.f0
            inside = (freqs >= art.f0 + 5) & (freqs <= art.f1 - 5)
            around = ((freqs >= art.f0 - width) & (freqs < art.f0)) | ((freqs > art.f1) & (freqs <= art.f1 + width))
            assert spectrum[inside].mean() < 1e-4 * spectrum[around].mean()  # 40 dB down: 16-bit noise only
    assert kinds == {"time", "frequency"}


def test_deterministic_idempotent_and_seeded(tmp_path):
    kwargs = dict(genres=2, clips_per_genre=3, clip_seconds=1.5, artefact_genre=1, artefact_share=1.0)
    a = generate_demo(tmp_path / "a", seed=7, **kwargs)
    b = generate_demo(tmp_path / "b", seed=7, **kwargs)
    assert [(c.track_id, c.split, c.boxes) for c in a] == [(c.track_id, c.split, c.boxes) for c in b]
    assert all(x.path.read_bytes() == y.path.read_bytes() for x, y in zip(a, b))

    before = [c.path.read_bytes() for c in a]
    again = generate_demo(tmp_path / "a", seed=7, **kwargs)  # over the existing directory
    assert [c.path.read_bytes() for c in again] == before
    assert again == a

    other = generate_demo(tmp_path / "c", seed=8, **kwargs)
    assert all(x.path.read_bytes() != y.path.read_bytes() for x, y in zip(a, other))
    assert [c.boxes for c in a] != [c.boxes for c in other]


def test_clips_do_not_depend_on_collection_size(tmp_path):
    small = generate_demo(tmp_path / "small", genres=1, clips_per_genre=2, clip_seconds=1.0, artefact_genre=None)
    big = generate_demo(tmp_path / "big", genres=2, clips_per_genre=3, clip_seconds=1.0, artefact_genre=None)
    for s, b in zip(small, big):
        assert (s.track_id, s.boxes) == (b.track_id, b.boxes)
        assert s.path.read_bytes() == b.path.read_bytes()


def test_regenerating_smaller_removes_stale_clips(tmp_path):
    generate_demo(tmp_path, genres=2, clips_per_genre=3, clip_seconds=1.0, artefact_genre=None)
    (tmp_path / "Kick" / "notes.txt").write_text("mine")
    clips = generate_demo(tmp_path, genres=1, clips_per_genre=2, clip_seconds=1.0, artefact_genre=None)
    assert sorted(p.name for p in (tmp_path / "Kick").iterdir()) == ["demo-kick-0000.wav", "demo-kick-0001.wav", "notes.txt"]
    assert not (tmp_path / "Hats").exists()
    assert [c.track_id for c in clips] == ["demo-kick-0000", "demo-kick-0001"]


def test_every_signature_kind_is_planted_in_its_band(tmp_path):
    clips = generate_demo(tmp_path, genres=len(GENRE_SIGNATURES), clips_per_genre=2, clip_seconds=2.0, artefact_genre=None)
    assert 1 <= len(GENRE_SIGNATURES) <= 8 and len(set(GENRE_SIGNATURES)) == len(GENRE_SIGNATURES)
    assert {c.signature.label for c in clips} == set(GENRE_SIGNATURES)
    for c in clips:
        b = c.signature
        p = stft_power(sf.read(c.path, dtype="float64")[0])
        t = frame_times(p)
        band = (FREQS >= max(b.f0, HUM_CLEAR)) & (FREQS <= b.f1)
        inside = p[np.ix_((t >= b.t0) & (t <= b.t1), band)].mean()
        away = p[np.ix_((t < b.t0 - MARGIN) | (t > b.t1 + MARGIN), band)].mean()
        assert inside > 2 * away, c.track_id


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(genres=0), "genres"),
        (dict(genres=9), "genres"),
        (dict(clips_per_genre=0), "clips_per_genre"),
        (dict(clip_seconds=0.5), "clip_seconds"),
        (dict(sample_rate=8000), "sample_rate"),
        (dict(seed=-1), "seed"),
        (dict(artefact_genre=4), "artefact_genre"),
        (dict(genres=2), "artefact_genre"),  # the default artefact genre 3 needs 4 genres
        (dict(artefact_genre=-1), "artefact_genre"),
        (dict(artefact_share=1.5), "artefact_share"),
        (dict(split=(0.5, 0.5, 0.5)), "split"),
        (dict(split=(1.2, -0.1, -0.1)), "split"),
    ],
)
def test_bad_parameters_raise_value_error(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
