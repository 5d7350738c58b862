"""Background jobs recorded in the run store: one extraction job per run at a time.

A job row is claimed in one write transaction: if a live job exists, the caller joins it
(sees its progress) instead of starting a rival. The process running a job writes a
heartbeat with every progress report; a job whose heartbeat stopped (its process was
killed, even with SIGKILL, on this or another machine) is marked failed by the next
claim, and its partial extraction is removed, so the next job starts cleanly and the
previous extractions stay intact. The runner is the same stage code as ``whypop
extract``; the Dash background callback (diskcache or Celery) only calls
:func:`run_extraction_job`. A job's progress is stored as typed columns (stage, step,
genre, done, total, fraction: :class:`whypop.results.JobProgress`).
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

import pipelines.extract
from pipelines.evaluate import PLACE_STEP
from pipelines.evaluate import STAGE as EVALUATE_STAGE
from whypop.ace.extractor import GENRE_STEPS, RANDOM_STEPS, SUMMARY_STEP
from whypop.config import Config, resolve_config
from whypop.errors import Cancelled, ConfigError, NotFound, WhypopError
from whypop.progress import ProgressEvent
from whypop.results import JobProgress
from whypop.store import RunStore

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 30.0  # no heartbeat for this long: the process is gone

Report = Callable[[JobProgress], None]


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


def validate_params(store: RunStore, params: dict[str, Any]) -> tuple[Config, list[str] | None]:
    """The run's configuration with the job's extract parameters applied (ConfigError if bad).

    The same precedence as the command line (:func:`whypop.config.resolve_config`): the
    stored configuration, ``WHYPOP_CONFIG``, then the job's parameters.
    """
    extract = {k: v for k, v in params.items() if k != "genres"}
    cfg = resolve_config(stored=store.get_meta("config"), sections={"extract": extract} if extract else None)
    genres = params.get("genres") or None
    if genres:
        known = set(store.genres())
        unknown = [g for g in genres if g not in known]
        if unknown:
            raise ConfigError(f"unknown genres {unknown}; the run has {sorted(known)}")
    return cfg, genres


EVALUATE_SHARE = 1 / 3  # of a job's bar, when the deletion tests follow the extraction


def overall_fraction(event: ProgressEvent, genres: list[str], evaluate: bool = False) -> float | None:
    """How far a whole extraction is, from one step's progress (None for an unknown step).

    The random sets, each genre and the summary count as equal parts, and within a part
    each of its steps too: a rough but steady measure (one bar from 0 to 100% rather
    than one that starts over at every step). With ``evaluate`` (the deletion tests
    follow the extraction), they take the last :data:`EVALUATE_SHARE` of the bar, a part
    per genre: placing its concepts, then its tests.
    """
    if event.stage == EVALUATE_STAGE:
        if not evaluate or event.genre not in genres:
            return None
        within = 0.5 * event.fraction if event.step == PLACE_STEP else 0.5 + 0.5 * event.fraction
        return 1 - EVALUATE_SHARE + EVALUATE_SHARE * (genres.index(event.genre) + within) / len(genres)
    extraction = _extraction_fraction(event, genres)
    if extraction is None or not evaluate:
        return extraction
    return (1 - EVALUATE_SHARE) * extraction


def _extraction_fraction(event: ProgressEvent, genres: list[str]) -> float | None:
    parts = len(genres) + 2
    if event.step == SUMMARY_STEP:
        part, steps = parts - 1, (SUMMARY_STEP,)
    elif event.genre is None and event.step in RANDOM_STEPS:
        part, steps = 0, RANDOM_STEPS
    elif event.genre in genres and event.step in GENRE_STEPS:
        part, steps = 1 + genres.index(event.genre), GENRE_STEPS
    else:
        return None
    return (part + (steps.index(event.step) + event.fraction) / len(steps)) / parts


def _write_progress(db, job_id: str, p: JobProgress, heartbeat: float | None = None) -> None:
    db.execute(
        "UPDATE jobs SET heartbeat=COALESCE(?, heartbeat), stage=?, step=?, genre=?, done=?, total=?, progress=? "
        "WHERE job_id=?",
        (heartbeat, p.stage, p.step, p.genre, p.done, p.total, p.fraction, job_id),
    )


def run_extraction_job(
    store: RunStore,
    job_id: str,
    report: Report | None = None,
) -> int:
    """Run a claimed extraction job in this process; returns the new extraction id.

    ``report(progress)`` is called with every progress step (the Dash progress bar):
    a :class:`JobProgress` naming the step, its count and the whole job's fraction
    (:func:`overall_fraction`). Cancellation comes through :func:`request_cancel` (any
    process) or by killing this process (the next claim reaps it).
    """
    job = get(store, job_id)
    with store.transaction() as db:
        db.execute(
            "UPDATE jobs SET status='running', started=?, heartbeat=?, pid=?, host=?, stage='starting' WHERE job_id=? AND status='queued'",
            (time.time(), time.time(), os.getpid(), _host(), job_id),
        )
    state = {"progress": JobProgress("starting"), "last": 0.0}
    lock = threading.Lock()

    def beat(force: bool = False) -> None:
        now = time.time()
        if not force and now - state["last"] < 0.5:
            return
        state["last"] = now
        with store.transaction() as db:
            _write_progress(db, job_id, state["progress"], heartbeat=now)

    stop = threading.Event()
    evaluate = {"on": False}  # set once the job's configuration is read

    def heartbeat_loop() -> None:  # keeps the job alive through long steps without progress
        while not stop.wait(HEARTBEAT_SECONDS):
            with lock:
                try:
                    beat(force=True)
                except Exception:  # noqa: BLE001 - the heartbeat must never kill the job
                    log.debug("heartbeat failed", exc_info=True)

    def progress(event: ProgressEvent) -> None:
        overall = overall_fraction(event, job_genres, evaluate["on"])
        with lock:
            previous = state["progress"].fraction
            fraction = previous if overall is None else max(previous, overall)  # never backwards
            state["progress"] = JobProgress.from_event(event, fraction)
            beat()
        if report:
            report(state["progress"])

    def cancel() -> bool:
        row = store.db.execute("SELECT cancel_requested FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    thread = threading.Thread(target=heartbeat_loop, daemon=True)
    thread.start()
    job_genres: list[str] = list(job["params"].get("genres") or store.genres())
    try:
        cfg, genres = validate_params(store, job["params"])
        evaluate["on"] = bool(cfg.extract.evaluate)
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
        _write_progress(db, job_id, JobProgress("done", fraction=1.0))
    return extraction_id


def wait(store: RunStore, job_id: str, report: Report | None = None, poll: float = 0.5,
         timeout: float | None = None) -> dict:
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
            report(JobProgress.from_row(job))
        if timeout is not None and time.time() - start > timeout:
            return job
        time.sleep(poll)
