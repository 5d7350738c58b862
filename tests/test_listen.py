"""Hearing a concept: exact sonification on known audio, the cache, the routes, the CLI, the panels."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop import geometry, sonify
from whypop.config import AudioConfig

CFG = AudioConfig()  # 44.1 kHz, 30 s, 224 px
SR = 44100


def _song(sr: int = SR, seconds: float = 30.0) -> np.ndarray:
    """Known content: tones at 200 Hz, 3 kHz (quiet) and 9 kHz all along, plus a little noise."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 200 * t) + 0.02 * np.sin(2 * np.pi * 3000 * t) + 0.3 * np.sin(2 * np.pi * 9000 * t)
    return (x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _box_mask(region: geometry.Region, cfg: AudioConfig = CFG) -> np.ndarray:
    x0, y0, x1, y1 = geometry.region_to_pixels(region, cfg)
    mask = np.zeros((cfg.image_size, cfg.image_size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _ellipse_mask(cfg: AudioConfig, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[: cfg.image_size, : cfg.image_size]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


# -- exact sonification ------------------------------------------------------------------------


@pytest.mark.parametrize("band, hz", [((2500, 3600), 3000), ((7000, 11000), 9000), ((150, 260), 200)])
def test_solo_energy_lies_in_the_region_band_measured_on_the_file(tmp_path, band, hz):
    mask = _box_mask(geometry.Region(10.0, 13.0, *band))
    clip = sonify.render(_song(), SR, mask, CFG, "solo")
    path = sonify.write_wav(clip, tmp_path / "solo.wav")
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == SR and samples.ndim == 1
    r = clip.region
    assert r.low_hz <= hz <= r.high_hz and r.start_s < 10.1 and r.end_s > 12.9
    assert sonify.band_share(samples, rate, r.low_hz, r.high_hz) >= 0.9
    # the other tones are gone: at most a trace outside the band
    below = sonify.band_share(samples, rate, 0, r.low_hz - 100)
    above = sonify.band_share(samples, rate, r.high_hz + 100, rate / 2)
    assert below + above < 0.02
    # loud enough: the quiet 3 kHz tone (-37 dBFS) is brought up towards -20 dBFS RMS
    rms_db = 20 * np.log10(np.sqrt(np.mean(samples[int(1.0 * rate) : int(3.0 * rate)] ** 2)))
    assert -22 < rms_db < -18
    assert np.abs(samples).max() <= 10 ** (-1 / 20) + 1e-3
    # the clip is the region plus half a second of context either side, in song time
    assert clip.start_s == pytest.approx(r.start_s - 0.5, abs=1e-3)
    assert clip.duration == pytest.approx(r.end_s - r.start_s + 1.0, abs=1e-3)


def test_the_quiet_tone_gets_more_gain_than_a_loud_one():
    quiet = sonify.render(_song(), SR, _box_mask(geometry.Region(10, 13, 2500, 3600)), CFG, "solo")
    loud = sonify.render(_song(), SR, _box_mask(geometry.Region(10, 13, 7000, 11000)), CFG, "solo")
    assert quiet.gain_db > loud.gain_db + 15


@pytest.mark.parametrize("sr, cfg", [
    (44100, CFG),
    (48000, CFG),  # the song's own rate, above the image's
    (22050, AudioConfig(sample_rate=22050, duration=4.0, n_fft=1024, hop_length=256, image_size=128)),  # the demo's
    (8000, AudioConfig(sample_rate=22050, duration=4.0, n_fft=1024, hop_length=256, image_size=128)),  # below it
])
@pytest.mark.parametrize("whole", [False, True])
def test_solo_plus_without_is_the_original(sr, cfg, whole):
    x = _song(sr, cfg.duration)
    mask = _ellipse_mask(cfg, cfg.image_size * 0.4, cfg.image_size * 0.6, cfg.image_size * 0.1, cfg.image_size * 0.2)
    sep = sonify.separate(x, sr, mask, cfg, whole=whole)
    assert sep.solo.shape == sep.without.shape == sep.original.shape
    a = int(round((sep.region.start_s - sep.start_s) * sr))
    b = int(round((sep.region.end_s - sep.start_s) * sr))
    span = slice(a, b)  # over the region's time span
    err = np.abs(sep.solo[span] + sep.without[span] - sep.original[span]).max()
    assert err < 1e-5 * max(1.0, float(np.abs(sep.original).max())), err
    assert np.abs(sep.solo + sep.without - sep.original).max() < 1e-5  # in fact over the whole clip
    start = int(round(sep.start_s * sr))
    assert np.array_equal(sep.original, x[start : start + sep.original.shape[0]])  # the song's own samples
    assert 0.0 < float(np.square(sep.solo).sum()) < float(np.square(sep.original).sum())
    if whole:
        assert sep.start_s == 0 and sep.original.shape[0] == int(round(cfg.duration * sr))


def test_only_the_first_window_is_explained_and_padding_is_silent():
    cfg = AudioConfig(sample_rate=22050, duration=4.0, n_fft=1024, hop_length=256, image_size=128)
    short = _song(22050, 2.0)  # the song ends at 2 s; the image pads to 4 s
    mask = np.zeros((128, 128), bool)
    mask[40:90, 20:120] = True  # 0.6 s .. 3.75 s: past the song's end
    sep = sonify.separate(short, 22050, mask, cfg)
    end = int(round((2.0 - sep.start_s) * 22050))
    assert np.abs(sep.solo[end + 2048 :]).max() < 1e-6 and np.abs(sep.original[end:]).max() == 0
    long = _song(22050, 9.0)
    sep = sonify.separate(long, 22050, np.ones((128, 128), bool), cfg, whole=True)
    assert sep.original.shape[0] == 4 * 22050  # the first 4 s: what the image shows


def test_modes_and_empty_masks_are_refused():
    with pytest.raises(ValueError, match="mode"):
        sonify.render(_song(), SR, _box_mask(geometry.Region(1, 2, 100, 200)), CFG, "loud")
    with pytest.raises(ValueError, match="empty"):
        sonify.separate(_song(), SR, np.zeros((224, 224), bool), CFG)


def test_griffin_lim_from_the_image_keeps_the_band():
    from whypop import audio

    cfg = AudioConfig(sample_rate=22050, duration=4.0, n_fft=1024, hop_length=256, image_size=128)
    x = _song(22050, 4.0)
    image = audio.spectrogram_from_samples(x, 22050, cfg)
    stand_in = sonify.image_to_samples(image, cfg, n_iter=16)
    assert stand_in.shape[0] >= int(3.9 * 22050)
    again = audio.spectrogram_from_samples(stand_in, 22050, cfg)
    assert np.abs(again.astype(int) - image.astype(int)).mean() < 20  # the same picture, roughly
    clip = sonify.render(stand_in, 22050, _box_mask(geometry.Region(1.0, 3.0, 7000, 11000), cfg), cfg, "solo",
                         fallback="griffin-lim: test")
    assert clip.fallback and sonify.band_share(clip.samples, 22050, clip.region.low_hz, clip.region.high_hz) > 0.9
    part = sonify.image_to_samples(image, cfg, n_iter=8, start_s=1.0, end_s=2.0)  # only an example's span
    assert part.shape == stand_in.shape
    assert np.abs(part[int(1.0 * 22050) : int(2.0 * 22050)]).min() >= 0 and np.abs(part[22050:44100]).max() > 0.1
    assert np.abs(part[: int(0.7 * 22050)]).max() == 0 and np.abs(part[int(2.3 * 22050) :]).max() == 0


# -- the store: masks, cache, fallback ---------------------------------------------------------


@pytest.fixture()
def run(fake_run, tmp_path):  # noqa: F811
    dst = tmp_path / "run"
    shutil.copytree(fake_run, dst)
    outside = fake_run.parent / f"{fake_run.name}-outside.wav"  # the track whose audio lies outside the run
    shutil.copy(outside, dst.parent / f"{dst.name}-outside.wav")
    from whypop.store import RunStore

    store = RunStore(dst)
    store.set_meta("audio_root", str((dst / "audio").resolve()))
    store.close()
    return dst


def test_example_clips_are_cached_under_the_extraction(run):
    from whypop.listen import Listener
    from whypop.store import RunStore

    store = RunStore(run)
    listener = Listener(store)
    first = listener.example(2, 101, 0, "solo")
    assert not first.cached and first.path.is_file()
    assert first.path.relative_to(run).parts[:3] == ("extractions", "2", "listen")
    again = listener.example(2, 101, 0, "solo")
    assert again.cached and again.path == first.path and again.info == first.info
    assert first.info.fallback is None and first.track_id == store.patches(2, concept_id=101)[0]["track_id"]
    # a changed source invalidates the clip
    audio = store.audio_path(first.track_id)
    sf.write(str(audio), np.zeros(8000, np.float32), 8000)
    assert not listener.example(2, 101, 0, "solo").cached


def test_song_clips_cover_the_whole_window_and_complement(run):
    from whypop.listen import Listener
    from whypop.store import RunStore

    store = RunStore(run)
    listener = Listener(store, cache=False)
    track = store.patches(2, concept_id=101)[0]["track_id"]
    solo, without = listener.song(2, 101, track, "solo"), listener.song(2, 101, track, "without")
    s, rate = sf.read(str(solo.path), dtype="float32")
    w, _ = sf.read(str(without.path), dtype="float32")
    original, _ = sf.read(str(store.audio_path(track)), dtype="float32")
    assert solo.info.clip_start_s == 0 and s.shape == w.shape == original.shape  # 4 s at 8 kHz
    g_s, g_w = 10 ** (solo.info.gain_db / 20), 10 ** (without.info.gain_db / 20)
    fade = int(0.005 * rate) + 1
    recon = s[fade:-fade] / g_s + w[fade:-fade] / g_w
    assert np.abs(recon - original[fade:-fade]).max() < 5e-3  # 16-bit files, gain divided out
    from whypop.errors import NotFound

    with pytest.raises(NotFound, match="no region in song"):
        listener.song(2, 101, "voice_05", "solo")  # not a discovery song of the concept


def test_missing_audio_falls_back_to_griffin_lim_and_says_so(run):
    from whypop.listen import Listener
    from whypop.store import RunStore

    store = RunStore(run)
    track = store.patches(2, concept_id=101)[0]["track_id"]
    store.audio_path(track).unlink()
    rendered = Listener(store).example(2, 101, 0, "solo")
    fallback = rendered.info.fallback
    assert fallback and fallback.startswith("griffin-lim") and "missing" in fallback
    samples, rate = sf.read(str(rendered.path), dtype="float32")
    assert rate == 22050 and np.abs(samples).max() > 0.01  # the image's rate: the stand-in is made there


# -- routes --------------------------------------------------------------------------------------


@pytest.fixture()
def client(run):
    from whypop.app import create_app

    return create_app(run, prefix="/").server.test_client()


def test_listen_routes_render_once_then_serve_the_file_with_ranges(client, run):
    r = client.get("/listen/2/101/0/solo.wav")
    assert r.status_code == 200 and r.content_type == "audio/wav" and r.data[:4] == b"RIFF"
    assert r.headers["Accept-Ranges"] == "bytes" and float(r.headers["X-Whypop-Gain-Db"]) >= 0
    cached = list((run / "extractions" / "2" / "listen").rglob("example-101-0-solo.wav"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.data
    part = client.get("/listen/2/101/0/solo.wav", headers={"Range": "bytes=10-49"})
    assert part.status_code == 206 and part.data == r.data[10:50]
    assert client.get("/listen/2/101/0/solo.wav", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    without = client.get("/listen/2/101/0/without.wav")
    assert without.status_code == 200 and without.data != r.data
    samples, _ = sf.read(io.BytesIO(without.data))
    assert samples.shape[0] == sf.read(io.BytesIO(r.data))[0].shape[0]
    song = client.get("/listen/2/101/song/bells_00/without.wav")
    assert song.status_code == 200
    assert sf.info(io.BytesIO(song.data)).duration == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize("url", [
    "/listen/2/101/0/loud.wav",
    "/listen/2/101/12/solo.wav",          # ranks 0..11
    "/listen/2/999/0/solo.wav",
    "/listen/1/101/0/solo.wav",           # a concept of another extraction
    "/listen/3/101/0/solo.wav",           # failed extraction
    "/listen/x/101/0/solo.wav",
    "/listen/2/101/0/solo.mp3",
    "/listen/2/101/-1/solo.wav",
    "/listen/2/101/song/nope/solo.wav",
    "/listen/2/101/song/voice_05/solo.wav",  # no region of the concept in that song
    "/listen/2/101/song/..%2F..%2Frun.sqlite/solo.wav",
    "/listen/2/101/song/bells_00/loud.wav",
    "/listen/",
    "/listen/2",
])
def test_listen_anything_else_is_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, url
    assert b"sqlite" not in r.data.lower()


def test_fallback_is_flagged_on_the_route(client, run):
    from whypop.store import RunStore

    track = RunStore(run).patches(2, concept_id=102)[0]["track_id"]
    RunStore(run).audio_path(track).unlink()
    rank = RunStore(run).patches(2, concept_id=102)[0]["rank"]
    r = client.get(f"/listen/2/102/{rank}/solo.wav")
    assert r.status_code == 200 and r.headers["X-Whypop-Fallback"] == "griffin-lim"


# -- the command -----------------------------------------------------------------------------------


def test_cli_json_reports_region_gain_and_band_share(run, tmp_path, capsys):
    from whypop.cli import main

    out = tmp_path / "clip.wav"
    assert main(["listen", "--run", str(run), "--concept", "105", "--rank", "2", "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"start_s", "end_s", "low_hz", "high_hz", "gain_db", "fallback", "band_share"} <= set(d)
    assert d["start_s"] < d["end_s"] and d["low_hz"] < d["high_hz"] and d["rank"] == 2 and d["fallback"] is None
    samples, rate = sf.read(str(out))
    assert rate == 8000 and samples.shape[0] == pytest.approx((d["clip_duration_s"]) * rate, abs=2)
    track = d["track_id"]
    assert main(["listen", "--run", str(run), "--concept", "105", "--track", track, "--mode", "without",
                 "--out", str(out)]) == 0
    assert "without" in capsys.readouterr().out and sf.info(str(out)).duration == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--concept", "999"], "unknown concept id"),
    (["--concept", "101", "--rank", "40"], "no example of rank 40"),
    (["--concept", "101", "--track", "voice_05"], "no region in song"),
    (["--concept", "101", "--track", "nope"], "unknown track id"),
    (["--concept", "101", "--out-as", "x"], None),
])
def test_cli_errors_name_the_bad_value(run, tmp_path, capsys, argv, message):
    from whypop.cli import main

    out = ["--out", str(tmp_path / "x.wav")] if "--out-as" not in argv else []
    if message is None:
        with pytest.raises(SystemExit):
            main(["listen", "--run", str(run), *argv])
        return
    assert main(["listen", "--run", str(run), *argv, *out]) == 1
    assert message in capsys.readouterr().err
    assert main(["listen", "--run", str(run), "--concept", "101", "--out", str(tmp_path / "x.mp3")]) == 1
    assert "WAV" in capsys.readouterr().err


# -- the panels --------------------------------------------------------------------------------------


def test_gallery_has_a_play_button_per_example(fake_run):  # noqa: F811
    from whypop.app.context import AppContext
    from whypop.app.data import AppData
    from whypop.app.examples import gallery
    from whypop.store import RunStore

    ctx = AppContext(AppData(RunStore(fake_run)), "/p/")
    _, items = gallery(ctx, 2, 101)
    controls = [c for item in items for c in item.children[1].children]
    buttons = [c for c in controls if getattr(c, "className", "").startswith("whypop-play")]
    assert [getattr(b, "data-src") for b in buttons] == [f"/p/listen/2/101/{k}/solo.wav" for k in range(10)]


def test_song_player_solo_and_mute(fake_run):  # noqa: F811
    from whypop.app.context import AppContext
    from whypop.app.data import AppData
    from whypop.app.song import song_view
    from whypop.store import RunStore

    data = AppData(RunStore(fake_run))
    ctx = AppContext(data, "/")
    placements = data.placements(2, "bells_01")
    concept = placements[0].concept_id
    _, src, caption = song_view(ctx, 2, "bells_01", None, "solo", concept)
    assert src == f"/listen/2/{concept}/song/bells_01/solo.wav" and "only" in caption
    _, src, caption = song_view(ctx, 2, "bells_01", None, "without", concept)
    assert src == f"/listen/2/{concept}/song/bells_01/without.wav" and "without" in caption
    absent = next(c.concept_id for c in data.view(2).concepts if all(p.concept_id != c.concept_id for p in placements))
    _, src, caption = song_view(ctx, 2, "bells_01", None, "solo", absent)
    assert src == "/audio/bells_01" and "no region in this song" in caption
    _, src, _ = song_view(ctx, 2, "bells_01", None, "song", concept)
    assert src == "/audio/bells_01"
