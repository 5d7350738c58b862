"""The HTML report (whypop report, the dashboard's download button) and figure export.

Fast tests build reports of the fake run (app_fixtures) and read the HTML; the slow
browser tests open the demo's report as a file:// URL in headless Chromium with every
network request blocked, and download figures from the Plotly toolbar.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from app_fixtures import fake_run  # noqa: F401 (fixture)
from whypop import cli
from whypop.app import download, export
from whypop.app.model_figures import confusion_figure
from whypop.app.report import ReportResult, build_report
from whypop.errors import NotFound, WhypopError
from whypop.report import ReportDocument, esc, script_json
from whypop.store import RunStore

HOSTILE = "<img src=x onerror=alert(1)></script><!--"


@pytest.fixture()
def hostile_run(fake_run, tmp_path) -> Path:  # noqa: F811
    """A copy of the fake run whose concept, flag and song names carry HTML."""
    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    db = sqlite3.connect(run / "run.sqlite")
    db.execute("UPDATE concepts SET name = ? || name", (HOSTILE,))
    db.execute("UPDATE concepts SET flags = ? WHERE significant = 1",
               (json.dumps([{"flag": HOSTILE, "reason": HOSTILE}]),))
    db.execute("UPDATE tracks SET title = ? || title", (HOSTILE,))
    db.commit()
    db.close()
    return run


def _scripts_and_tags(html: str) -> tuple[str, str]:
    """(text of every <script> element, the HTML with the script elements removed)."""
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)
    return "".join(scripts), re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)


# -- the document -------------------------------------------------------------------------------------


def test_document_stores_each_image_once_and_escapes(tmp_path):
    doc = ReportDocument("t <b>", plotly_js="var Plotly = {};")
    a = doc.image(b"\x89PNG same bytes", HOSTILE)
    b = doc.image(b"\x89PNG same bytes", "other")
    doc.image(b"\x89PNG other bytes", "third")
    assert re.search(r'data-media="(m\d+)"', a).group(1) == re.search(r'data-media="(m\d+)"', b).group(1)
    fig = doc.figure({"data": [{"type": "scatter", "x": [1], "y": [2], "name": HOSTILE}], "layout": {}}, "run/../x")
    out = doc.write(tmp_path / "r.html", f"<p>{esc(HOSTILE)}</p>{a}{b}{fig}")
    html = out.path.read_text()
    scripts, rest = _scripts_and_tags(html)
    assert "<img src=x" not in rest and "&lt;img src=x" in rest
    assert "</script><!--" not in scripts  # the name inside the figure JSON is escaped
    assert out.images == 3 and out.media_folder is None and out.figures == 1
    table = json.loads(re.search(r'id="wp-media">(.*?)</script>', html, flags=re.S).group(1))
    assert len(table) == 2 and all(v.startswith("data:image/png;base64,") for v in table.values())
    spec = json.loads(re.search(r'id="wp-fig-0">(.*?)</script>', html, flags=re.S).group(1))
    assert spec["filename"] == "run-..-x"  # no path separators reach the download name
    assert spec["figure"]["data"][0]["name"] == HOSTILE


def test_script_json_cannot_close_the_script():
    text = script_json({"a": "</script><script>alert(1)</script>", "b": "\u2028"})
    assert "<" not in text and ">" not in text and json.loads(text)["a"].startswith("</script>")


def test_media_past_the_limit_go_to_a_sibling_folder(tmp_path):
    doc = ReportDocument("t", plotly_js="", inline_limit=10)
    tag = doc.image(b"0123456789abcdef", "x")
    out = doc.write(tmp_path / "big.html", tag)
    assert out.media_folder == tmp_path / "big_files"
    files = list(out.media_folder.iterdir())
    assert [f.read_bytes() for f in files] == [b"0123456789abcdef"]
    table = json.loads(re.search(r'id="wp-media">(.*?)</script>', out.path.read_text(), flags=re.S).group(1))
    assert list(table.values()) == [f"big_files/{files[0].name}"]
    assert out.total_bytes == out.html_bytes + 16


# -- the report of a run ------------------------------------------------------------------------------


def test_report_of_the_fake_run(hostile_run, tmp_path):
    events = []
    result = build_report(RunStore(hostile_run), tmp_path / "report.html", progress=events.append)
    html = result.file.path.read_text()
    scripts, rest = _scripts_and_tags(html)
    store = RunStore(hostile_run)
    latest = store.extraction()
    concepts = store.concepts(latest["extraction_id"])
    significant = [c for c in concepts if c["significant"]]
    assert result.extraction_id == latest["extraction_id"] and result.significant == len(significant)
    # every user-derived name is escaped, in the HTML and in the figures' JSON
    assert "<img src=x" not in rest and HOSTILE not in scripts
    assert rest.count("&lt;img src=x onerror=alert(1)&gt;") >= len(concepts)
    # one section per significant concept, with its examples and a radar; all concepts in the tables
    for c in significant:
        assert f"id='concept-{c['concept_id']}'" in html
    assert result.file.figures == 2 + len(significant)  # beeswarm, map, one radar each (no confusion stored)
    assert result.examples == 10 * len(significant)
    assert result.file.images == 3 * result.examples  # patch, source spectrogram, outline
    assert result.file.audio == result.examples and "data:audio/mpeg;base64," in html  # each example's solo clip
    assert "This model stored no confusion matrix" in html
    # every parameter of the extraction, and the plotly bundle exactly once
    assert "extract.layer" in html and "summary.similar_threshold" in html
    assert html.count("plotly.js v") == 1
    assert "whypop-" + hostile_run.name + "-e" + str(result.extraction_id) + "-importance" in html
    assert events[-1].step == "write" and events[-1].done == 1
    assert ReportResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_report_of_an_older_extraction_and_the_errors(fake_run, tmp_path):  # noqa: F811
    store = RunStore(fake_run)
    first = store.extractions()[0]["extraction_id"]
    result = build_report(store, tmp_path / "old.html", extraction_id=first, audio=False)
    assert result.extraction_id == first
    with pytest.raises(NotFound):
        build_report(store, tmp_path / "x.html", extraction_id=999)
    empty = RunStore(tmp_path / "empty", create=True)
    with pytest.raises(WhypopError, match="no complete extraction"):
        build_report(empty, tmp_path / "y.html")


def test_report_draws_faithfulness_when_stored(fake_run, tmp_path):  # noqa: F811
    from whypop.ace import faithfulness as fm

    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    store = RunStore(run)
    assert build_report(store, tmp_path / "none.html", audio=False).faithfulness is False
    record = store.extraction()
    curve = fm.Curve(top=[0.5, 0.3, 0.2], random=[0.8, 0.78, 0.75], bottom=[0.9, 0.9, 0.88], baseline=0.91)
    test = fm.Test(curve, curve, {})
    genre = fm.GenreFaithfulness(HOSTILE, 4, ["kick_00"], [1, 2, 3], test, test, [], 1, 3)
    faith = fm.Faithfulness(record["extraction_id"], 90.0, "held-out", {HOSTILE: genre})
    (Path(record["path"]) / fm.FILE).write_text(json.dumps(faith.to_dict()))  # as the evaluation stage stores it
    result = build_report(RunStore(run), tmp_path / "f.html", audio=False)
    html = result.file.path.read_text()
    scripts, rest = _scripts_and_tags(html)
    assert result.faithfulness and "Faithfulness: the deletion test" in html
    assert result.file.figures == 2 + result.significant + 1
    assert "<img src=x" not in rest and HOSTILE not in scripts  # the genre name in the verdict and the figure


def test_confusion_figure_colours_by_row_share():
    fig = confusion_figure(["A", "<b>B</b>"], [[8, 2], [0, 5]])
    assert list(fig.data[0].z[0]) == [0.8, 0.2] and list(fig.data[0].text[0]) == ["8", "2"]
    assert "&lt;b&gt;B&lt;/b&gt;" in fig.layout.xaxis.ticktext


def test_cli_report(fake_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cli.html"
    assert cli.main(["report", "--run", str(fake_run), "--out", str(out), "--no-audio", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["file"]["path"] == str(out) and out.stat().st_size == line["file"]["html_bytes"]
    assert cli.main(["report", "--run", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert cli.main(["report", "--run", str(fake_run), "--extraction", "999", "--out", str(out)]) == 1
    assert "999" in capsys.readouterr().err


# -- figure export and the dashboard's download button ------------------------------------------------


def test_download_names_follow_the_selection(fake_run):  # noqa: F811
    from whypop.app.data import AppData

    data = AppData(RunStore(fake_run))
    eid = data.latest_extraction()
    concept = data.view(eid).concepts[0]
    names = export.file_names(data, eid, concept.concept_id, "kick_00")
    run = fake_run.name
    assert names["importance"] == f"whypop-{run}-e{eid}-importance"
    assert names["radar"] == f"whypop-{run}-e{eid}-{concept.genre}-c{concept.concept_id}-radar"
    assert names["song"] == f"whypop-{run}-e{eid}-kick_00-{concept.genre}-c{concept.concept_id}-song"
    assert export.file_names(data, None, None, None)["radar"] == f"whypop-{run}-radar"
    assert export.export_name("a b", "<x>") == "whypop-a-b--x-"
    config = export.graph_config("n")
    assert config["toImageButtonOptions"]["filename"] == "n" and config["displayModeBar"] == "hover"


def test_download_job_builds_the_file(fake_run, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    eid = RunStore(run).extraction()["extraction_id"]
    seen = []
    status, ready = download.build(str(run), False, eid, seen.append)
    assert ready == {"extraction": eid} and "MB" in status
    path = download.report_path(RunStore(run), eid, read_only=False)
    assert path.parent == run / "cache" / "reports" and path.stat().st_size > 1_000_000
    assert any("building the report" in s[0] for s in seen)
    # a second click sends the same file without rebuilding it
    seen.clear()
    mtime = path.stat().st_mtime_ns
    assert download.build(str(run), False, eid, seen.append)[1] == {"extraction": eid}
    assert seen == [] and path.stat().st_mtime_ns == mtime
    status, ready = download.build(str(run), False, 999, None)
    assert ready is download.no_update and "999" in str(status)
    status, ready = download.build(str(run), True, "1; rm -rf /", None)
    assert ready is download.no_update
    # read-only: nothing is written into the run
    assert download.report_path(RunStore(run), eid, read_only=True).parent != run / "cache" / "reports"


def test_clips_are_embedded_unless_no_audio(fake_run, tmp_path):  # noqa: F811
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, dtype=np.float32), 8000, format="WAV")
    calls = []

    def clips(eid, cid, rank):
        calls.append((eid, cid, rank))
        return (buf.getvalue(), "audio/wav") if rank < 2 else None

    with_audio = build_report(fake_run, tmp_path / "a.html", clips=clips)
    assert with_audio.file.audio == 2 * with_audio.significant and calls
    assert with_audio.file.path.read_text().count("<audio controls") == with_audio.file.audio
    calls.clear()
    without = build_report(fake_run, tmp_path / "b.html", audio=False, clips=clips)
    assert without.file.audio == 0 and calls == [] and "<audio" not in without.file.path.read_text()
