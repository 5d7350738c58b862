"""Background jobs recorded in the run store: one extraction job per run at a time.

A job row is claimed in one write transaction: if a live job exists, the caller joins it
(sees its progress) instead of starting a rival. The process running a job writes a
heartbeat with every progress report; a job whose heartbeat stopped (its process was
killed, even with SIGKILL, on this or another machine) is marked failed by the next
claim, and its partial extraction is removed, so the next job starts cleanly and the
previous extractions stay intact. The runner is the same stage code as ``whypop
extract``; the Dash background callback (diskcache or Celery) only calls
:func:`run_extraction_job`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from whypop.errors import ConfigError, NotFound, WhypopError
from whypop.store import RunStore

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 30.0  # no heartbeat for this long: the process is gone


@dataclass(frozen=True)
class Claim:
    job_id: str
    created: bool  # False: an existing live job was joined


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def is_stale(job: dict, now: float | None = None) -> bool:
    """A queued/running job whose process is gone."""
    now = time.time() if now is None else now
    if job["status"] not in ACTIVE:
        return False
    if job["status"] == "running" and job.get("host") == _host() and job.get("pid") and not _pid_alive(job["pid"]):
        return True
    last = job.get("heartbeat") or job.get("started") or job["created"]
    return now - last > STALE_SECONDS


def reap_stale(store: RunStore) -> list[str]:
    """Mark dead jobs failed and remove their partial extractions; returns their ids."""
    reaped = []
    for job in store.jobs():
        if is_stale(job):
            _finish(store, job["job_id"], "failed", error="the job's process stopped (killed or crashed)")
            reaped.append(job["job_id"])
    return reaped


def claim(store: RunStore, kind: str, params: dict, started_by: str = "") -> Claim:
    """Start a new job, or join the live one: never two at once per run."""
    reap_stale(store)
    with store.transaction() as db:
        row = db.execute(
            "SELECT job_id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created LIMIT 1"
        ).fetchone()
        if row is not None:
            return Claim(row[0], created=False)
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        db.execute(
            """INSERT INTO jobs (job_id, kind, status, params, started_by, created, heartbeat, stage, progress)
               VALUES (?, ?, 'queued', ?, ?, ?, ?, 'queued', 0)""",
            (job_id, kind, json.dumps(params), started_by, now, now),
        )
    return Claim(job_id, created=True)


def get(store: RunStore, job_id: str) -> dict:
    for job in store.jobs():
        if job["job_id"] == job_id:
            return job
    raise NotFound(f"unknown job id {job_id!r}")


def request_cancel(store: RunStore, job_id: str) -> None:
    """Ask a job to stop at its next progress report."""
    with store.transaction() as db:
        db.execute("UPDATE jobs SET cancel_requested=1 WHERE job_id=? AND status IN ('queued','running')", (job_id,))


def _finish(store: RunStore, job_id: str, status: str, error: str | None = None, extraction_id: int | None = None) -> None:
    with store.transaction() as db:
        db.execute(
            """UPDATE jobs SET status=?, error=?, finished=?, extraction_id=COALESCE(?, extraction_id)
               WHERE job_id=? AND status IN ('queued', 'running')""",
            (status, error, time.time(), extraction_id, job_id),
        )
    if status != "complete":
        for ex in store.extractions(status="running"):
            if ex["job_id"] == job_id:
                store.fail_extraction(ex["extraction_id"], error or status, status="cancelled" if status == "cancelled" else "failed")


def validate_params(store: RunStore, params: dict[str, Any]):
    """The run's configuration with the job's extract parameters applied (ConfigError if bad)."""
    from whypop.config import Config, merge

    stored = store.get_meta("config")
    cfg = merge(Config(), stored, origin="stored config") if stored else Config()
    extract = {k: v for k, v in params.items() if k != "genres"}
    cfg = merge(cfg, {"extract": extract}, origin="job parameters").validate()
    genres = params.get("genres") or None
    if genres:
        known = set(store.genres())
        unknown = [g for g in genres if g not in known]
        if unknown:
            raise ConfigError(f"unknown genres {unknown}; the run has {sorted(known)}")
    return cfg, genres


_RANDOM_STEPS = ("loading", "patches", "activations")
_GENRE_STEPS = ("loading", "segments", "activations", "gradients", "CAVs")


def overall_fraction(stage: str, done: int, total: int, genres: list[str]) -> float | None:
    """How far a whole extraction is, from one stage's progress (None for an unknown stage).

    The random sets, each genre and the summary count as equal parts, and within a part
    each of its steps too: a rough but steady measure (one bar from 0 to 100% rather
    than one that starts over at every stage).
    """
    parts = len(genres) + 2
    head, _, step = stage.partition(": ")
    within = min(1.0, done / total) if total else 0.0
    if stage == "summary":
        part, steps = parts - 1, ("summary",)
        step = "summary"
    elif head == "random sets":
        part, steps = 0, _RANDOM_STEPS
    elif head in genres:
        part, steps = 1 + genres.index(head), _GENRE_STEPS
    else:
        return None
    i = steps.index(step) if step in steps else 0
    return (part + (i + within) / len(steps)) / parts


def run_extraction_job(
    store: RunStore,
    job_id: str,
    report: Callable[[str, float], None] | None = None,
) -> int:
    """Run a claimed extraction job in this process; returns the new extraction id.

    ``report(stage, fraction)`` is called with every progress step (the Dash progress
    bar): ``stage`` names the step and its count ("Rock: activations 120/430"),
    ``fraction`` is the whole job's progress (:func:`overall_fraction`). Cancellation comes through :func:`request_cancel` (any process) or by killing
    this process (the next claim reaps it).
    """
    import pipelines.extract
    from whypop.errors import Cancelled

    job = get(store, job_id)
    with store.transaction() as db:
        db.execute(
            "UPDATE jobs SET status='running', started=?, heartbeat=?, pid=?, host=?, stage='starting' WHERE job_id=? AND status='queued'",
            (time.time(), time.time(), os.getpid(), _host(), job_id),
        )
    state = {"stage": "starting", "fraction": 0.0, "last": 0.0}
    lock = threading.Lock()

    def beat(force: bool = False) -> None:
        now = time.time()
        if not force and now - state["last"] < 0.5:
            return
        state["last"] = now
        with store.transaction() as db:
            db.execute(
                "UPDATE jobs SET heartbeat=?, stage=?, progress=? WHERE job_id=?",
                (now, state["stage"], state["fraction"], job_id),
            )

    stop = threading.Event()

    def heartbeat_loop() -> None:  # keeps the job alive through long steps without progress
        while not stop.wait(HEARTBEAT_SECONDS):
            with lock:
                try:
                    beat(force=True)
                except Exception:  # noqa: BLE001 - the heartbeat must never kill the job
                    log.debug("heartbeat failed", exc_info=True)

    def progress(stage: str, done: int, total: int) -> None:
        overall = overall_fraction(stage, done, total, job_genres)
        with lock:
            state["stage"] = f"{stage} {done}/{total}" if total else stage
            if overall is not None:  # never backwards
                state["fraction"] = max(state["fraction"], overall)
            beat()
        if report:
            report(stage, state["fraction"])

    def cancel() -> bool:
        row = store.db.execute("SELECT cancel_requested FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    thread = threading.Thread(target=heartbeat_loop, daemon=True)
    thread.start()
    job_genres: list[str] = list(job["params"].get("genres") or store.genres())
    try:
        cfg, genres = validate_params(store, job["params"])
        extraction_id = pipelines.extract.run(cfg, store, progress, genres=genres, job_id=job_id, cancel=cancel)
    except Cancelled:
        stop.set()
        _finish(store, job_id, "cancelled", error="cancelled by the user")
        raise
    except WhypopError as exc:
        stop.set()
        _finish(store, job_id, "failed", error=str(exc))
        raise
    except BaseException as exc:
        stop.set()
        _finish(store, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        raise
    stop.set()
    _finish(store, job_id, "complete", extraction_id=extraction_id)
    with store.transaction() as db:
        db.execute("UPDATE jobs SET stage='done', progress=1 WHERE job_id=?", (job_id,))
    return extraction_id


def wait(store: RunStore, job_id: str, report: Callable[[str, float], None] | None = None, poll: float = 0.5, timeout: float | None = None) -> dict:
    """Follow a job run elsewhere until it ends (a joined request shows its progress)."""
    start = time.time()
    while True:
        job = get(store, job_id)
        if job["status"] not in ACTIVE:
            return job
        if is_stale(job):
            reap_stale(store)
            continue
        if report:
            report(job.get("stage") or "queued", float(job.get("progress") or 0.0))
        if timeout is not None and time.time() - start > timeout:
            return job
        time.sleep(poll)
