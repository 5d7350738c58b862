"""Explaining a song: pixel -> seconds/Hz, the stage on the demo run, the CLI, fresh songs, uploads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop.config import AudioConfig
from whypop.explain import Region, SongExplanation, overlaps_time, pixel_box_to_region
from whypop.geometry import box_to_pixels, region_to_pixels


# -- fast --------------------------------------------------------------------------------------


def test_pixel_box_to_region_through_the_image_geometry():
    cfg = AudioConfig(sample_rate=22050, duration=4.0, image_size=128)
    for t0, t1, f0, f1 in ((0.5, 1.7, 30.0, 600.0), (1.0, 3.0, 5500.0, 10500.0), (2.0, 4.0, 1700.0, 3800.0)):
        box = box_to_pixels(t0, t1, f0, f1, cfg)
        r = pixel_box_to_region(box, cfg)
        assert region_to_pixels(r, cfg) == box  # the exact inverse
        px_s = cfg.duration / cfg.image_size
        assert abs(r.start_s - t0) < 1.5 * px_s and abs(r.end_s - t1) < 1.5 * px_s
        assert 0.8 * f0 - 60 < r.low_hz < 1.2 * f0 + 60 and 0.85 * f1 < r.high_hz < 1.15 * f1
    # padding: a region beyond the song's real duration is cut at the duration
    r = pixel_box_to_region((64, 0, 128, 10), cfg, duration=3.0)
    assert r.start_s == pytest.approx(2.0, abs=0.01) and r.end_s == pytest.approx(3.0) and r.high_hz == pytest.approx(11025)


def test_region_overlap_and_round_trip():
    r = Region(1.0, 2.0, 100.0, 200.0)
    assert overlaps_time(r, 1.5, 3.0) and overlaps_time(r, 0.0, 1.01) and not overlaps_time(r, 2.0, 3.0)
    assert Region.from_dict(r.to_dict()) == r


def test_upload_route_refuses_bad_files_and_keeps_one_copy(fake_run, tmp_path):  # noqa: F811
    import soundfile as sf

    from whypop.app import create_app

    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    c = create_app(run, read_only=False).server.test_client()
    wav = tmp_path / "s.wav"
    sf.write(str(wav), (np.sin(np.arange(8000) / 5) * 0.3).astype(np.float32), 8000)
    body = wav.read_bytes()
    first = c.post("/upload", data=body, headers={"X-Filename": "my%20song.wav"})
    assert first.status_code == 200, first.data
    digest = first.get_json()["id"]
    assert first.get_json()["name"] == "my song.wav" and len(digest) == 64
    again = c.post("/upload", data=body, headers={"X-Filename": "copy.wav"})
    assert again.get_json()["id"] == digest
    stored = list((run / "uploads" / digest).iterdir())
    assert sorted(p.name for p in stored) == ["audio.wav", "upload.json"]
    assert not list((run / "uploads" / ".incoming").iterdir())
    assert c.get(f"/upload/{digest}/audio").status_code == 200
    assert c.get(f"/upload/{'0' * 64}/audio").status_code == 404
    assert c.get(f"/upload/{digest}/spectrogram.png").status_code == 404  # not explained yet
    cases = {
        "junk.mp3": (b"\x00\x01not audio at all" * 50, 400, "not a recognised audio file"),
        "empty.wav": (b"", 400, "empty"),
        "notes.txt": (b"hello", 400, "not a supported audio file"),
        "cut.flac": (body[:40], 400, "not a recognised audio file"),
    }
    for name, (data, status, text) in cases.items():
        r = c.post("/upload", data=data, headers={"X-Filename": name})
        assert r.status_code == status and text in r.get_json()["error"], (name, r.status_code, r.data)
    assert c.post("/upload", data=body).status_code == 400  # no name


def test_upload_limits_and_read_only(fake_run, tmp_path, monkeypatch):  # noqa: F811
    import soundfile as sf

    from whypop.app import create_app

    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    from whypop.store import RunStore
    from whypop.config import merge

    store = RunStore(run)
    cfg = merge(store.stored_config(), {"serve": {"upload_max_mb": 0.05, "upload_max_seconds": 1.0}})
    store.set_meta("config", cfg.to_dict())
    c = create_app(run, read_only=False).server.test_client()
    big = tmp_path / "big.wav"
    sf.write(str(big), np.zeros(60000, np.float32), 8000)  # 7.5 s, 120 kB
    r = c.post("/upload", data=big.read_bytes(), headers={"X-Filename": "big.wav"})
    assert r.status_code == 413 and "limit is 0.05 MB" in r.get_json()["error"]
    long = tmp_path / "long.wav"
    sf.write(str(long), np.zeros(16000, np.int16), 8000, subtype="PCM_16")  # 2 s, 32 kB
    r = c.post("/upload", data=long.read_bytes(), headers={"X-Filename": "long.wav"})
    assert r.status_code == 400 and "is 2 s long; the limit is 1 s" in r.get_json()["error"]
    ro = create_app(run, read_only=True, allow_upload=False).server.test_client()
    r = ro.post("/upload", data=b"x", headers={"X-Filename": "a.wav"})
    assert r.status_code == 403 and "read-only" in r.get_json()["error"]
    assert not (run / "uploads" / "a.wav").exists()
    allowed = create_app(run, read_only=True, allow_upload=True).server.test_client()
    short = tmp_path / "short.wav"
    sf.write(str(short), np.zeros(4000, np.int16), 8000, subtype="PCM_16")
    assert allowed.post("/upload", data=short.read_bytes(), headers={"X-Filename": "short.wav"}).status_code == 200


def test_picker_searches_every_track(fake_run):  # noqa: F811
    from whypop.app import create_app
    from whypop.app.context import AppContext
    from whypop.app.explain import search_tracks

    app = create_app(fake_run)
    ctx = AppContext(app.whypop_data, "/")
    eid = app.whypop_data.latest_extraction()
    everything = search_tracks(ctx, "", eid, limit=1000)
    assert len(everything) == len(app.whypop_data.store.tracks(status="ok"))
    kick = search_tracks(ctx, "KICK 05", eid)
    assert [o["value"] for o in kick] == ["kick_05"] and "discovery" not in kick[0]["label"]
    assert "discovery song" in search_tracks(ctx, "kick_00", eid)[0]["label"]
    assert search_tracks(ctx, "kick", eid, current="voice_03")[0]["value"] == "voice_03"
    assert len(search_tracks(ctx, "", eid, limit=4)) == 4


# -- slow: the demo run --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(demo_run, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("explain") / "run"
    shutil.copytree(demo_run, dst)
    return dst


@pytest.fixture(scope="module")
def ctx(run):
    import pipelines.explain as pe
    from whypop.store import RunStore

    return pe.context(RunStore(run), None, "cpu")


@pytest.mark.slow
def test_bank_reproduces_discovery_distances(run, ctx):
    """The members' features recomputed for the bank are the ones k-means clustered (stored distances)."""
    from whypop.store import RunStore

    store = RunStore(run)
    bank = ctx.explainer.bank
    for k in range(0, len(bank), max(1, len(bank) // 5)):
        cid = int(bank.concept_ids[k])
        stored = np.sort([r["distance"] for r in store.patches(ctx.extraction_id, concept_id=cid)])
        assert np.allclose(bank.member_distances[k], stored, rtol=1e-3, atol=1e-3)
        assert bank.member_share_within(k, bank.thresholds[k]) >= 0.9
    assert list((run / "cache" / "explain").glob("bank-*.npz"))


@pytest.mark.slow
def test_explain_a_track_that_is_not_a_discovery_song(run, ctx):
    import pipelines.explain as pe
    from whypop.store import RunStore

    store = RunStore(run)
    ex = store.extraction(ctx.extraction_id)
    used = {t for g in ex["summary"]["genres"].values() for t in g["discovery"] + g["score"]}
    track = next(t for t in store.tracks(status="ok") if t.track_id not in used and t.split == "test")
    e, placements, image = pe.explain_track(ctx, track.track_id)
    assert e.track_id == track.track_id and e.genre == track.genre
    assert abs(sum(e.prediction.probabilities.values()) - 1) < 1e-4
    assert e.prediction.genre == max(e.prediction.probabilities, key=e.prediction.probabilities.get)
    assert e.concepts and e.n_segments == len(placements) > 5
    infl = [c.influence for c in e.concepts]
    assert infl == sorted(infl, reverse=True)
    for c in e.concepts:
        assert c.regions and all(0 <= r.start_s < r.end_s <= 4.0 and 0 <= r.low_hz < r.high_hz <= 11025 for r in c.regions)
        assert -1 <= c.probability_drop <= 1
    # the JSON round trip, and the probability drop is what filling the regions does
    assert SongExplanation.from_dict(json.loads(json.dumps(e.to_dict()))).to_dict() == e.to_dict()
    from whypop.ace.placement import concept_masks, fill_masks

    top = e.concepts[0]
    filled = fill_masks(image, concept_masks(placements, top.concept_id), ctx.explainer.params.fill)
    k = ctx.explainer.genres.index(e.prediction.genre)
    p = ctx.explainer.probabilities(np.stack([image, filled]))[:, k]
    assert top.probability_drop == pytest.approx(float(p[0] - p[1]), abs=1e-4)


@pytest.mark.slow
def test_cli_explains_a_fresh_demo_song(run, tmp_path, capsys):
    """`whypop demo --make-song` + `whypop explain --json`: the genre, and a concept of it on the planted sound."""
    from whypop.cli import main

    song = tmp_path / "hats.wav"
    assert main(["demo", "--make-song", "Hats", "--seed", "7", "--out", str(song), "--run", str(run)]) == 0
    planted = json.loads(capsys.readouterr().out)
    assert song.is_file() and set(planted) >= {"start_s", "end_s", "low_hz", "high_hz"}
    assert (planted["low_hz"], planted["high_hz"]) == (5500.0, 10500.0)
    out = tmp_path / "out"
    assert main(["explain", str(song), "--run", str(run), "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["prediction"]["genre"] == "Hats"
    assert set(result["prediction"]["probabilities"]) == {"Formant", "Hats", "Kick", "Pluck"}
    for c in result["concepts"]:
        assert set(c) >= {"concept_id", "genre", "influence", "probability_drop", "regions"}
        assert all(set(r) >= {"start_s", "end_s", "low_hz", "high_hz"} for r in c["regions"])
    hits = [c for c in result["concepts"][:3] if c["genre"] == "Hats" and any(
        r["start_s"] < planted["end_s"] and planted["start_s"] < r["end_s"] for r in c["regions"])]
    assert hits, result["concepts"][:3]
    assert (out / "hats.png").stat().st_size > 10_000 and (out / "hats.json").is_file()
    # a track of the run, by id; a bad song gives a one-line error
    assert main(["explain", "--run", str(run), "--track", "demo-kick-0001", "--top", "2"]) == 0
    assert "predicted" in capsys.readouterr().out
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....nonsense")
    assert main(["explain", str(bad), "--run", str(run)]) == 1
    assert "bad.wav" in capsys.readouterr().err
    assert main(["explain", "--run", str(run), "--track", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_make_song_is_fresh_and_deterministic(tmp_path, capsys):
    from whypop.cli import main
    from whypop.demo import make_song

    a = make_song("kick", 3, tmp_path / "a.wav")
    b = make_song("Kick", 3, tmp_path / "b.wav")
    c = make_song("Kick", 4, tmp_path / "c.wav")
    assert a.path.read_bytes() == b.path.read_bytes() != c.path.read_bytes()
    assert a.signature.f0 == 30.0 and 0 <= a.signature.t0 < a.signature.t1 <= 4.0 and a.artefact is None
    with pytest.raises(ValueError, match="allowed are Kick, Hats"):
        make_song("Jazz", 1, tmp_path / "x.wav")
    assert main(["demo", "--make-song", "Pluck", "--seed", "2", "--out", str(tmp_path / "p.wav"),
                 "--run", str(tmp_path / "none")]) == 0
    planted = json.loads(capsys.readouterr().out)
    assert planted["genre"] == "Pluck" and planted["low_hz"] == 650.0 and not (tmp_path / "none").exists()
    assert main(["demo", "--make-song", "Jazz", "--out", str(tmp_path / "j.wav")]) == 1
    assert "unknown demo genre 'Jazz'" in capsys.readouterr().err
