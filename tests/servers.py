"""Servers and a browser for the end-to-end tests (test_browser, test_jobs_browser, test_celery).

Real components started the way users start them: gunicorn with the Procfile's config,
headless Debian Chromium through Playwright (never `playwright install`), and helpers to
stop a process with everything it started (a background job forked by a gunicorn worker
must not outlive the test).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import need_tool

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian Chromium (one per test module)."""
    path = need_tool("chromium", "the browser tests drive headless Chromium")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """A werkzeug server for a Flask app in a background thread."""

    def __init__(self, wsgi_app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(10)


def _wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_gunicorn(run: Path, prefix: str, log: Path, workers: int = 2,
                   env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """gunicorn with config/gunicorn.conf.py (the Procfile's web line) on a free port; ``env`` adds variables."""
    port = _free_port()
    full_env = {**os.environ, "WHYPOP_RUN": str(run), "WHYPOP_PREFIX": prefix, "WHYPOP_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(workers), "WHYPOP_SECRET_KEY": "browser-test", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "config" / "gunicorn.conf.py"),
         "whypop.app.server:create_server()"],
        cwd=REPO, env=full_env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_for_children(proc: subprocess.Popen, n: int, timeout: float = 30) -> list:
    """The direct children of ``proc`` (psutil processes) once there are ``n`` (gunicorn's workers)."""
    import psutil

    deadline = time.monotonic() + timeout
    while len(psutil.Process(proc.pid).children()) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return psutil.Process(proc.pid).children()


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stop_process_tree(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and then every process it started (e.g. background jobs forked by gunicorn workers)."""
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    stop_process(proc)
    for child in descendants:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(descendants, timeout=10)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
