"""Driving the re-extraction form (whypop.app.reextract) in a real browser, and reading the run store.

Shared by test_jobs_browser (diskcache jobs under gunicorn) and test_celery (jobs on a
Celery worker). Every wait has a generous deadline: it bounds a hung test, it does not
measure speed.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_MS = 30_000
JOB_DEADLINE = 240.0  # seconds a job may take on a loaded 2-core machine (bounds a hung job; not a speed test)

P1 = "[id='{\"part\":\"graph\",\"whypop\":\"importance\"}'] .js-plotly-plot"
HEADER_PICKER = "button[id='{\"part\":\"extraction\",\"whypop\":\"header\"}']"
OPEN_OPTIONS = ".dash-dropdown-content [role=option]"

JS_P1_CONCEPTS = f"""() => {{
  const gd = document.querySelector({json.dumps(P1)});
  if (!gd || !gd.data) return null;
  const ids = [];
  for (const tr of gd.data) if (tr.meta === 'concepts') ids.push(...tr.customdata);
  return ids.sort((a, b) => a - b);
}}"""


def job(part: str) -> str:
    """CSS selector of a part of the form (ids are dicts: Dash renders them as sorted-key JSON)."""
    return f"[id='{{\"part\":\"{part}\",\"whypop\":\"jobs\"}}']"


def copy_run(source: Path, dest: Path) -> Path:
    """A private copy of a run (without the source's background-job cache, which belongs to its servers)."""
    source = Path(source).resolve()

    def ignore(directory: str, names: list[str]) -> list[str]:
        return ["jobs"] if Path(directory).resolve() == source / "cache" and "jobs" in names else []

    shutil.copytree(source, dest, ignore=ignore)
    return dest


# -- the store ------------------------------------------------------------------------------------


@dataclass
class StoreState:
    complete: list[int]  # ids of the complete extractions
    extractions: list[dict]  # every extraction row (any status)
    jobs: list[dict]
    partial: list[str]  # partial directories under extractions/

    def new_jobs(self, before: "StoreState") -> list[dict]:
        old = {j["job_id"] for j in before.jobs}
        return [j for j in self.jobs if j["job_id"] not in old]


def store_state(run: Path) -> StoreState:
    from whypop.store import RunStore

    store = RunStore(run)
    try:
        return StoreState([e["extraction_id"] for e in store.extractions(status="complete")],
                          store.extractions(status=None), store.jobs(),
                          sorted(p.name for p in (store.root / "extractions").glob("*.partial")))
    finally:
        store.close()


def active_jobs(run: Path) -> list[dict]:
    from whypop.app import jobs

    return [j for j in store_state(run).jobs if j["status"] in jobs.ACTIVE]


def settle(run: Path, deadline: float = 120.0) -> None:
    """Test isolation: cancel whatever job a failed test left running and wait for it to end."""
    from whypop.app import jobs
    from whypop.store import RunStore

    end = time.monotonic() + deadline
    while active_jobs(run) and time.monotonic() < end:
        store = RunStore(run)
        try:
            for j in active_jobs(run):
                jobs.request_cancel(store, j["job_id"])
            jobs.reap_stale(store)
        finally:
            store.close()
        time.sleep(0.5)


def run_genres(run: Path) -> list[str]:
    from whypop.store import RunStore

    store = RunStore(run)
    try:
        return store.genres()
    finally:
        store.close()


def concept_ids(run: Path, extraction_id: int) -> list[int]:
    from whypop.app.data import AppData
    from whypop.store import RunStore

    store = RunStore(run)
    try:
        return sorted(c.concept_id for c in AppData(store).view(extraction_id).concepts)
    finally:
        store.close()


# -- the page -------------------------------------------------------------------------------------


def watch_errors(page) -> list[str]:
    """JavaScript exceptions and server errors (5xx) seen by the page, appended as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    return errors


def open_dashboard(page, url: str) -> None:
    """Load the page, wait for panel 1, open the re-extraction form."""
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.wait_for_function(f"() => {{ const ids = ({JS_P1_CONCEPTS})(); return ids !== null && ids.length > 0; }}")
    page.click(".whypop-jobs summary")
    page.wait_for_selector(job("start"), state="visible")


def viewed_concepts(page) -> list[int]:
    return page.evaluate(JS_P1_CONCEPTS)


def fill_form(page, *, n_clusters: int, segments: str, random_experiments: int, discovery_images: int,
              genres: list[str]) -> None:
    """Set the form's fields (layer, patch and CAV mode stay at the run's configuration)."""
    page.fill(job("n_clusters"), str(n_clusters))
    page.fill(job("segments"), segments)
    page.fill(job("random_experiments"), str(random_experiments))
    page.fill(job("discovery_images"), str(discovery_images))
    for genre in genres:
        page.click(f"button{job('genres')}")
        page.locator(OPEN_OPTIONS, has_text=genre).first.click()
        page.keyboard.press("Escape")
    for genre in genres:
        page.wait_for_selector(f"{job('genres')} .dash-dropdown-value >> text={genre}")
    # the form's validation callback answers with an empty message for good values
    page.wait_for_function(f"() => {{ const m = document.querySelector({json.dumps(job('message'))}); "
                           "return m && m.textContent === ''; }")


def wait_idle(page, stage: str | None = None) -> None:
    """Wait until the form takes a new job (Re-extract enabled again) and, if given, shows ``stage``."""
    page.wait_for_function(f"() => !document.querySelector({json.dumps(job('start'))}).disabled")
    if stage is not None:
        page.wait_for_function(f"() => document.querySelector({json.dumps(job('stage'))}).textContent === "
                               f"{json.dumps(stage)}")


def picker_options(page) -> list[str]:
    """The labels of the extraction picker's options (opens and closes it)."""
    page.click(HEADER_PICKER)
    page.wait_for_selector(OPEN_OPTIONS)
    labels = page.locator(OPEN_OPTIONS).all_inner_texts()
    page.keyboard.press("Escape")
    page.wait_for_selector(OPEN_OPTIONS, state="detached")
    return [label.strip() for label in labels]


def picker_value(page) -> str:
    return page.inner_text(f"{HEADER_PICKER} .dash-dropdown-value").strip()


def pick_extraction(page, extraction_id: int) -> None:
    page.click(HEADER_PICKER)
    page.locator(OPEN_OPTIONS, has_text=re.compile(rf"^\s*extraction {extraction_id}\b")).first.click()


JS_JOB_UI = f"""() => {{
  const q = (s) => document.querySelector(s);
  const bar = q({json.dumps(job('progress') + ' .progress-bar')});
  return {{
    stage: (q({json.dumps(job('stage'))}) || {{}}).textContent || '',
    progress: bar ? Number(bar.getAttribute('aria-valuenow') || 0) : null,
    result: (q({json.dumps(job('result'))}) || {{}}).textContent || '',
    start_disabled: q({json.dumps(job('start'))}).disabled,
    cancel_disabled: q({json.dumps(job('cancel'))}).disabled,
  }};
}}"""


@dataclass
class Observed:
    """What a tab showed while its job ran."""

    stages: list[str] = field(default_factory=list)  # distinct stage texts, in order
    progress: list[float] = field(default_factory=list)  # distinct progress values, in order
    result: str = ""


def job_ui(page) -> dict:
    return page.evaluate(JS_JOB_UI)


def follow(pages, observed: list[Observed] | None = None, deadline: float = JOB_DEADLINE,
           until=lambda ui: bool(ui["result"])) -> list[Observed]:
    """Poll the form of each page until ``until`` holds for every page; record stages and progress."""
    observed = observed or [Observed() for _ in pages]
    end = time.monotonic() + deadline
    done = [False] * len(pages)
    while not all(done):
        if time.monotonic() > end:
            raise AssertionError(f"jobs did not end within {deadline} s: {[job_ui(p) for p in pages]} {observed}")
        for i, page in enumerate(pages):
            if done[i]:
                continue
            ui = job_ui(page)
            seen = observed[i]
            if ui["stage"] and (not seen.stages or seen.stages[-1] != ui["stage"]):
                seen.stages.append(ui["stage"])
            if ui["progress"] is not None and (not seen.progress or seen.progress[-1] != ui["progress"]):
                seen.progress.append(ui["progress"])
            if until(ui):
                seen.result = ui["result"]
                done[i] = True
        time.sleep(0.1)
    return observed


def completed_id(result: str) -> int:
    """The extraction id in 'extraction 7 is complete: ...'."""
    m = re.search(r"extraction (\d+) is complete", result)
    assert m, f"the job did not complete: {result!r}"
    return int(m.group(1))
