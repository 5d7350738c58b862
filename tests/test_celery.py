"""Re-extraction jobs on a Celery worker (WHYPOP_REDIS_URL set), end to end.

Everything real and started the way the Procfile starts it: a private ``redis-server``, the
Procfile's ``worker:`` line (``celery -A whypop.app.worker:celery_app worker ...``) and its
``web:`` line (gunicorn with config/gunicorn.conf.py, two workers), both with the same
WHYPOP_RUN (a private copy of the demo run) and WHYPOP_REDIS_URL. A headless Chromium
starts one small job from the form: it must run in the Celery worker's process (not in a
web worker), show its progress on the page, and end with a new complete extraction that
the picker offers. Every process is stopped in teardown, also when the test fails.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need_tool
from jobs_form import (completed_id, copy_run, fill_form, follow, job, open_dashboard, picker_options, run_genres,
                       store_state, wait_idle)
from servers import REPO, _free_port, _wait_http, chromium, start_gunicorn, stop_process_tree  # noqa: F401
from servers import wait_for_children

pytestmark = [pytest.mark.redis, pytest.mark.browser, pytest.mark.slow]

PREFIX = "/"


def procfile_command(name: str) -> list[str]:
    """The Procfile's line for ``name``, run with this interpreter (``celery ...`` -> ``python -m celery ...``)."""
    for line in (REPO / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            argv = shlex.split(command)
            return [sys.executable, "-m", argv[0], *argv[1:]]
    raise AssertionError(f"the Procfile has no {name}: line")


def _tail(path: Path, n: int = 6000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server on a free port, without persistence."""
    server = need_tool("redis-server", "the Celery job tests need a Redis broker")
    import redis

    work = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = work / "redis.log"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if redis.Redis.from_url(url, socket_timeout=2).ping():
                    break
            except (redis.ConnectionError, socket.error):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server did not answer on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        stop_process_tree(proc)


@pytest.fixture(scope="module")
def celery_setup(redis_url, request, tmp_path_factory):
    """(run, celery worker process, its log, gunicorn process, page url, gunicorn log)."""
    choice = os.environ.get("WHYPOP_BROWSER_RUN", "")
    source = Path(choice) if choice and Path(choice).is_dir() else request.getfixturevalue("demo_run")
    work = tmp_path_factory.mktemp("celery")
    run = copy_run(source, work / "run")
    env = {**os.environ, "WHYPOP_RUN": str(run), "WHYPOP_REDIS_URL": redis_url}
    worker_log = work / "worker.log"
    worker = subprocess.Popen(
        procfile_command("worker"),
        cwd=REPO, env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT, text=True,
    )
    web_log = work / "gunicorn.log"
    web = None
    try:
        web, base = start_gunicorn(run, PREFIX, web_log, workers=2, env={"WHYPOP_REDIS_URL": redis_url})
        deadline = time.monotonic() + 120
        while " ready." not in _tail(worker_log, 10**6):
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("the Celery worker did not get ready")
            time.sleep(0.2)
        _wait_http(base + PREFIX, web)
        assert len(wait_for_children(web, 2)) == 2
        yield run, worker, worker_log, web, base + PREFIX, web_log
    except BaseException:
        print("celery worker log:\n" + _tail(worker_log))
        print("gunicorn log:\n" + _tail(web_log))
        raise
    finally:
        if web is not None:
            stop_process_tree(web)
        stop_process_tree(worker)


def test_job_runs_on_the_celery_worker(celery_setup, chromium):
    import psutil

    run, worker, worker_log, web, url, web_log = celery_setup
    before = store_state(run)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        open_dashboard(page, url)
        genre = run_genres(run)[0]
        fill_form(page, n_clusters=8, segments="10 15", random_experiments=4, discovery_images=4, genres=[genre])
        page.click(job("start"))
        observed = follow([page])[0]
        new_id = completed_id(observed.result)
        wait_idle(page, stage="done")
        options = picker_options(page)
    except BaseException:
        print("celery worker log:\n" + _tail(worker_log))
        print("gunicorn log:\n" + _tail(web_log))
        raise
    finally:
        context.close()

    # progress reached the page through the Celery result backend
    assert len(set(observed.stages)) >= 3, observed
    assert len(set(observed.progress)) >= 2, observed

    # one job, complete, with one new complete extraction
    after = store_state(run)
    new_jobs = after.new_jobs(before)
    assert [(j["status"], j["extraction_id"]) for j in new_jobs] == [("complete", new_id)], new_jobs
    assert after.complete == before.complete + [new_id]
    assert after.partial == []
    assert any(o.startswith(f"extraction {new_id} ") for o in options), options

    # it ran in the Celery worker (its main process or its pool's child), not in a web process
    ran_in = new_jobs[0]["pid"]
    worker_pids = {worker.pid} | {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
    web_pids = {web.pid} | {p.pid for p in psutil.Process(web.pid).children(recursive=True)}
    assert ran_in in worker_pids and ran_in not in web_pids, (ran_in, worker_pids, web_pids)
    assert new_jobs[0]["host"] == socket.gethostname()
    log = worker_log.read_text(errors="replace")
    assert "background_callback_" in log and "succeeded" in log, _tail(worker_log)

