"""A dead preparation worker (segfault, out-of-memory kill, SIGKILL) never loses the batch.

The pool replaces the worker, retries the track it held once, and records the track as
failed with the signal as its reason when it kills its worker again; the rest completes.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from whypop.store import RunStore
from whypop.workers import Crashed, crash_reason, imap_unordered

REPO = Path(__file__).resolve().parents[1]


def _square_or_die(x: int, marker: str) -> int:
    if x == 3:  # always kills its worker
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 5 and not os.path.exists(marker):  # kills its worker the first time only
        Path(marker).touch()
        faulthandler.disable()  # no traceback dump from pytest's handler: just the signal
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == 7:
        raise ValueError("bad seven")
    return x * x


def test_pool_survives_dead_workers(tmp_path):
    marker = str(tmp_path / "crashed-once")
    jobs = [(x, marker) for x in range(10)]
    results = dict(imap_unordered(_square_or_die, jobs, workers=2))
    assert sorted(results) == list(range(10))
    assert results[3] == Crashed("worker crashed: signal 9 (SIGKILL)")
    assert results[5] == 25  # retried on a new worker after its SIGSEGV
    assert isinstance(results[7], Crashed) and "ValueError: bad seven" in results[7].reason
    assert all(results[x] == x * x for x in range(10) if x not in (3, 7))


def test_crash_reasons():
    assert crash_reason(-11) == "worker crashed: signal 11 (SIGSEGV)"
    assert crash_reason(3) == "worker crashed: exit code 3"


def _folders(tmp_path: Path, fixtures: Path) -> Path:
    """A folder collection of every fixture clip, in two genres."""
    clips = sorted(p for p in fixtures.rglob("*") if p.suffix in (".mp3", ".ogg"))
    assert len(clips) >= 6
    root = tmp_path / "collection"
    for i, clip in enumerate(clips):
        genre = root / ("rock" if i % 2 else "jazz")
        genre.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, genre / f"{i:02d}{clip.suffix}")  # a symlink out of the collection is refused
    return root


@pytest.mark.slow
def test_prepare_records_a_track_that_kills_its_worker(tmp_path, audio_fixtures, monkeypatch):
    from pipelines import prepare
    from whypop.config import load_config
    real = prepare.prepare_one
    victim = "jazz/02"

    def deadly(track_id, path, cfg):
        if track_id.endswith("02"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(track_id, path, cfg)

    monkeypatch.setattr(prepare, "prepare_one", deadly)
    cfg = load_config(overrides={"dataset.audio_features": False, "audio.duration": 5.0}, env=False)
    store = RunStore(tmp_path / "run", create=True)
    counts = prepare.run(cfg, store, _folders(tmp_path, audio_fixtures), "folders", workers=2)
    tracks = store.tracks()
    assert not [t for t in tracks if t.status == "pending"]
    failed = {t.track_id: t.error for t in tracks if t.status == "failed"}
    assert len(failed) == 1 and list(failed.values()) == ["worker crashed: signal 9 (SIGKILL)"], failed
    assert counts.ok == len(tracks) - 1, (victim, counts)


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_run_through_the_cli(tmp_path, audio_fixtures):
    """Kill one real worker of `whypop prepare --workers 2` while it works: exit 0, nothing pending."""
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "whypop.cli", "prepare", str(_folders(tmp_path, audio_fixtures)), "--layout", "folders",
         "--run", str(run), "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    parent = psutil.Process(proc.pid)
    killed = None
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        workers = [c for c in parent.children() if "jitcache" not in " ".join(c.cmdline())]
        if len(workers) >= 2:
            time.sleep(0.5)  # busy with their first tracks
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the run ended before its workers could be seen"
    assert proc.returncode == 0, err[-3000:]
    tracks = RunStore(run).tracks()
    assert tracks and not [t for t in tracks if t.status not in ("ok", "failed")], [(t.track_id, t.status) for t in tracks]
    assert all(t.error for t in tracks if t.status == "failed")
    assert sum(t.status == "ok" for t in tracks) >= len(tracks) - 1  # the killed track is retried once
    assert "retrying it on a new worker" in err, err[-3000:]


class _DeadlyDataset:
    """Items 0..n-1; loading item 5 in a worker process SIGKILLs the worker (once, or always)."""

    def __init__(self, n: int, marker: str | None):
        self.n, self.marker = n, marker

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch

        if i == 5 and torch.utils.data.get_worker_info() is not None:
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return torch.tensor([i])


@pytest.mark.parametrize("always", [False, True])
def test_training_loader_survives_a_dead_worker(tmp_path, always):
    import torch

    from whypop.train import make_loader

    ds = _DeadlyDataset(12, None if always else str(tmp_path / "killed-once"))
    loader = make_loader(ds, 2, torch.device("cpu"), batch_size=2)
    for _ in range(2):  # a second pass (persistent workers) works too
        assert [b.flatten().tolist() for b in loader] == [[2 * k, 2 * k + 1] for k in range(6)]
