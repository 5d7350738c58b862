"""Careless and hostile use against a real server: no 500s, bounded memory, clean refusals.

The dashboard runs under gunicorn (the Procfile's config) on the fake run of app_fixtures;
each test repeats one probe a hostile-but-legal visitor could make.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app_fixtures import make_fake_run
from servers import _wait_http, start_gunicorn, stop_process_tree, wait_for_children

requests = pytest.importorskip("requests")

UPDATE = "_dash-update-component"
HUGE = 2**63
# values a careless or hostile client can put in any callback input (all legal JSON)
HOSTILE = [
    HUGE, 2**64 + 7, -1, -HUGE - 1, 0, 1.5, True, None, "", "x" * 100_000, "../../../etc/passwd",
    "<b>x</b>", "\x00\x1b]0;title\x07", [1, 2], [[HUGE]], {"a": 1}, {"points": "x"}, {"points": [{"customdata": HUGE}]},
    {"points": [{"customdata": ["a"]}]}, {"points": [{"customdata": "x" * 10_000}]}, {"points": [7]},
]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    return make_fake_run(tmp_path_factory.mktemp("hostile") / "run")


@pytest.fixture(scope="module")
def server(hostile_run, tmp_path_factory):
    """gunicorn with one worker on the fake run; yields (url, the worker's psutil process, log path)."""
    log = tmp_path_factory.mktemp("hostile-log") / "gunicorn.log"
    proc, url = start_gunicorn(hostile_run, "/", log, workers=1, env={"WHYPOP_THREADS": "2"})
    try:
        _wait_http(url + "/", proc)
        worker = wait_for_children(proc, 1)[0]
        yield url, worker, log
    finally:
        stop_process_tree(proc)


def server_callbacks(run: Path) -> list[tuple[str, dict]]:
    """(output key, spec) of every server-side callback of the app, from Dash's callback map."""
    from whypop.app import create_app

    app = create_app(run, read_only=False)
    return [(key, spec) for key, spec in app.callback_map.items() if spec.get("callback") is not None]


def _outputs(key: str):
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    outs = []
    for part in parts:
        id_, prop = part.rsplit(".", 1)
        outs.append({"id": json.loads(id_) if id_.startswith("{") else id_, "property": prop})
    return outs if key.startswith("..") else outs[0]


def _dep(dep: dict, value) -> dict:
    id_ = dep["id"]
    return {"id": json.loads(id_) if id_.startswith("{") else id_, "property": dep["property"], "value": value}


def baseline(dep: dict):
    """A plausible value for an input, so one hostile value at a time meets otherwise sane state."""
    prop = dep["property"]
    part = json.loads(dep["id"]).get("part") if dep["id"].startswith("{") else dep["id"]
    return {
        # the job form: two invalid fields, so no single fuzzed value can start a real extraction
        "segments": "", "cav_mode": "bogus", "n_clicks": 1, "page": "p",
        "search": "?extraction=1", "source": "audio", "only": True, "extraction": 1, "concept": 0, "song": "bells_00",
    }.get(part if prop != "n_clicks" else "n_clicks")


def call(url: str, key: str, spec: dict, values: list, trigger: int) -> requests.Response:
    deps = list(spec["inputs"]) + list(spec["state"])
    n_in = len(spec["inputs"])
    body = {
        "output": key, "outputs": _outputs(key),
        "inputs": [_dep(d, v) for d, v in zip(deps[:n_in], values[:n_in])],
        "state": [_dep(d, v) for d, v in zip(deps[n_in:], values[n_in:])],
        "changedPropIds": [f"{spec['inputs'][min(trigger, n_in - 1)]['id']}.{spec['inputs'][min(trigger, n_in - 1)]['property']}"],
    }
    r = requests.post(f"{url}/{UPDATE}", json=body, timeout=60)
    if spec.get("background") and r.status_code == 200 and "cacheKey" in r.text:
        handles = r.json()  # a background callback: poll its result like the browser does
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = requests.post(f"{url}/{UPDATE}", params={"cacheKey": handles["cacheKey"], "job": handles["job"]},
                              json=body, timeout=60)
            if r.status_code != 202 and not (r.status_code == 200 and "cacheKey" in r.text):
                break
            time.sleep(0.2)
    return r


@pytest.mark.slow
def test_callback_fuzzing_gives_no_500(hostile_run, server):
    """Every input of every server-side callback, one hostile value at a time: 0 responses >= 500."""
    url, _, log = server
    callbacks = server_callbacks(hostile_run)
    assert len(callbacks) >= 9, [k for k, _ in callbacks]
    calls, bad = 0, []
    for key, spec in callbacks:
        deps = list(spec["inputs"]) + list(spec["state"])
        base = [baseline(d) for d in deps]
        hostile = HOSTILE[:6] if spec.get("background") else HOSTILE  # each background call forks a process
        for i in range(len(deps)):
            for value in hostile:
                values = list(base)
                values[i] = value
                r = call(url, key, spec, values, trigger=i)
                calls += 1
                if r.status_code >= 500:
                    bad.append((key[:60], deps[i]["id"], deps[i]["property"], repr(value)[:40], r.status_code))
    print(f"callback fuzzing: {calls} calls over {len(callbacks)} callbacks, {len(bad)} responses >= 500")
    assert not bad, f"{len(bad)} of {calls} calls failed:\n" + "\n".join(map(str, bad)) + "\n" + log.read_text()[-3000:]
