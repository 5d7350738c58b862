"""A process pool that survives its workers dying.

``concurrent.futures.ProcessPoolExecutor`` breaks for good when one worker dies (a
segfault in a native library, the kernel's out-of-memory killer, SIGKILL): every
pending future then raises ``BrokenProcessPool`` and the whole batch is lost. Here each
worker holds one job at a time, so when a worker dies the pool knows which job it held:
that worker is replaced, the job is retried once on a fresh worker, and if it kills its
worker again it comes back as a :class:`Crashed` result naming the signal. The other
jobs are unaffected.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crashed:
    """A job whose worker died (twice, with the default one retry); ``reason`` says how."""

    reason: str


def crash_reason(exitcode: int | None) -> str:
    """'worker crashed: signal 9 (SIGKILL)' from a process's exit code."""
    if exitcode is None:
        return "worker crashed: no exit status"
    if exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"worker crashed: signal {-exitcode}{name}"
    return f"worker crashed: exit code {exitcode}"


def _worker_main(conn: Connection, fn: Callable, initializer: Callable[[], None] | None) -> None:
    if initializer is not None:
        initializer()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if job is None:
            return
        index, args = job
        try:
            result: Any = fn(*args)
        except Exception as exc:  # a job's error is its result, not the worker's death
            result = Crashed(f"unexpected error: {type(exc).__name__}: {exc}"[:300])
        conn.send((index, result))


class _Worker:
    def __init__(self, ctx, fn: Callable, initializer: Callable[[], None] | None):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, fn, initializer), daemon=True)
        self.process.start()
        child.close()
        self.job: int | None = None

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def imap_unordered(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int,
    initializer: Callable[[], None] | None = None,
    retries: int = 1,
    label: Callable[[int], str] = lambda index: f"job {index}",
) -> Iterator[tuple[int, Any]]:
    """``(index, fn(*jobs[index]))`` for every job, in completion order, from ``workers`` processes.

    A job whose worker dies is retried ``retries`` times on a new worker; after that its
    result is :class:`Crashed`. An exception raised by ``fn`` also comes back as
    :class:`Crashed` (with the exception's text) rather than stopping the batch.
    ``label(index)`` names a job in the warnings.
    """
    if not jobs:
        return
    ctx = multiprocessing.get_context()
    todo = deque(range(len(jobs)))
    deaths = [0] * len(jobs)
    pool = [_Worker(ctx, fn, initializer) for _ in range(max(1, min(workers, len(jobs))))]
    try:
        while True:
            for i, w in enumerate(pool):
                if w.job is None and todo:
                    if not w.process.is_alive():  # died while idle: holds no job, just replace it
                        w.stop()
                        pool[i] = w = _Worker(ctx, fn, initializer)
                    w.job = todo.popleft()
                    try:
                        w.conn.send((w.job, jobs[w.job]))
                    except (OSError, ValueError):  # died while idle: noticed below by its sentinel
                        pass
            busy = [w for w in pool if w.job is not None]
            if not busy:
                return
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for i, w in enumerate(pool):
                if w.job is None or not (w.conn in ready or w.process.sentinel in ready):
                    continue
                message = None
                try:
                    if w.conn.poll():
                        message = w.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    w.job = None
                    yield message
                    continue
                if w.process.is_alive():  # the pipe woke us without a result: look again later
                    w.process.join(0.05)
                    if w.process.is_alive():
                        continue
                job, w.job = w.job, None
                reason = crash_reason(w.process.exitcode)
                w.process.join()
                w.conn.close()
                pool[i] = _Worker(ctx, fn, initializer)
                deaths[job] += 1
                if deaths[job] <= retries:
                    log.warning("%s while working on %s; retrying it on a new worker", reason, label(job))
                    todo.appendleft(job)
                else:
                    log.warning("%s while working on %s again; giving up on it", reason, label(job))
                    yield job, Crashed(reason)
    finally:
        for w in pool:
            w.stop()
