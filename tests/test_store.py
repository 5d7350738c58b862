"""The run store: schema, WAL, versions, atomic models and extractions, safe ids and paths."""

from __future__ import annotations

import sqlite3

import pytest

from whypop.errors import NotFound, StoreError
from whypop.store import DB_NAME, SCHEMA_VERSION, RunStore, Track

HOSTILE_IDS = ["../../etc/passwd", "1 OR 1=1", "'; DROP TABLE tracks; --", "", "nan", "-1", "1e3", "\x00"]


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run", create=True)
    s.upsert_tracks([Track("a", "rock", "training", "rock/a.mp3"), Track("b", "jazz", "test", "jazz/b.mp3")])
    yield s
    s.close()


def test_schema_created_and_wal_on(store):
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "tracks", "planted", "features", "models", "extractions", "concepts", "patches", "jobs"} <= tables
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    for sub in ("spectrograms", "model", "extractions", "cache"):
        assert (store.root / sub).is_dir()


def test_reopening_keeps_the_data(store):
    again = RunStore(store.root)
    assert [t.track_id for t in again.tracks()] == ["b", "a"]  # ordered by genre, then id
    again.close()


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path):
    root = tmp_path / "run"
    RunStore(root, create=True).close()
    con = sqlite3.connect(root / DB_NAME)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 5),))
    con.commit()
    con.close()
    with pytest.raises(StoreError) as err:
        RunStore(root)
    assert str(SCHEMA_VERSION + 5) in str(err.value) and str(SCHEMA_VERSION) in str(err.value)
    assert "newer" in str(err.value)


def test_a_missing_store_without_create_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        RunStore(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_prepared_track_keeps_its_result_on_re_registration(store):
    store.write_bytes_atomic("spectrograms/a.png", b"png")
    store.record_track_result("a", ok=True, duration=2.0, sample_rate=44100, channels=2, spectrogram="spectrograms/a.png")
    store.upsert_tracks([Track("a", "rock", "validation", "rock/a.mp3", title="A")])
    t = store.track("a")
    # the split never moves (a re-listing may disagree: the stored one wins), the title updates
    assert (t.status, t.spectrogram, t.split, t.title) == ("ok", "spectrograms/a.png", "training", "A")
    assert not list((store.root / "spectrograms").glob(".tmp-*")), "no temporary files left behind"


def test_failed_tracks_show_in_status(store):
    store.record_track_result("b", ok=False, error="cannot decode audio: corrupt")
    st = store.status()
    assert st["tracks"]["failed"] == 1
    assert st["tracks"]["failures"] == [
        {"track_id": "b", "genre": "jazz", "source": "jazz/b.mp3", "error": "cannot decode audio: corrupt"}
    ]


# -- atomic models and extractions -----------------------------------------------------------


def test_model_completion_is_atomic(store):
    mid, partial = store.begin_model("resnet18", {"lr": 1e-3})
    assert partial.is_dir() and partial.name.endswith(".partial")
    assert store.current_model() is None, "a running model is not visible"
    (partial / "weights.pt").write_bytes(b"w")
    final = store.complete_model(mid, {"accuracy": {"test": 0.5}})
    assert not partial.exists() and (final / "weights.pt").is_file()
    assert store.current_model()["model_id"] == mid

    mid2, partial2 = store.begin_model("resnet18", {})
    (partial2 / "weights.pt").write_bytes(b"half")
    store.fail_model(mid2, "interrupted")
    assert not partial2.exists()
    assert store.current_model()["model_id"] == mid, "the failed model does not replace the complete one"
    assert [m["status"] for m in store.models()] == ["complete", "failed"]


def _concept(cid: int, genre: str = "rock") -> dict:
    return {"concept_id": cid, "genre": genre, "name": f"{genre} concept {cid}", "tcav_mean": 0.7,
            "tcav_std": 0.1, "p_value": 0.001, "significant": True, "n_patches": 3}


def _patch(cid: int, rank: int) -> dict:
    return {"concept_id": cid, "rank": rank, "track_id": "a", "x0": 0, "y0": 0, "x1": 10, "y1": 10}


def test_extraction_completion_is_atomic_and_failure_keeps_the_previous(store):
    eid, partial = store.begin_extraction({"k": 1}, "v1", model_id=None)
    (partial / "cavs.npy").write_bytes(b"1")
    with pytest.raises(NotFound):
        store.extraction()  # nothing complete yet
    store.complete_extraction(eid, [_concept(0)], [_patch(0, 0)], {"total": 1.0}, {})
    done = store.extraction()
    assert done["extraction_id"] == eid and done["status"] == "complete"
    assert (store.root / "extractions" / str(eid) / "cavs.npy").read_bytes() == b"1"

    eid2, partial2 = store.begin_extraction({"k": 2}, "v1", model_id=None)
    assert partial2.is_dir()
    (partial2 / "cavs.npy").write_bytes(b"2")
    assert store.extraction()["extraction_id"] == eid, "a running extraction is not the latest"
    store.fail_extraction(eid2, "killed")
    assert not partial2.exists()
    rows = {e["extraction_id"]: e for e in store.extractions(status=None)}
    assert rows[eid2]["status"] == "failed" and rows[eid2]["error"] == "killed"
    assert store.extraction()["extraction_id"] == eid
    assert (store.root / "extractions" / str(eid) / "cavs.npy").read_bytes() == b"1"
    assert [c["concept_id"] for c in store.concepts(eid)] == [0]
    assert store.concepts(eid2) == [] and store.patches(eid2) == []
    with pytest.raises(NotFound):
        store.extraction(eid2)


def test_completing_without_a_partial_directory_is_an_error(store):
    eid, partial = store.begin_extraction({}, "v1", model_id=None)
    partial.rmdir()
    with pytest.raises(StoreError, match="no partial directory"):
        store.complete_extraction(eid, [], [], {}, {})


# -- ids and paths come from the store ------------------------------------------------------


@pytest.mark.parametrize(
    "relative", ["../outside.png", "spectrograms/../../outside.png", "/etc/passwd", "spectrograms/../../../etc/passwd"]
)
def test_path_refuses_to_leave_the_run(store, relative):
    with pytest.raises(NotFound, match="outside"):
        store.path(relative)


def test_path_refuses_a_symlink_out_of_the_run(store, tmp_path):
    (store.root / "spectrograms" / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(NotFound):
        store.path("spectrograms/link.png")


def test_path_resolves_inside_the_run(store):
    assert store.path("spectrograms/a.png") == store.root / "spectrograms" / "a.png"


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_unknown_track_ids_are_not_found(store, bad):
    with pytest.raises(NotFound):
        store.track(bad)
    with pytest.raises(NotFound):
        store.spectrogram_path(bad)
    with pytest.raises(NotFound):
        store.audio_path(bad)
    assert store.tracks(genre=bad) == []


@pytest.mark.parametrize("bad", HOSTILE_IDS + [None, "1.5", 99])
def test_unknown_extraction_and_concept_ids_are_not_found(store, bad):
    eid, _ = store.begin_extraction({}, "v1", model_id=None)
    store.complete_extraction(eid, [_concept(0)], [], {}, {})
    if bad is not None:
        with pytest.raises(NotFound):
            store.extraction(bad)
    with pytest.raises(NotFound):
        store.concept(eid, bad if bad is not None else "none")
    assert len(store.tracks()) == 2, "nothing was dropped"


def test_spectrogram_of_a_failed_track_is_not_found(store):
    store.record_track_result("a", ok=False, error="corrupt")
    with pytest.raises(NotFound, match="corrupt"):
        store.spectrogram_path("a")


@pytest.mark.parametrize("bad", HOSTILE_IDS + [None])
def test_hostile_extraction_ids_in_concept_lookups_are_not_found(store, bad):
    with pytest.raises(NotFound):
        store.concept(bad, 0)
    for lookup in (lambda: store.concepts(bad), lambda: store.patches(bad), lambda: store.patches(1, concept_id=bad)):
        try:
            assert lookup() == [], "a well-formed unknown id lists nothing"
        except NotFound:
            pass  # anything else (ValueError, TypeError) would be a 500 in the app
