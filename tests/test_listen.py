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
    "/listen/2/101/song/voice_00/solo.wav",  # a discovery song without the concept's regions
    "/listen/2/101/upload/abc/solo.wav",     # not an upload id
    "/listen/2/101/upload/" + "ab" * 32 + "/solo.wav",  # no such upload
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
    (["--concept", "101", "--track", "voice_00"], "no region in song"),  # a discovery song of another genre
    (["--concept", "101", "--track", "voice_05", "--upload", "ab" * 32], "not both"),
    (["--concept", "101", "--upload", "ab" * 32], "no uploaded song"),
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


# -- songs that are not discovery songs: where the per-song explanation places the concept ----------------


def _placed_box(cfg) -> np.ndarray:
    """A stand-in placement on the fake run's images: 0.5-3.5 s, 300-600 Hz (the Kick songs' 440 Hz tone)."""
    return _box_mask(geometry.Region(0.5, 3.5, 300.0, 600.0), cfg)


def test_placed_regions_render_in_any_track_and_are_cached(run):
    from whypop.errors import NotFound
    from whypop.listen import Listener
    from whypop.store import RunStore

    store = RunStore(run)
    listener = Listener(store)
    assert "kick_05" not in listener.discovery_songs(2) and "kick_00" in listener.discovery_songs(2)
    calls = []

    def mask():
        calls.append(1)
        return _placed_box(listener.audio)[None]  # (M, H, W): the placed segments

    first = listener.placed(2, 101, "kick_05", "solo", mask)
    assert not first.cached and first.rank is None and first.track_id == "kick_05"
    samples, rate = sf.read(str(first.path), dtype="float32")
    assert samples.shape[0] == pytest.approx(4.0 * rate, abs=2)  # the whole window: the playhead stays right
    r = first.info.region
    assert 0.4 < r.start_s < 0.6 and 3.4 < r.end_s < 3.6
    assert sonify.band_share(samples, rate, r.low_hz, r.high_hz) > 0.9
    again = listener.placed(2, 101, "kick_05", "solo", mask)
    assert again.cached and again.path == first.path and calls == [1]  # the placement is not asked again
    without = listener.placed(2, 101, "kick_05", "without", mask)
    rest, _ = sf.read(str(without.path), dtype="float32")
    song, _ = sf.read(str(run / "audio" / "Kick" / "kick_05.wav"), dtype="float32")
    span = slice(int(0.6 * rate), int(3.4 * rate))
    solo = samples / 10 ** (first.info.gain_db / 20)  # undo the loudness gain (the sidecar says it)
    rest = rest / 10 ** (without.info.gain_db / 20)
    assert np.abs(solo[span] + rest[span] - song[span]).max() < 0.02
    with pytest.raises(NotFound, match="not placed in song 'voice_05'"):
        listener.placed(2, 101, "voice_05", "solo", lambda: np.zeros((0, 128, 128), bool))
    with pytest.raises(NotFound, match="unknown track id"):
        listener.placed(2, 101, "nope", "solo", mask)


def test_listen_route_serves_placed_regions_in_explained_songs(client, run, monkeypatch):
    import pipelines.explain as pe
    from whypop.app import explain as app_explain
    from whypop.explain import Prediction, SongExplanation

    asked = []

    def compute(root, req, cache, progress):
        asked.append(req)
        return SongExplanation(req["id"], Prediction("Kick", {"Kick": 1.0}), [])

    def placed_mask(store, eid, image, e, cid):
        from whypop.listen import Listener

        return _placed_box(Listener(store).audio) if cid == 101 else np.zeros(image.shape, bool)

    monkeypatch.setattr(app_explain, "compute", compute)
    monkeypatch.setattr(pe, "placed_mask", placed_mask)
    r = client.get("/listen/2/101/song/kick_05/solo.wav")
    assert r.status_code == 200 and r.data[:4] == b"RIFF" and asked[0]["id"] == "kick_05"
    samples, rate = sf.read(io.BytesIO(r.data), dtype="float32")
    assert sonify.band_share(samples, rate, 300.0, 600.0) > 0.9
    cached = list((run / "extractions" / "2" / "listen").rglob("placed-101-*-solo.wav"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.data
    part = client.get("/listen/2/101/song/kick_05/solo.wav", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == r.data[:100] and len(asked) == 1  # served from the file
    assert client.get("/listen/2/102/song/kick_05/solo.wav").status_code == 404  # not placed there
    assert client.get("/listen/2/101/song/nope/solo.wav").status_code == 404 and len(asked) == 2


def test_explained_song_player_solo_and_mute(fake_run):  # noqa: F811
    from whypop.app.context import AppContext
    from whypop.app.data import AppData
    from whypop.app.explain import explained_listen_source
    from whypop.explain import ConceptExplanation, Prediction, SongExplanation
    from whypop.store import RunStore

    ctx = AppContext(AppData(RunStore(fake_run)), "/")
    placed = ConceptExplanation(101, "Bells", "Bells concept 1", 0.5, 0.1, [geometry.Region(0.5, 3.5, 300, 600)], [0],
                                0.1)
    e = SongExplanation("kick_05", Prediction("Kick", {"Kick": 1.0}), [placed], extraction_id=2)
    req = {"kind": "track", "id": "kick_05", "extraction": 2, "listen": "solo", "concept": 101}
    src, note = explained_listen_source(ctx, e, req)
    assert src == "/listen/2/101/song/kick_05/solo.wav" and "only Bells concept 1" in note
    src, note = explained_listen_source(ctx, e, {**req, "listen": "without"})
    assert src == "/listen/2/101/song/kick_05/without.wav" and "without" in note
    src, note = explained_listen_source(ctx, e, {**req, "concept": 102})
    assert src is None and "not placed in this song" in note
    assert explained_listen_source(ctx, e, {**req, "listen": "song"}) == (None, "")
    digest = "ab" * 32
    src, _ = explained_listen_source(ctx, e, {**req, "kind": "upload", "id": digest})
    assert src == f"/listen/2/101/upload/{digest}/solo.wav"


# -- slow: the demo run, a song that is not a discovery song -----------------------------------------------


@pytest.fixture(scope="module")
def demo_copy(demo_run, tmp_path_factory):
    dst = tmp_path_factory.mktemp("listen-demo") / "run"
    shutil.copytree(demo_run, dst)
    return dst


@pytest.mark.slow
def test_cli_and_route_play_a_concept_in_a_song_it_was_not_found_in(demo_copy, tmp_path, capsys):
    import pipelines.explain as pe
    from whypop.ace.placement import concept_masks
    from whypop.app import create_app
    from whypop.cli import main
    from whypop.listen import Listener
    from whypop.store import RunStore

    store = RunStore(demo_copy)
    listener = Listener(store)
    discovery = listener.discovery_songs(None)
    track = next(t.track_id for t in store.tracks(status="ok") if t.genre == "Hats" and t.track_id not in discovery)
    ctx = pe.context(store, None, "cpu")
    e, placements, image = pe.explain_track(ctx, track)
    concept = e.concepts[0].concept_id
    mask = concept_masks(placements, concept).any(axis=0)
    # the stored explanation alone gives the same regions (segments recomputed from the image)
    assert np.array_equal(pe.placed_mask(store, ctx.extraction_id, image, e, concept), mask)
    out = tmp_path / "placed.wav"
    assert main(["listen", "--run", str(demo_copy), "--concept", str(concept), "--track", track, "--out", str(out),
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    samples, rate = sf.read(str(out), dtype="float32")
    assert d["track_id"] == track and d["rank"] is None and d["fallback"] is None
    assert samples.shape[0] == pytest.approx(d["clip_duration_s"] * rate, abs=2) and d["clip_start_s"] == 0
    region = geometry.mask_region(mask, listener.audio)
    assert (d["low_hz"], d["high_hz"]) == pytest.approx((region.low_hz, region.high_hz))
    share = sonify.band_share(samples, rate, d["low_hz"], d["high_hz"])
    assert share > 0.8 and d["band_share"] == pytest.approx(share, abs=1e-3)
    absent = next(c["concept_id"] for c in store.concepts(ctx.extraction_id)
                  if all(x.concept_id != c["concept_id"] for x in e.concepts))
    assert main(["listen", "--run", str(demo_copy), "--concept", str(absent), "--track", track,
                 "--out", str(tmp_path / "absent.wav")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not placed in song" in err[-1] and "Traceback" not in "\n".join(err)
    client = create_app(demo_copy, prefix="/").server.test_client()
    eid = ctx.extraction_id
    r = client.get(f"/listen/{eid}/{concept}/song/{track}/solo.wav")
    assert r.status_code == 200 and r.data == out.read_bytes()  # the command's cached clip
    assert client.get(f"/listen/{eid}/{absent}/song/{track}/solo.wav").status_code == 404
