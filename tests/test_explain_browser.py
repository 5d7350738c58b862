"""Panel 5 explains songs in real headless Chromium: an upload, a corrupt upload, a non-discovery track.

One server (the development server in a thread) on a private copy of the demo run; the
explanations run as background jobs with the default diskcache manager.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path

import pytest

from servers import ThreadServer, chromium  # noqa: F401 (chromium: fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 120_000  # an explanation job: model and concept bank load, then a few seconds (shared CPU)
P5 = ".whypop-song-graph .js-plotly-plot"
PICKER = "[id='{\"part\":\"picker\",\"whypop\":\"song\"}']"


@pytest.fixture(scope="module")
def served(demo_run, tmp_path_factory):
    from whypop.app import create_app

    run = tmp_path_factory.mktemp("explain-browser") / "run"
    shutil.copytree(demo_run, run)
    server = ThreadServer(create_app(run, read_only=False).server)
    try:
        yield run, server.url + "/"
    finally:
        server.stop()


@pytest.fixture()
def page(chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def _upload(page, path: Path) -> None:
    page.locator(".whypop-upload-button").scroll_into_view_if_needed()
    with page.expect_file_chooser() as chooser:
        page.click(".whypop-upload-button")
    chooser.value.set_files(str(path))


def _figure(page) -> dict:
    return page.evaluate(f"() => {{ const gd = document.querySelector('{P5}'); "
                         "return {shapes: (gd.layout.shapes || []).length, image: (gd.layout.images || [{}])[0].source,"
                         " annotations: (gd.layout.annotations || []).map(a => a.text)}; }")


def test_upload_a_song_and_see_its_explanation(served, page, tmp_path):
    from whypop.cli import main

    run, url = served
    song = tmp_path / "fresh kick.wav"
    assert main(["demo", "--make-song", "Kick", "--seed", "11", "--out", str(song), "--run", str(run)]) == 0
    page.goto(url)
    page.wait_for_selector(".whypop-upload-button", timeout=TIMEOUT_MS)
    _upload(page, song)
    page.wait_for_selector(".whypop-explained", timeout=TIMEOUT_MS)
    caption = page.inner_text("[id='{\"part\":\"caption\",\"whypop\":\"song\"}']")
    assert "fresh kick.wav" in caption and "predicted Kick" in caption
    bars = page.evaluate("() => { const gd = document.querySelector(\"[id='{\\\"part\\\":\\\"prediction\\\","
                         "\\\"whypop\\\":\\\"song\\\"}'] .js-plotly-plot\"); return gd.data[0].y; }")
    assert sorted(bars) == ["Formant", "Hats", "Kick", "Pluck"]
    fig = _figure(page)
    assert fig["shapes"] > 1 and "/spectrogram.png" in fig["image"]  # playhead + concept outlines
    assert any(a.startswith("1. ") for a in fig["annotations"])
    assert page.locator(".whypop-explanation tr").count() > 2
    digest = [p.name for p in (run / "uploads").iterdir() if len(p.name) == 64]
    assert len(digest) == 1 and (run / "uploads" / digest[0] / "explanation-1.json").is_file()
    src = page.get_attribute("audio.whypop-audio", "src")
    assert src.endswith(f"upload/{digest[0]}/audio")
    # the audio plays and the playhead follows
    page.evaluate("() => { const a = document.querySelector('audio.whypop-audio'); a.muted = true; return a.play(); }")
    page.wait_for_function(f"() => {{ const gd = document.querySelector('{P5}'); "
                           "return gd.layout.shapes[0].x0 > 0.2; }", timeout=30_000)
    assert not page.errors, page.errors


def test_upload_a_corrupt_file_and_see_the_message(served, page, tmp_path):
    _, url = served
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 40)
    page.goto(url)
    page.wait_for_selector(".whypop-upload-button", timeout=TIMEOUT_MS)
    _upload(page, bad)
    alert = page.wait_for_selector(".whypop-upload-error", timeout=TIMEOUT_MS)
    assert "broken.mp3" in alert.inner_text() and "not a recognised audio file" in alert.inner_text()
    assert not page.errors, page.errors


# Known flaky (about one run in three here): the typed search sometimes never reaches the
# asynchronously loaded Dash 4 dropdown. The test is rerun, never loosened.
@pytest.mark.flaky(reruns=2)
def test_explain_a_non_discovery_track_from_the_picker(served, page):
    from whypop.store import RunStore

    run, url = served
    store = RunStore(run)
    ex = store.extraction()
    used = {t for g in ex["summary"]["genres"].values() for t in g["discovery"]}
    track = next(t for t in store.tracks(status="ok") if t.track_id not in used and t.genre == "Pluck")
    page.goto(url + "?" + urllib.parse.urlencode({"extraction": ex["extraction_id"]}))
    page.wait_for_selector(PICKER, timeout=TIMEOUT_MS)
    page.click(PICKER)
    page.keyboard.type(track.track_id)
    option = page.wait_for_selector(f"text={track.track_id} (Pluck)", timeout=TIMEOUT_MS)
    option.click()
    page.wait_for_selector(".whypop-explained", timeout=TIMEOUT_MS)
    caption = page.inner_text("[id='{\"part\":\"caption\",\"whypop\":\"song\"}']")
    assert track.track_id in caption and "labelled Pluck" in caption
    assert _figure(page)["image"].endswith(f"img/spec/{track.track_id}.png")
    assert page.get_attribute("audio.whypop-audio", "src").endswith(f"audio/{track.track_id}")
    assert f"song={track.track_id}" in page.url
    assert not page.errors, page.errors
    json.dumps(page.errors)


LISTEN = "solo the selected concept"


def _solo_plays(page, suffix: str) -> None:
    page.get_by_label(LISTEN).check()
    page.wait_for_function(f"() => document.querySelector('audio.whypop-audio').src.endsWith({json.dumps(suffix)})",
                           timeout=TIMEOUT_MS)
    page.evaluate("() => { const a = document.querySelector('audio.whypop-audio'); a.muted = true; return a.play(); }")
    page.wait_for_function("() => document.querySelector('audio.whypop-audio').currentTime > 0.3", timeout=60_000)
    caption = page.inner_text("[id='{\"part\":\"caption\",\"whypop\":\"song\"}']")
    assert "playing the song only" in caption and "where the explanation places it" in caption


def test_solo_a_concept_in_an_explained_track_and_in_an_upload(served, page, tmp_path):
    """Panel 5's solo plays the explanation's placed regions of the selected concept, outside the discovery songs."""
    import pipelines.explain as pe
    from whypop.cli import main
    from whypop.store import RunStore

    run, url = served
    store = RunStore(run)
    ex = store.extraction()
    eid = ex["extraction_id"]
    used = {t for g in ex["summary"]["genres"].values() for t in g["discovery"]}
    track = next(t for t in store.tracks(status="ok") if t.track_id not in used and t.genre == "Hats").track_id
    song = tmp_path / "fresh hats.wav"
    assert main(["demo", "--make-song", "Hats", "--seed", "5", "--out", str(song), "--run", str(run)]) == 0
    ctx = pe.context(store, eid, "cpu", cache=False)
    concept = pe.explain_track(ctx, track)[0].concepts[0].concept_id
    up_concept = pe.explain_file(ctx, song)[0].concepts[0].concept_id

    page.goto(url + "?" + urllib.parse.urlencode({"extraction": eid, "concept": concept, "song": track}))
    page.wait_for_selector(".whypop-explained", timeout=TIMEOUT_MS)
    _solo_plays(page, f"/listen/{eid}/{concept}/song/{track}/solo.wav")

    page.goto(url + "?" + urllib.parse.urlencode({"extraction": eid, "concept": up_concept}))
    page.wait_for_selector(".whypop-upload-button", timeout=TIMEOUT_MS)
    _upload(page, song)
    page.wait_for_selector(".whypop-explained", timeout=TIMEOUT_MS)
    digest = pe.content_hash(song)
    _solo_plays(page, f"/listen/{eid}/{up_concept}/upload/{digest}/solo.wav")
    assert "fresh hats.wav" in page.inner_text("[id='{\"part\":\"caption\",\"whypop\":\"song\"}']")
    assert not page.errors, page.errors
