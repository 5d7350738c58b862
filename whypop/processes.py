"""Worker processes that end with the process that started them.

A pool's workers wait on a queue whose write end they inherited, so when the main
process is killed (SIGKILL, SIGTERM, an out-of-memory kill) they never see it go and
keep running, each holding its memory and the run's files. :func:`exit_with_parent`,
called in a worker's initializer, starts a watcher thread that ends the worker as soon
as its parent is gone.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """End this process (exit status 1) within ``poll_seconds`` of its parent's death."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:  # re-parented: the process that started us is gone
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
