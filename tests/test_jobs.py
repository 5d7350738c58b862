"""Job records: one job per run, joining, cancel, and recovery from a killed process."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest

from whypop.app import jobs
from whypop.errors import Cancelled, ConfigError
from whypop.progress import ProgressEvent
from whypop.store import RunStore


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run", create=True)
    yield s
    s.close()


def fake_extract(hold: float = 0.0, fail: bool = False):
    """A stand-in for pipelines.extract.run with its contract (partial dir, cancel, progress)."""

    def run(cfg, store, progress=None, *, genres=None, job_id=None, cancel=None):
        eid, partial = store.begin_extraction({"fake": True}, "test", None, job_id=job_id)
        (partial / "arrays.npz").write_bytes(b"x")
        end = time.time() + hold
        step = 0
        while True:
            step += 1
            if progress:
                progress(ProgressEvent("extract", "clustering", min(step, 10), 10))
            if cancel and cancel():
                store.fail_extraction(eid, "cancelled", status="cancelled")
                raise Cancelled("cancelled")
            if time.time() >= end:
                break
            time.sleep(0.05)
        if fail:
            raise RuntimeError("boom")
        store.complete_extraction(eid, [], [], {"total": hold}, {"genres": {}})
        return eid

    return run


def test_claim_joins_live_job(store):
    a = jobs.claim(store, "extract", {"n_clusters": 5}, "tab-1")
    b = jobs.claim(store, "extract", {"n_clusters": 7}, "tab-2")
    assert a.created and not b.created
    assert a.job_id == b.job_id
    assert len(store.jobs()) == 1


def test_job_runs_and_records(store, monkeypatch):
    import pipelines.extract

    monkeypatch.setattr(pipelines.extract, "run", fake_extract())
    claim = jobs.claim(store, "extract", {}, "me")
    seen = []
    eid = jobs.run_extraction_job(store, claim.job_id, report=seen.append)
    job = jobs.get(store, claim.job_id)
    assert job["status"] == "complete" and job["extraction_id"] == eid
    assert store.extraction()["extraction_id"] == eid
    assert seen and seen[-1].step == "clustering" and seen[-1].text == "clustering 1/10"
    assert (job["stage"], job["step"], job["progress"]) == ("done", None, 1.0)
    # a finished job no longer blocks a new one
    assert jobs.claim(store, "extract", {}, "me").created


def test_failed_job_keeps_previous_extraction(store, monkeypatch):
    import pipelines.extract

    monkeypatch.setattr(pipelines.extract, "run", fake_extract())
    first = jobs.run_extraction_job(store, jobs.claim(store, "extract", {}).job_id)
    monkeypatch.setattr(pipelines.extract, "run", fake_extract(fail=True))
    claim = jobs.claim(store, "extract", {})
    with pytest.raises(RuntimeError):
        jobs.run_extraction_job(store, claim.job_id)
    job = jobs.get(store, claim.job_id)
    assert job["status"] == "failed" and "boom" in job["error"]
    assert store.extraction()["extraction_id"] == first
    assert not list((store.root / "extractions").glob("*.partial"))


def test_cancel_request(store, monkeypatch):
    import pipelines.extract

    monkeypatch.setattr(pipelines.extract, "run", fake_extract(hold=30))
    claim = jobs.claim(store, "extract", {})
    jobs.request_cancel(store, claim.job_id)
    with pytest.raises(Cancelled):
        jobs.run_extraction_job(store, claim.job_id)
    assert jobs.get(store, claim.job_id)["status"] == "cancelled"
    assert store.extractions(status="cancelled")
    assert not list((store.root / "extractions").glob("*.partial"))


def test_bad_parameters_rejected(store):
    with pytest.raises(ConfigError, match="n_clusters"):
        jobs.validate_params(store, {"n_clusters": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        jobs.validate_params(store, {"no_such_thing": 1})


def _child(root: str, job_id: str) -> None:
    import pipelines.extract

    pipelines.extract.run = fake_extract(hold=60)
    jobs.run_extraction_job(RunStore(root), job_id)


def test_sigkill_mid_job_is_reaped(store, monkeypatch):
    import pipelines.extract

    claim = jobs.claim(store, "extract", {})
    proc = mp.get_context("fork").Process(target=_child, args=(str(store.root), claim.job_id))
    proc.start()
    deadline = time.time() + 30
    while time.time() < deadline and jobs.get(store, claim.job_id)["status"] != "running":
        time.sleep(0.05)
    while time.time() < deadline and not list((store.root / "extractions").glob("*.partial")):
        time.sleep(0.05)
    assert list((store.root / "extractions").glob("*.partial")), "the job never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    # the next request reaps the dead job and starts cleanly
    nxt = jobs.claim(store, "extract", {})
    assert nxt.created and nxt.job_id != claim.job_id
    dead = jobs.get(store, claim.job_id)
    assert dead["status"] == "failed" and "stopped" in dead["error"]
    assert not list((store.root / "extractions").glob("*.partial"))
    monkeypatch.setattr(pipelines.extract, "run", fake_extract())
    eid = jobs.run_extraction_job(store, nxt.job_id)
    assert store.extraction()["extraction_id"] == eid


def test_overall_fraction_runs_once_from_0_to_1():
    genres = ["Hats", "Kick"]
    steps = [("random loading", None, 60), ("random patches", None, 60), ("random activations", None, 60)]
    for g in genres:
        steps += [("loading", g, 12), ("segments", g, 12), ("activations", g, 430), ("gradients", g, 8), ("CAVs", g, 900)]
    steps += [("summary", None, 1)]
    seen = [jobs.overall_fraction(ProgressEvent("extract", step, done, total, genre), genres)
            for step, genre, total in steps for done in range(0, total + 1, max(1, total // 7))]
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)  # one bar from 0 to 100%, never starting over
    assert jobs.overall_fraction(ProgressEvent("extract", "clustering", 1, 2), genres) is None  # unknown step
    assert jobs.overall_fraction(ProgressEvent("extract", "CAVs", 900, 900, "Kick"), genres) == 3 / 4
    assert jobs.overall_fraction(ProgressEvent("extract", "CAVs", 900, 900, "Polka"), genres) is None


def test_overall_fraction_leaves_the_last_third_to_the_deletion_tests():
    genres = ["Hats", "Kick"]
    last_extract = jobs.overall_fraction(ProgressEvent("extract", "summary", 1, 1), genres, evaluate=True)
    assert last_extract == pytest.approx(1 - jobs.EVALUATE_SHARE)
    steps = [(step, g, 10) for g in genres for step in ("placing concepts", "deletion and insertion")]
    seen = [jobs.overall_fraction(ProgressEvent("evaluate", step, done, total, genre), genres, evaluate=True)
            for step, genre, total in steps for done in range(total + 1)]
    assert seen == sorted(seen) and seen[0] >= last_extract and seen[-1] == pytest.approx(1.0)
    assert jobs.overall_fraction(ProgressEvent("evaluate", "placing concepts", 1, 2, "Kick"), genres) is None


SMALL_JOB = {"genres": ["Hats"], "discovery_images": 4, "random_experiments": 4, "n_clusters": 8, "segments": [10, 15]}


@pytest.mark.slow
def test_sigkill_mid_real_extraction_keeps_the_store_consistent(demo_run, tmp_path):
    """A real extraction (the stage code of `whypop extract`) killed with SIGKILL mid-way."""
    import subprocess
    import sys

    from jobs_form import copy_run
    from whypop.app.data import AppData

    root = copy_run(demo_run, tmp_path / "run")
    store = RunStore(root)
    before = [e["extraction_id"] for e in store.extractions()]
    claim = jobs.claim(store, "extract", {**SMALL_JOB, "genres": [], "random_experiments": 40}, "test")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from whypop.app import jobs; from whypop.store import RunStore; "
         "jobs.run_extraction_job(RunStore(sys.argv[1]), sys.argv[2])", str(root), claim.job_id],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and child.poll() is None:
            job = jobs.get(store, claim.job_id)
            if job["step"] == "activations" and job["genre"] and list((root / "extractions").glob("*.partial")):
                break
            time.sleep(0.1)
        assert child.poll() is None, child.stderr.read()
        job = jobs.get(store, claim.job_id)
        assert job["step"] == "activations" and job["genre"], "the job never reached a genre's activations"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    # the next request reaps the killed job, removes its partial data and starts cleanly
    nxt = jobs.claim(store, "extract", SMALL_JOB, "test")
    assert nxt.created and nxt.job_id != claim.job_id
    dead = jobs.get(store, claim.job_id)
    assert dead["status"] == "failed" and "stopped" in dead["error"]
    assert not list((root / "extractions").glob("*.partial"))
    assert [e["extraction_id"] for e in store.extractions()] == before  # earlier results intact
    view = AppData(RunStore(root)).view(before[-1])
    assert view.concepts, "the earlier extraction no longer reads"
    eid = jobs.run_extraction_job(store, nxt.job_id)
    assert jobs.get(store, nxt.job_id)["status"] == "complete"
    assert store.extraction()["extraction_id"] == eid and eid not in before


def test_job_parameters_follow_the_one_precedence(store, monkeypatch):
    """The job path resolves its configuration like the command line: stored < WHYPOP_CONFIG < job."""
    from whypop.config import load_config

    store.set_meta("config", load_config("demo", overrides={"extract.n_clusters": 7}, env=False).to_dict())
    monkeypatch.setenv("WHYPOP_CONFIG", "extract.random_experiments=11,extract.n_clusters=9")
    cfg, genres = jobs.validate_params(store, {"discovery_images": 5})
    assert (cfg.extract.n_clusters, cfg.extract.random_experiments, cfg.extract.discovery_images) == (9, 11, 5)
    cfg, _ = jobs.validate_params(store, {"n_clusters": 4})
    assert cfg.extract.n_clusters == 4 and genres is None
