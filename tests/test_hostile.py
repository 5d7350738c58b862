"""Careless and hostile use against a real server: no 500s, bounded memory, clean refusals.

The dashboard runs under gunicorn (the Procfile's config) on the fake run of app_fixtures;
each test repeats one probe a hostile-but-legal visitor could make.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from app_fixtures import fake_config, make_fake_run
from servers import _wait_http, chromium, start_gunicorn, stop_process_tree, wait_for_children  # noqa: F401 (chromium: fixture)
from whypop.store import Track

requests = pytest.importorskip("requests")

UPDATE = "_dash-update-component"
HUGE = 2**63
# values a careless or hostile client can put in any callback input (all legal JSON)
HOSTILE = [
    HUGE, 2**64 + 7, -1, -HUGE - 1, 0, 1.5, True, None, "", "x" * 100_000, "../../../etc/passwd",
    "<b>x</b>", "\x00\x1b]0;title\x07", [1, 2], [[HUGE]], {"a": 1}, {"points": "x"}, {"points": [{"customdata": HUGE}]},
    {"points": [{"customdata": ["a"]}]}, {"points": [{"customdata": "x" * 10_000}]}, {"points": [7]},
]


LONG_AU = ("long_au", 600, 96_000, 6)  # track id, seconds, Hz, channels


def write_long_au(path: Path, seconds: int, rate: int, channels: int) -> None:
    """A 16-bit AU of the given length: noise in its first second, then (sparse) silence."""
    import numpy as np

    data = seconds * rate * channels * 2
    header = b".snd" + struct.pack(">IIIII", 24, data, 3, rate, channels)
    noise = (np.random.default_rng(0).normal(0, 3000, size=rate * channels)).astype(">i2").tobytes()
    with path.open("wb") as fh:
        fh.write(header + noise)
        fh.truncate(24 + data)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """The fake run plus one prepared track whose source is a 10-minute 96 kHz 6-channel .au."""
    from whypop.store import RunStore

    run = make_fake_run(tmp_path_factory.mktemp("hostile") / "run")
    tid, seconds, rate, channels = LONG_AU
    store = RunStore(run)
    write_long_au(run / "audio" / "Bells" / f"{tid}.au", seconds, rate, channels)
    store.upsert_tracks([Track(tid, "Bells", "training", f"Bells/{tid}.au", title="Long AU")])
    store.record_track_result(tid, ok=True, duration=30.0, sample_rate=rate, channels=channels,
                              spectrogram="spectrograms/bells_00.png")
    store.close()
    return run


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
    if prop == "n_clicks":
        return 1
    if prop == "search_value":  # the song picker's server-side search
        return "bells"
    return {
        # the job form: two invalid fields, so no single fuzzed value can start a real extraction
        "segments": "", "cav_mode": "bogus", "page": "p",
        "search": "?extraction=1", "source": "audio", "only": True, "extraction": 1, "concept": 0, "song": "bells_00",
        "listen": "solo", "upload": {"id": "0" * 64, "name": "a.wav"},
        "request": {"kind": "track", "id": "bells_00", "extraction": 1, "listen": "solo", "concept": 0},
    }.get(part)


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
    assert len(callbacks) >= 12, [k for k, _ in callbacks]
    inputs = {(d["id"], d["property"]) for _, spec in callbacks for d in spec["inputs"]}
    # the per-song explanation, uploads, the picker's search and the listen switch are fuzzed too
    for part, prop in (("request", "data"), ("upload", "data"), ("picker", "search_value"), ("listen", "value")):
        assert any(f'"part":"{part}"' in i and p == prop for i, p in inputs), (part, prop)
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
    # and envelopes the page never sends
    key, spec = callbacks[0]
    for body in ("garbage", "[]", "{}", json.dumps({"output": "nope.x", "outputs": {}, "inputs": []}),
                 json.dumps({"output": 5}), json.dumps({"output": key, "outputs": "x", "inputs": "y"}),
                 json.dumps({"output": key, "outputs": {}, "inputs": [1] * len(spec["inputs"])}),
                 json.dumps({"output": key, "outputs": _outputs(key), "inputs": [], "state": []})):
        r = requests.post(f"{url}/{UPDATE}", data=body, headers={"Content-Type": "application/json"}, timeout=60)
        calls += 1
        if r.status_code >= 500:
            bad.append(("envelope", body[:60], r.status_code))
    print(f"callback fuzzing: {calls} calls over {len(callbacks)} callbacks, {len(bad)} responses >= 500")
    assert not bad, f"{len(bad)} of {calls} calls failed:\n" + "\n".join(map(str, bad)) + "\n" + log.read_text()[-3000:]


def _rss_mb(proc) -> float:
    return proc.memory_info().rss / 2**20


@pytest.mark.slow
def test_large_requests_are_refused_and_memory_stays_bounded(hostile_run, server):
    """60 callback requests with distinct 4 MB strings: refused at the cap (413), RSS grows < 100 MB.

    Then 60 with distinct strings just under the cap, in the song store: answered, not cached.
    """
    url, worker, _ = server
    key, spec = next((k, s) for k, s in server_callbacks(hostile_run) if '"part":"caption","whypop":"song"' in k)
    base = [baseline(d) for d in list(spec["inputs"]) + list(spec["state"])]
    call(url, key, spec, base, trigger=0)  # warm: the first real answer builds what every worker keeps
    before = _rss_mb(worker)
    statuses = []
    for i in range(60):
        values = list(base)
        values[0] = f"{i:03d}" + "x" * (4 * 2**20)
        statuses.append(call(url, key, spec, values, trigger=0).status_code)
    big = _rss_mb(worker) - before
    under = []
    for i in range(60):
        values = list(base)
        values[0] = f"{i:03d}" + "y" * 900_000
        under.append(call(url, key, spec, values, trigger=0).status_code)
    small = _rss_mb(worker) - before
    print(f"60 x 4 MB: statuses {sorted(set(statuses))}, RSS +{big:.0f} MB; "
          f"then 60 x 0.9 MB: statuses {sorted(set(under))}, RSS +{small:.0f} MB in all")
    assert set(statuses) == {413}
    assert set(under) <= {200, 204}
    assert big < 100 and small < 100


@pytest.mark.slow
def test_range_on_a_long_au_decodes_only_what_it_serves(server):
    """A 1 KiB Range of a 10-minute 96 kHz 6-channel .au: < 0.5 s, RSS grows < 100 MB, a valid WAV."""
    url, worker, _ = server
    tid, _, rate, _ = LONG_AU
    requests.get(f"{url}/audio/bells_01", headers={"Range": "bytes=0-1023"}, timeout=30)  # warm the route
    before = _rss_mb(worker)
    t0 = time.perf_counter()
    r = requests.get(f"{url}/audio/{tid}", headers={"Range": "bytes=0-1023"}, timeout=30)
    seconds = time.perf_counter() - t0
    grown = _rss_mb(worker) - before
    t1 = time.perf_counter()
    mid = requests.get(f"{url}/audio/{tid}", headers={"Range": "bytes=500000-501023"}, timeout=30)
    mid_seconds = time.perf_counter() - t1
    print(f"1 KiB range of a 10-minute 96 kHz 6-channel .au: {seconds:.3f} s (mid-file {mid_seconds:.3f} s), "
          f"RSS +{grown:.1f} MB, total length {r.headers.get('Content-Range')}")
    assert r.status_code == 206 and len(r.content) == 1024 and r.content[:4] == b"RIFF"
    assert mid.status_code == 206 and len(mid.content) == 1024
    assert seconds < 0.5 and mid_seconds < 0.5 and grown < 100
    total = int(r.headers["Content-Range"].rsplit("/", 1)[1])
    clip = fake_config().audio.duration
    assert total == 44 + int(clip * rate) * 2  # the explained clip (audio.duration), downmixed to mono 16-bit
    head = struct.unpack("<HHIIHH", r.content[20:36])
    assert head == (1, 1, rate, rate * 2, 2, 16)


# -- names from the user's files -----------------------------------------------------------

EVIL_GENRE = '<a href="https:evil.example">x'
EVIL_TITLE = "<b>bold</b> <a href='https:evil.example'>song</a>"


def rename_genre(run: Path, old: str, new: str, title: str) -> None:
    """Give one genre of the fake run (tracks, concepts, extraction summaries) a hostile name."""
    from whypop.store import RunStore

    store = RunStore(run)
    with store.transaction() as db:
        db.execute("UPDATE tracks SET genre=?, title=? WHERE genre=?", (new, title, old))
        db.execute("UPDATE concepts SET genre=?, name=? || substr(name, length(?) + 1) WHERE genre=?",
                   (new, new, old, old))
        for eid, summary in db.execute("SELECT extraction_id, summary FROM extractions WHERE summary IS NOT NULL").fetchall():
            data = json.loads(summary)
            genres = data.get("genres") or {}
            if old in genres:
                genres[new] = genres.pop(old)
            db.execute("UPDATE extractions SET summary=? WHERE extraction_id=?", (json.dumps(data), eid))
    store.close()


@pytest.mark.slow
@pytest.mark.browser
def test_hostile_genre_name_renders_as_text(tmp_path, chromium):
    """A genre folder named like a link shows as text in panel 1 (ticks, legend, hover): no <a> in any plot."""
    from servers import ThreadServer

    from whypop.app import create_app

    run = make_fake_run(tmp_path / "run")
    rename_genre(run, "Voice", EVIL_GENRE, EVIL_TITLE)
    server = ThreadServer(create_app(run).server)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(server.url + "/")
        importance = "[id='{\"part\":\"graph\",\"whypop\":\"importance\"}'] .js-plotly-plot"
        page.wait_for_function(f"() => {{ const gd = document.querySelector({json.dumps(importance)}); "
                               "return gd && gd.querySelectorAll('.xtick text').length >= 3; }", timeout=20_000)
        ticks = page.evaluate(f"() => Array.from(document.querySelector({json.dumps(importance)})"
                              ".querySelectorAll('.xtick text')).map(t => t.textContent)")
        legend = page.evaluate(f"() => Array.from(document.querySelector({json.dumps(importance)})"
                               ".querySelectorAll('.legendtext')).map(t => t.textContent)")
        links = page.evaluate("() => document.querySelectorAll('.js-plotly-plot a').length")
        print(f"tick labels {ticks}; legend {legend}; <a> elements in plots: {links}")
        # a tick may carry the genre's number of TCAV score songs on a second line
        assert any(t.startswith(EVIL_GENRE) for t in ticks) and EVIL_GENRE in legend
        assert links == 0
    finally:
        context.close()
        server.stop()


def test_figures_escape_names_in_ticks_legend_and_hover():
    from whypop.app import figures
    from whypop.app.data import Concept, ExtractionView

    c = Concept(1, EVIL_GENRE, "<b>c</b>", 0.7, 0.1, 0.001, True, (), None, None, None, 5)
    view = ExtractionView(1, (EVIL_GENRE,), (c,), {}, 0.5, {}, {}, {}, None, 0.0, None)
    fig = figures.importance_figure(view, figures.genre_colors(view.genres))
    concepts = [t for t in fig.data if t.meta == "concepts"][0]
    assert list(fig.layout.xaxis.ticktext) == ["&lt;a href=\"https:evil.example\"&gt;x"]
    assert concepts.name == "&lt;a href=\"https:evil.example\"&gt;x"
    assert "<a" not in concepts.hovertext[0] and "&lt;b&gt;c&lt;/b&gt;" in concepts.hovertext[0]


def test_new_figures_escape_names_too():
    """Prediction bars, faithfulness curves and panel 5's labels of an explained song show names as text."""
    from whypop.ace.faithfulness import Curve, Faithfulness, GenreFaithfulness, Test
    from whypop.app import figures
    from whypop.app.data import Placement
    from whypop.app.explain import prediction_figure

    esc = "&lt;a href=\"https:evil.example\"&gt;x"
    bars = prediction_figure({EVIL_GENRE: 0.7, "Rock": 0.3}, EVIL_GENRE)
    assert esc in list(bars.data[0].y) and not any("<a" in str(y) for y in bars.data[0].y)
    curve = Curve(top=[0.5, 0.3], random=[0.8, 0.7], bottom=[0.9, 0.9], baseline=0.95)
    test = Test(probability=curve, accuracy=curve, area={})
    g = GenreFaithfulness(EVIL_GENRE, 4, ["a"], [1, 2], test, test, [], 2, 2)
    fig = figures.faithfulness_figure(Faithfulness(1, 90.0, "held-out", {EVIL_GENRE: g}), {EVIL_GENRE: "#f00"})
    texts = [a.text for a in fig.layout.annotations] + [t.hovertemplate for t in fig.data]
    assert all("<a" not in t for t in texts) and any(esc in t for t in texts)
    from whypop.config import AudioConfig

    song = figures.song_figure("/img.png", [Placement(1, f"1. {EVIL_TITLE}", EVIL_GENRE, 0, (0, 0, 10, 10), None)],
                               AudioConfig(), (64, 64))
    labels = [a.text for a in song.layout.annotations]
    assert labels and all("<a" not in t and "<b>" not in t for t in labels), labels


def test_status_shows_control_characters_instead_of_obeying_them():
    from whypop.commands.status import format_status

    from whypop.text import visible

    assert visible("a\x1b]0;owned\x07b\u202ec\td") == "a\\x1b]0;owned\\x07b\\u202ec d"
    st = {"run": "/r", "tracks": {"ok": 1, "failed": 1, "pending": 0, "total": 2,
                                  "per_genre": {"Ro\x1b[2Jck": {"training": 1}}, "warnings": [],
                                  "failures": [{"track_id": "t\x1b]0;x\x07", "source": "a\rb.wav", "error": "bad"}]},
          "planted_regions": 0, "features": {}, "model": None, "extractions": [], "jobs": []}
    text = format_status(st)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "Ro\\x1b[2Jck" in text and "a\\x0db.wav" in text


# -- splits ------------------------------------------------------------------------------------


def _write_clips(folder: Path, names: list[str], seconds: float = 1.0, rate: int = 8000) -> None:
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    for i, name in enumerate(names):
        sf.write(str(folder / name), 0.3 * np.sin(2 * np.pi * (200 + 37 * i) * t), rate, subtype="PCM_16")


def _cfg():
    from whypop.config import merge

    return merge(fake_config(), {"dataset": {"audio_features": False}})


def test_adding_songs_moves_no_prepared_track(tmp_path):
    """Prepare a folder collection, add songs to every genre, prepare again: 0 prepared tracks move."""
    from pipelines import prepare
    from whypop.commands.status import main as status_main  # noqa: F401 (the command exists)

    from whypop.datasets import hashed_split
    from whypop.store import RunStore

    audio = tmp_path / "audio"
    for genre in ("Rock", "Jazz"):
        _write_clips(audio / genre, [f"song{i:02d}.wav" for i in range(0, 20, 2)])
    cfg = _cfg()
    store = RunStore(tmp_path / "run", create=True)
    prepare.run(cfg, store, audio, "folders", workers=1)
    before = {t.track_id: t.split for t in store.tracks(status="ok")}
    for genre in ("Rock", "Jazz"):  # new names sort between the old ones: the old split would reshuffle
        _write_clips(audio / genre, [f"song{i:02d}.wav" for i in range(1, 20, 2)] + ["a-first.wav", "z-last.wav"])
    prepare.run(cfg, store, audio, "folders", workers=1)
    after = {t.track_id: t.split for t in store.tracks(status="ok")}
    moved = [tid for tid in before if after[tid] != before[tid]]
    new = [tid for tid in after if tid not in before]
    print(f"{len(before)} prepared, {len(new)} added: {len(moved)} moved")
    assert len(before) == 20 and len(new) == 24 and moved == []
    assert all(after[tid] == hashed_split(tid, cfg.dataset.split, cfg.dataset.seed) for tid in new)
    # the same songs added to a fresh copy of the run land in the same splits (the rule has no history)
    assert hashed_split("Rock-song01", (0.8, 0.1, 0.1), 0) == hashed_split("Rock-song01", [0.8, 0.1, 0.1], 0)


def test_split_drift_is_reported():
    from whypop.datasets import split_drift

    assert split_drift({"Rock": {"training": 8, "validation": 1, "test": 1}}, (0.8, 0.1, 0.1)) == []
    warn = split_drift({"Rock": {"training": 19, "validation": 1}}, (0.8, 0.1, 0.1))
    assert len(warn) == 1 and "'Rock'" in warn[0] and "test 0.00" in warn[0]


# -- the store ---------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def whypop_cli(*args, timeout: float = 120) -> "subprocess.CompletedProcess":  # noqa: F821
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    return subprocess.run([sys.executable, "-m", "whypop.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _small_store(root: Path, failed: int = 0) -> Path:
    from whypop.store import RunStore

    store = RunStore(root, create=True)
    store.upsert_tracks([Track(f"t{i:05d}", "Rock", "training", f"Rock/t{i}.wav") for i in range(max(3, failed))])
    if failed:
        with store.transaction() as db:
            db.execute("UPDATE tracks SET status='failed', error='cannot decode audio: not a recognised audio format'")
    store.close()
    return root


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "corrupt", "foreign", "text"])
def test_a_damaged_store_gives_one_line_and_is_never_rebuilt(tmp_path, damage):
    import sqlite3

    run = _small_store(tmp_path / "run", failed=2000)
    db = run / "run.sqlite"
    if damage == "zero-byte":
        db.write_bytes(b"")
    elif damage == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    elif damage == "corrupt":
        data = bytearray(db.read_bytes())
        data[0:100] = bytes(range(100))
        db.write_bytes(bytes(data))
    elif damage == "foreign":
        db.unlink()
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE notes (x TEXT)")
    else:
        db.write_text("hello\n")
    before = db.read_bytes()
    for args in (("status", "--run", run), ("status", "--run", run, "--json"), ("prepare", tmp_path, "--run", run)):
        proc = whypop_cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (damage, args, proc.stderr[-2000:])
        assert len(lines) == 1 and "run.sqlite" in lines[0] or "run store" in lines[0], (damage, proc.stderr)
    assert db.read_bytes() == before, "the damaged file was changed"


def test_status_never_waits_behind_a_writer(tmp_path):
    import sqlite3
    import time as _time

    run = _small_store(tmp_path / "run")
    writer = sqlite3.connect(run / "run.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE tracks SET title='being written'")
    try:
        t0 = _time.perf_counter()
        proc = whypop_cli("status", "--run", run, "--json")
        seconds = _time.perf_counter() - t0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    print(f"status while another process holds the write lock: {seconds:.2f} s, exit {proc.returncode}")
    assert proc.returncode == 0 and json.loads(proc.stdout)["tracks"]["total"] == 3
    assert seconds < 10


def test_status_piped_into_head_ends_quietly(tmp_path):
    import subprocess
    import sys

    run = _small_store(tmp_path / "run", failed=3000)  # --json is ~500 KB: far more than a pipe holds
    proc = subprocess.run(f"'{sys.executable}' -m whypop.cli status --run '{run}' --json | head -n 2",
                          shell=True, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_a_stale_running_extraction_is_reaped_by_the_next_command(tmp_path):
    import subprocess
    import sys

    from whypop.store import STALE_EXTRACTION, RunStore

    run = _small_store(tmp_path / "run")
    code = ("import os, sys; from whypop.store import RunStore; s = RunStore(sys.argv[1]); "
            "eid, partial = s.begin_extraction({}, 'v', None); (partial / 'x.npy').write_bytes(b'1'); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code, str(run)], cwd=REPO).returncode == 9  # killed mid-way
    assert (run / "extractions" / "1.partial").is_dir()
    shown = whypop_cli("status", "--run", run)
    assert "its process is gone" in shown.stdout, shown.stdout
    store = RunStore(run)  # the next command that writes
    row = store.db.execute("SELECT status, error FROM extractions WHERE extraction_id=1").fetchone()
    assert tuple(row) == ("failed", STALE_EXTRACTION)
    assert not (run / "extractions" / "1.partial").exists() and not (run / "extractions" / "1.lock").exists()
    # a live one is left alone, in this process and from another
    eid, _ = store.begin_extraction({}, "v", None)
    assert RunStore(run).reap_stale_extractions() == [] and store.extraction_alive(eid)
    probe = "import sys; from whypop.store import RunStore; print(RunStore(sys.argv[1]).reap_stale_extractions())"
    out = subprocess.run([sys.executable, "-c", probe, str(run)], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_run_with_its_audio_inside_can_be_moved(tmp_path):
    import shutil

    from pipelines import prepare

    from whypop.store import RunStore

    run = tmp_path / "run"
    _write_clips(run / "audio" / "Rock", ["a.wav", "b.wav", "c.wav"])
    _write_clips(run / "audio" / "Jazz", ["a.wav", "b.wav", "c.wav"])
    store = RunStore(run, create=True)
    prepare.run(_cfg(), store, run / "audio", "folders", workers=1)
    assert store.get_meta("audio_root") == "audio"
    store.close()
    shutil.move(str(run), str(tmp_path / "moved"))
    moved = RunStore(tmp_path / "moved", read_only=True)
    assert moved.audio_root == (tmp_path / "moved" / "audio").resolve()
    assert moved.audio_path("Rock-a").is_file()


# -- processes and files -------------------------------------------------------------------------


def test_odd_files_named_like_audio_are_recorded_with_a_reason(tmp_path):
    import os

    from pipelines import prepare

    from whypop.store import RunStore

    audio = tmp_path / "audio"
    _write_clips(audio / "Rock", ["good1.wav", "good2.wav", "good3.wav"])
    _write_clips(tmp_path / "elsewhere", ["outside.wav"])
    os.mkfifo(audio / "Rock" / "pipe.wav")
    (audio / "Rock" / "folder.wav").mkdir()
    (audio / "Rock" / "dangling.wav").symlink_to(tmp_path / "nothing.wav")
    (audio / "Rock" / "escaping.wav").symlink_to(tmp_path / "elsewhere" / "outside.wav")
    (audio / "Rock" / "inside.wav").symlink_to(audio / "Rock" / "good1.wav")
    store = RunStore(tmp_path / "run", create=True)
    prepare.run(_cfg(), store, audio, "folders", workers=1)  # returns: the FIFO is never opened
    reasons = {t.track_id: t.error for t in store.tracks(status="failed")}
    assert "not a regular file (a FIFO)" in reasons["Rock-pipe"]
    assert "a directory named like an audio file" in reasons["Rock-folder"]
    assert "dangling symlink" in reasons["Rock-dangling"]
    assert "symlink pointing outside the collection" in reasons["Rock-escaping"]
    assert {t.track_id for t in store.tracks(status="ok")} == {"Rock-good1", "Rock-good2", "Rock-good3", "Rock-inside"}


def test_the_audio_route_applies_the_same_symlink_policy(tmp_path):
    from whypop.app import create_app
    from whypop.store import RunStore

    run = make_fake_run(tmp_path / "run")
    audio = run / "audio" / "Bells"
    (tmp_path / "secret.wav").write_bytes((audio / "bells_00.wav").read_bytes())
    (audio / "bells_02.wav").unlink()
    (audio / "bells_02.wav").symlink_to(tmp_path / "secret.wav")  # swapped for a link out after preparation
    (audio / "bells_03.wav").unlink()
    (audio / "bells_03.wav").symlink_to(audio / "bells_00.wav")  # a link inside: fine
    client = create_app(RunStore(run, read_only=True)).server.test_client()
    assert client.get("/audio/bells_02").status_code == 404
    assert client.get("/audio/bells_03").status_code == 200
    assert client.get("/audio/broken_00").status_code == 404  # a failed track is not served


@pytest.mark.slow
def test_killing_the_main_prepare_process_ends_its_workers(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    audio = tmp_path / "audio"
    for genre in ("Rock", "Jazz"):
        _write_clips(audio / genre, [f"s{i:03d}.wav" for i in range(60)], seconds=4.0)
    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "whypop.cli", "prepare", str(audio), "--run", str(tmp_path / "run"),
                             "--config", "demo", "--workers", "2", "--set", "dataset.audio_features=false"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        children = []
        while time.monotonic() < deadline and len(children) < 2 and proc.poll() is None:
            children = psutil.Process(proc.pid).children()
            time.sleep(0.1)
        assert len(children) >= 2, "the pool never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        gone, alive = psutil.wait_procs(children, timeout=10)
        print(f"main prepare killed: {len(gone)} of {len(children)} workers ended within "
              f"{time.monotonic() - t0:.1f} s")
        assert not alive
    finally:
        for c in psutil.Process().children(recursive=True):
            c.kill()


# -- headers and the request cap ------------------------------------------------------------------


def test_security_headers_and_a_configurable_frame_ancestors(hostile_run, monkeypatch):
    import flask

    from whypop.app import create_app

    client = create_app(hostile_run).server.test_client()
    for path in ("/", "/img/spec/bells_00.png", "/audio/bells_00", "/audio/nope"):
        r = client.get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'self'", path
    # a portal that embeds the dashboard from another origin names itself; its own pages are left alone
    monkeypatch.setenv("WHYPOP_CONFIG", "serve.frame_ancestors='self' https://portal.example.org")
    portal = flask.Flask("portal")
    portal.add_url_rule("/", "home", lambda: "the portal")
    create_app(hostile_run, prefix="/tools/whypop/", server=portal)
    c = portal.test_client()
    assert c.get("/tools/whypop/").headers["Content-Security-Policy"] == "frame-ancestors 'self' https://portal.example.org"
    assert "Content-Security-Policy" not in c.get("/").headers


def test_the_request_cap_is_per_route_and_configurable(hostile_run, monkeypatch):
    import flask

    from whypop.app import create_app

    monkeypatch.setenv("WHYPOP_CONFIG", "serve.max_request_bytes=20000")
    monkeypatch.setenv("WHYPOP_ALLOW_UPLOAD", "1")
    app = create_app(hostile_run, read_only=True)

    @app.server.route("/own-limit", methods=["POST"])
    def own_limit():  # a route with its own, larger limit (as the upload route sets it)
        flask.request.max_content_length = 200_000
        return str(len(flask.request.get_data()))

    client = app.server.test_client()
    body = {"output": "x", "outputs": {}, "inputs": [], "changedPropIds": [], "pad": "x" * 30_000}
    assert client.post("/_dash-update-component", json=body).status_code == 413
    assert client.post("/own-limit", data=b"x" * 100_000).data == b"100000"
    assert client.post("/own-limit", data=b"x" * 300_000).status_code == 413
    # the song upload route raises the cap to serve.upload_max_mb (its own), not above
    limit = int(app.whypop_data.config.serve.upload_max_mb * 2**20)
    junk = client.post("/upload", data=b"x" * 100_000, headers={"X-Filename": "junk.wav"})
    assert junk.status_code == 400 and "not a recognised audio file" in junk.get_json()["error"], junk.data
    assert client.post("/upload", data=b"x" * (limit + 2**17), headers={"X-Filename": "big.wav"}).status_code == 413
    assert not list((hostile_run / "uploads").glob("*/audio.*"))  # nothing refused was kept
