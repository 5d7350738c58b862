"""`whypop prepare` end to end, through the real command line: folder, FMA and demo layouts.

Every good clip gives a 224x224 uint8 PNG; every bad file is recorded with its reason and
shown by `whypop status --json`; a second run does no work; unusable collections and
metadata fail with a clear message and a non-zero exit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
NO_FEATURES = ["--set", "dataset.audio_features=false"]


def whypop(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "whypop.cli", *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"whypop {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def status(run: Path) -> dict:
    return json.loads(whypop("status", "--run", run, "--json").stdout)


def _check_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (224, 224)
        arr = np.asarray(im)
    assert arr.dtype == np.uint8 and arr.shape == (224, 224)


def _write_bad_files(folder: Path) -> dict[str, str]:
    """The bad inputs of the issue; returns {file name: expected reason fragment}."""
    rng = np.random.default_rng(0)
    (folder / "corrupt.wav").write_bytes(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes())
    (folder / "corrupt.ogg").write_bytes(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes())
    (folder / "empty.flac").touch()
    (folder / "notes.mp3").write_text("not an mp3 at all\n" * 40)
    return {
        "corrupt.wav": "cannot decode audio",
        "corrupt.ogg": "cannot decode audio",
        "empty.flac": "empty file",
        "notes.mp3": "cannot decode audio",
    }


# -- folder per genre ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, audio_fixtures):
    base = tmp_path_factory.mktemp("folders")
    col = base / "collection"
    rock, jazz, noise = col / "rock", col / "jazz", col / "noise"
    for d in (rock, jazz, noise, col / "empty", col / "docs"):
        d.mkdir(parents=True)
    (col / "docs" / "README.txt").write_text("no audio here")
    shutil.copyfile(audio_fixtures / "fma_small" / "000" / "000010.mp3", rock / "000010.mp3")
    shutil.copyfile(audio_fixtures / "librosa-data" / "Kevin_MacLeod_-_Vibe_Ace.ogg", jazz / "vibe_ace.ogg")
    shutil.copyfile(audio_fixtures / "openmic" / "000046_3840.ogg", jazz / "openmic.ogg")
    sr = 44100
    t = np.arange(int(0.3 * sr)) / sr
    sf.write(rock / "short.wav", (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)
    sf.write(rock / "silence.wav", np.zeros(sr, np.float32), sr)
    sf.write(noise / "six.wav", np.random.default_rng(1).uniform(-0.2, 0.2, (sr, 6)), 48000, subtype="PCM_24")
    bad = _write_bad_files(noise)
    run = base / "run"
    first = whypop("prepare", col, "--run", run, "--workers", "2", *NO_FEATURES)
    return {"collection": col, "run": run, "bad": bad, "first": first,
            "good": {"rock/000010.mp3", "jazz/vibe_ace.ogg", "jazz/openmic.ogg", "rock/short.wav",
                     "rock/silence.wav", "noise/six.wav"}}


@pytest.mark.slow  # `whypop prepare` on a real collection
def test_folder_layout_good_clips_give_pngs(folder_run):
    st = status(folder_run["run"])
    assert st["audio_root"] == str(folder_run["collection"].resolve())
    assert st["tracks"]["ok"] == len(folder_run["good"])
    from whypop.store import RunStore

    store = RunStore(folder_run["run"])
    ok = store.tracks(status="ok")
    assert {t.source for t in ok} == folder_run["good"]
    for t in ok:
        _check_png(store.path(t.spectrogram))
        assert t.split in ("training", "validation", "test")
    assert {t.genre for t in ok} == {"rock", "jazz", "noise"}
    assert store.track(next(t.track_id for t in ok if t.source == "noise/six.wav")).channels == 6
    store.close()


@pytest.mark.slow  # `whypop prepare` on a real collection
def test_folder_layout_bad_files_recorded_with_reasons(folder_run):
    st = status(folder_run["run"])
    failures = {f["source"]: f for f in st["tracks"]["failures"]}
    assert set(failures) == {f"noise/{name}" for name in folder_run["bad"]}
    for name, reason in folder_run["bad"].items():
        error = failures[f"noise/{name}"]["error"]
        assert reason in error and "\n" not in error
    assert st["tracks"]["failed"] == len(folder_run["bad"])
    assert any("'empty'" in w for w in st["tracks"]["warnings"]), "the empty genre folder is reported"
    text = whypop("status", "--run", folder_run["run"]).stdout
    assert "failed" in text and "empty file" in text and "genre folder 'empty'" in text


@pytest.mark.slow  # `whypop prepare` on a real collection
def test_folder_layout_second_run_does_no_work(folder_run):
    from whypop.store import RunStore

    store = RunStore(folder_run["run"])
    pngs = sorted((folder_run["run"] / "spectrograms").glob("*.png"))
    before = {p: p.stat().st_mtime_ns for p in pngs}
    prepared_at = {t.track_id: t.prepared_at for t in store.tracks()}
    again = whypop("prepare", folder_run["collection"], "--run", folder_run["run"], *NO_FEATURES)
    assert "prepared 0 new" in again.stdout and "0 failed now" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in pngs} == before
    assert sorted((folder_run["run"] / "spectrograms").glob("*.png")) == pngs
    assert {t.track_id: t.prepared_at for t in store.tracks()} == prepared_at
    store.close()


@pytest.mark.slow  # `whypop prepare` on a real collection
def test_changed_audio_settings_on_the_same_run_are_refused(folder_run):
    proc = whypop("prepare", folder_run["collection"], "--run", folder_run["run"],
                  "--set", "audio.image_size=128", check=False)
    assert proc.returncode == 1
    assert "audio.image_size=224" in proc.stderr and "new --run" in proc.stderr


def test_nothing_usable_is_a_clear_error(tmp_path):
    col = tmp_path / "collection"
    (col / "junk").mkdir(parents=True)
    _write_bad_files(col / "junk")
    proc = whypop("prepare", col, "--run", tmp_path / "run", *NO_FEATURES, check=False)
    assert proc.returncode == 1
    assert "nothing usable" in proc.stderr and "Traceback" not in proc.stderr


def test_a_folder_without_genre_folders_is_a_clear_error(tmp_path):
    (tmp_path / "flat").mkdir()
    proc = whypop("prepare", tmp_path / "flat", "--run", tmp_path / "run", check=False)
    assert proc.returncode == 1 and "no genre folders" in proc.stderr


# -- FMA layout --------------------------------------------------------------------------------

# FMA's tracks.csv: two header rows (top level, sub level) and a row naming the index.
FMA_HEADER = (
    ",album,artist,set,set,track,track\n"
    ",title,name,split,subset,genre_top,title\n"
    "track_id,,,,,,\n"
)
FMA_ROWS = (
    "2,AWOL,AWOL,training,small,Hip-Hop,Food\n"  # listed, missing on disk
    "10,Constant Hitmaker,Kurt Vile,training,small,Pop,Freeway\n"
    "11,Constant Hitmaker,Kurt Vile,validation,small,Pop,\"Freeway, again\"\n"
    "12,Constant Hitmaker,Kurt Vile,test,small,Pop,Freeway (live)\n"
    "13,Junk,Nobody,training,small,Rock,Broken\n"  # a text file named .mp3
    "140,Other,Someone,training,medium,Folk,Not small\n"  # another subset: ignored
    "141,Other,Someone,training,small,,No top genre\n"  # no genre_top: ignored
)


def _fma(tmp_path: Path, audio_fixtures: Path, csv: str) -> tuple[Path, Path]:
    audio_dir, meta = tmp_path / "fma_small", tmp_path / "fma_metadata"
    (audio_dir / "000").mkdir(parents=True)
    meta.mkdir()
    mp3 = audio_fixtures / "fma_small" / "000" / "000010.mp3"
    for tid in (10, 11, 12):
        shutil.copyfile(mp3, audio_dir / "000" / f"{tid:06d}.mp3")
    (audio_dir / "000" / "000013.mp3").write_text("hello\n" * 100)
    shutil.copyfile(mp3, audio_dir / "000" / "000140.mp3")
    (meta / "tracks.csv").write_text(csv)
    return audio_dir, meta


def test_fma_header_is_what_pandas_reads_as_two_levels(tmp_path, audio_fixtures):
    import pandas as pd

    _, meta = _fma(tmp_path, audio_fixtures, FMA_HEADER + FMA_ROWS)
    df = pd.read_csv(meta / "tracks.csv", index_col=0, header=[0, 1])
    assert df.index.name == "track_id" and list(df.index) == [2, 10, 11, 12, 13, 140, 141]
    assert ("track", "genre_top") in df.columns and ("set", "split") in df.columns


@pytest.mark.slow  # `whypop prepare` with audio features
def test_fma_layout_with_features(tmp_path, audio_fixtures):
    """The one preparation with audio features on (whypop.features.compute_audio_features)."""
    audio_dir, meta = _fma(tmp_path, audio_fixtures, FMA_HEADER + FMA_ROWS)
    run = tmp_path / "run"
    out = whypop("prepare", audio_dir, "--metadata", meta, "--run", run, "--workers", "1")
    assert "prepared 3 new" in out.stdout
    st = status(run)
    assert st["tracks"]["ok"] == 3 and st["tracks"]["failed"] == 2 and st["tracks"]["total"] == 5
    assert st["tracks"]["per_genre"] == {"Pop": {"training": 1, "validation": 1, "test": 1}}
    failures = {f["track_id"]: f["error"] for f in st["tracks"]["failures"]}
    assert "missing on disk" in failures["000002"] and "000/000002.mp3" in failures["000002"]
    assert "cannot decode audio" in failures["000013"]
    assert st["features"].get("audio") == 3

    from whypop.store import RunStore

    store = RunStore(run)
    assert {t.track_id for t in store.tracks()} == {"000002", "000010", "000011", "000012", "000013"}
    t11 = store.track("000011")
    assert (t11.split, t11.title, t11.artist, t11.genre) == ("validation", "Freeway, again", "Kurt Vile", "Pop")
    assert store.track("000010").split == "training" and store.track("000012").split == "test"
    for tid in ("000010", "000011", "000012"):
        _check_png(store.spectrogram_path(tid))
    features = store.features("audio")
    assert set(features) == {"000010", "000011", "000012"} and "loudness" in features["000010"]
    store.close()


def test_fma_missing_metadata_columns_is_a_clear_error(tmp_path, audio_fixtures):
    header = ",artist,set,track\n,name,subset,genre_top\ntrack_id,,,\n"
    audio_dir, meta = _fma(tmp_path, audio_fixtures, header + "10,Kurt Vile,small,Pop\n")
    proc = whypop("prepare", audio_dir, "--metadata", meta, "--run", tmp_path / "run", check=False)
    assert proc.returncode == 1
    assert "lacks the columns set/split" in proc.stderr and "Traceback" not in proc.stderr


def test_fma_single_header_row_is_a_clear_error(tmp_path, audio_fixtures):
    audio_dir, meta = _fma(tmp_path, audio_fixtures, "track_id,genre_top,split,subset\n10,Pop,training,small\n")
    proc = whypop("prepare", audio_dir, "--metadata", meta, "--run", tmp_path / "run", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "tracks.csv" in proc.stderr


def test_fma_with_nothing_usable_is_a_clear_error(tmp_path, audio_fixtures):
    rows = "2,A,B,training,small,Pop,Gone\n13,Junk,Nobody,training,small,Rock,Broken\n"
    audio_dir, meta = _fma(tmp_path, audio_fixtures, FMA_HEADER + rows)
    proc = whypop("prepare", audio_dir, "--metadata", meta, "--run", tmp_path / "run", *NO_FEATURES, check=False)
    assert proc.returncode == 1 and "nothing usable" in proc.stderr


def test_fma_without_metadata_folder_is_a_clear_error(tmp_path, audio_fixtures):
    audio_dir, _ = _fma(tmp_path, audio_fixtures, FMA_HEADER + FMA_ROWS)
    proc = whypop("prepare", audio_dir, "--layout", "fma", "--run", tmp_path / "run", check=False)
    assert proc.returncode == 1 and "--metadata" in proc.stderr


# -- the demo collection -----------------------------------------------------------------------


@pytest.mark.slow  # generates and prepares a demo collection
@pytest.mark.skipif(importlib.util.find_spec("whypop.demo") is None, reason="whypop/demo.py (the generator) not written yet")
def test_demo_collection_prepares(tmp_path):
    run = tmp_path / "demo"
    whypop("prepare", "--demo", "--run", run, "--config", "demo", "--set", "demo.clips_per_genre=5",
           "--workers", "1", *NO_FEATURES)
    st = status(run)
    assert st["tracks"]["ok"] == 20 and st["tracks"]["failed"] == 0
    assert len(st["tracks"]["per_genre"]) == 4
    assert st["planted_regions"] >= 20, "every clip records where its signature sits"
    from whypop.store import RunStore

    store = RunStore(run)
    size = store.stored_config().audio.image_size
    t = store.tracks()[0]
    with Image.open(store.path(t.spectrogram)) as im:
        assert im.mode == "L" and im.size == (size, size)
    store.close()


def test_fma_rows_without_a_usable_id_are_skipped_with_a_warning(tmp_path, audio_fixtures):
    from whypop.config import DatasetConfig
    from whypop.datasets import read_fma

    rows = FMA_ROWS + "abc,X,Y,training,small,Pop,No id\n10,Dup,Dup,test,small,Rock,Again\n"
    audio_dir, meta = _fma(tmp_path, audio_fixtures, FMA_HEADER + rows)
    col = read_fma(audio_dir, meta, DatasetConfig())
    tracks = {t.track_id: t for t in col.tracks}
    assert set(tracks) == {"000010", "000011", "000012", "000013"}
    assert (tracks["000010"].genre, tracks["000010"].split) == ("Pop", "training"), "the first row is kept"
    assert [t.track_id for t, _ in col.missing] == ["000002"]
    assert any("integer track_id" in w for w in col.warnings)
    assert any("repeated track_id" in w for w in col.warnings)
    limited = read_fma(audio_dir, meta, DatasetConfig(max_tracks=1))
    assert len(limited.tracks) + len(limited.missing) == 3  # the first Hip-Hop, Pop and Rock track
