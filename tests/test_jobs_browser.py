"""Re-extraction jobs from the dashboard, end to end: gunicorn with two workers, headless Chromium.

One server for the module, on a private copy of the demo run (the shared ``demo_run`` is
never written). The jobs are real extractions (the same stage code as ``whypop extract``)
run as Dash background callbacks with the default diskcache manager, so the progress
polls land on either worker. Parameters are kept small (one genre, few random experiments
and discovery images) so a job takes seconds, except for the job that is cancelled.

- cancel: a running job stops at its next step; the job row says cancelled, no extraction
  is added, no partial directory is left, and the previous extraction still loads;
- a job shows its progress (stage text and bar advance) and, when done, its extraction is
  offered in the picker while the page keeps showing the one being viewed; picking it shows it
  (this job follows the cancelled one: a cancel does not block the next job);
- two tabs that click Re-extract at the same time share one job and both report its extraction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from jobs_form import (JS_P1_CONCEPTS, completed_id, concept_ids, copy_run, fill_form, follow, job, job_ui,
                       open_dashboard, pick_extraction, picker_options, picker_value, run_genres, settle, store_state,
                       viewed_concepts, wait_idle, watch_errors)
from servers import _wait_http, chromium, start_gunicorn, stop_process_tree, wait_for_children  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PREFIX = "/lab/whypop/"


def small_job(genre: str) -> dict:
    """A job of a few seconds on the demo run: one genre, 4 discovery images, 4 random experiments."""
    return dict(n_clusters=8, segments="10 15", random_experiments=4, discovery_images=4, genres=[genre])


def long_job(genres: list[str]) -> dict:
    """A job that runs long enough to be cancelled mid-way: every genre, more images and experiments."""
    return dict(n_clusters=20, segments="10 15 25", random_experiments=100, discovery_images=12, genres=genres)


@pytest.fixture(scope="module")
def source_run(request) -> Path:
    """The demo run (or, for quick local iterations, the run directory named by WHYPOP_BROWSER_RUN)."""
    choice = os.environ.get("WHYPOP_BROWSER_RUN", "")
    if choice and Path(choice).is_dir():
        return Path(choice)
    return request.getfixturevalue("demo_run")


@dataclass(frozen=True)
class Served:
    run: Path
    url: str  # the dashboard's page
    log: Path
    genres: tuple[str, ...]


@pytest.fixture(scope="module")
def served(source_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("jobs")
    run = copy_run(source_run, work / "run")
    genres = tuple(run_genres(run))
    log = work / "gunicorn.log"
    proc, base = start_gunicorn(run, PREFIX, log, workers=2)
    try:
        _wait_http(base + PREFIX, proc)
        assert len(wait_for_children(proc, 2)) == 2
        yield Served(run, base + PREFIX, log, genres)
    except BaseException:
        print("gunicorn log:\n" + log.read_text()[-8000:])
        raise
    finally:
        stop_process_tree(proc)


@pytest.fixture()
def server(served):
    """The module's server; after each test no job is left running (isolation if a test failed)."""
    yield served
    settle(served.run)


@pytest.fixture()
def context(chromium):
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx
    ctx.close()


def _dump_log(server: Served) -> None:
    print("gunicorn log:\n" + server.log.read_text()[-8000:])


def test_cancel_stops_the_job_and_keeps_the_previous_extraction(server, context):
    before = store_state(server.run)
    viewed = before.complete[-1]
    page = context.new_page()
    errors = watch_errors(page)
    try:
        open_dashboard(page, server.url)
        fill_form(page, **long_job(list(server.genres)))
        page.click(job("start"))
        # wait until the job shows progress, then cancel it
        follow([page], until=lambda ui: (not ui["cancel_disabled"] and "%" in ui["stage"]) or bool(ui["result"]))
        assert not job_ui(page)["result"], "the job ended before it could be cancelled"
        page.click(job("cancel"))
        observed = follow([page])[0]
        ui = job_ui(page)
    except BaseException:
        _dump_log(server)
        raise
    assert "cancelled" in observed.result, observed
    assert not ui["start_disabled"] and ui["cancel_disabled"], ui

    after = store_state(server.run)
    new_jobs = after.new_jobs(before)
    assert [j["status"] for j in new_jobs] == ["cancelled"], new_jobs
    assert new_jobs[0]["extraction_id"] is None
    begun = [e for e in after.extractions if e["job_id"] == new_jobs[0]["job_id"]]
    assert [e["status"] for e in begun] in ([], ["cancelled"]), begun
    assert after.complete == before.complete
    assert after.partial == []
    # the previous extraction is intact: readable from the store and drawn by a fresh page
    assert concept_ids(server.run, viewed)
    page.reload(wait_until="load")
    page.wait_for_function(f"() => {{ const ids = ({JS_P1_CONCEPTS})(); return ids && ids.length > 0; }}")
    assert viewed_concepts(page) == concept_ids(server.run, viewed)
    assert not errors, errors


def test_job_shows_progress_and_offers_its_extraction(server, context):
    before = store_state(server.run)
    viewed = before.complete[-1]
    page = context.new_page()
    errors = watch_errors(page)
    try:
        open_dashboard(page, server.url)
        shown = viewed_concepts(page)
        assert shown == concept_ids(server.run, viewed)
        options_before = picker_options(page)
        fill_form(page, **small_job(server.genres[0]))
        page.click(job("start"))
        observed = follow([page])[0]
    except BaseException:
        _dump_log(server)
        raise
    new_id = completed_id(observed.result)

    # the progress advanced while the job ran: the stage text names each step, the bar shows
    # the whole job's progress and never goes back
    assert len(set(observed.stages)) >= 3, observed
    assert len(set(observed.progress)) >= 2, observed
    assert observed.progress == sorted(observed.progress), observed
    wait_idle(page, stage="done")
    assert job_ui(page)["progress"] == 100

    # the store: one more complete extraction, from one job row that is complete
    after = store_state(server.run)
    assert after.complete == before.complete + [new_id]
    new_jobs = after.new_jobs(before)
    assert [(j["status"], j["extraction_id"]) for j in new_jobs] == [("complete", new_id)]
    assert new_jobs[0]["params"]["genres"] == [server.genres[0]]
    assert after.partial == []

    # the picker offers it, but the page keeps showing the extraction being viewed
    options = picker_options(page)
    assert len(options) == len(options_before) + 1, (options_before, options)
    assert any(o.startswith(f"extraction {new_id} ") for o in options), options
    assert picker_value(page).startswith(f"extraction {viewed} ")
    assert f"extraction={viewed}" in page.url
    assert viewed_concepts(page) == shown

    # until the user picks the new one
    pick_extraction(page, new_id)
    page.wait_for_url(f"**extraction={new_id}*")
    expected = concept_ids(server.run, new_id)
    expected_json = json.dumps(json.dumps(expected, separators=(",", ":")))
    page.wait_for_function(f"() => JSON.stringify(({JS_P1_CONCEPTS})()) === {expected_json}")
    assert picker_value(page).startswith(f"extraction {new_id} ")
    assert not errors, errors


def test_two_tabs_share_one_job(server, chromium):
    before = store_state(server.run)
    # two users (two browser contexts), each with the form filled in
    contexts = [chromium.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        pages = [c.new_page() for c in contexts]
        errors = [watch_errors(p) for p in pages]
        keys: list[set[str]] = [set(), set()]  # Dash's result keys of each tab's background job
        for page, seen in zip(pages, keys):
            page.on("request", lambda r, seen=seen: seen.update(parse_qs(urlsplit(r.url).query).get("cacheKey", [])))
        try:
            for page in pages:
                open_dashboard(page, server.url)
                fill_form(page, **small_job(server.genres[-1]))
            for page in pages:  # as close together as the browser allows
                page.click(job("start"), no_wait_after=True)
            observed = follow(pages)
        except BaseException:
            _dump_log(server)
            raise
        ids = [completed_id(o.result) for o in observed]
        assert ids[0] == ids[1], observed
        # each tab polled its own result: identical forms must not share Dash's result key
        # (they did once, and the tab that polled second never heard that the job ended)
        result_keys = [{k.split("~")[0] for k in seen} for seen in keys]
        assert all(result_keys) and not result_keys[0] & result_keys[1], result_keys
        after = store_state(server.run)
        new_jobs = after.new_jobs(before)
        assert [(j["status"], j["extraction_id"]) for j in new_jobs] == [("complete", ids[0])], new_jobs
        assert after.complete == before.complete + [ids[0]]
        for page in pages:
            wait_idle(page)
            assert any(o.startswith(f"extraction {ids[0]} ") for o in picker_options(page))
        assert errors == [[], []], errors
    finally:
        for c in contexts:
            c.close()
