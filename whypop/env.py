"""The process environment whypop runs in, set in one place before torch loads.

Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``): on a shared
CPU spinning threads slow torch down several times as soon as another process
competes for a core (figures in docs/training.md). Every entry point (the command, the
WSGI server, the Celery worker, the test suite, the benchmarks) calls
:func:`setup_environment` first.
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def setup_environment() -> None:
    """Defaults for this process (an explicit setting in the environment wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def single_threaded() -> None:
    """One thread per worker process, for pools whose processes are the parallelism."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"  # read by torch and BLAS when they are first imported
    torch = sys.modules.get("torch")
    if torch is not None:  # imported before the fork: set it now
        torch.set_num_threads(1)
    try:  # BLAS libraries numpy loaded before the fork
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency, normally present
        return
    threadpool_limits(1)
