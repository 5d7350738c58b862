"""The report and figure export in real headless Chromium (Playwright, Debian's chromium).

The demo's report opens from disk (file://) with every network request blocked: its
figures draw, every image loads, no console error. The Plotly toolbar's PNG and SVG
buttons download files, in the report and in the dashboard, whose "Download report"
button delivers the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servers import ThreadServer, chromium  # noqa: F401 (chromium: fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 30_000
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_report(demo_run, tmp_path_factory) -> tuple[Path, dict]:
    from whypop.app.report import build_report

    out = tmp_path_factory.mktemp("report") / "demo report.html"  # a space: file URLs must still work
    result = build_report(demo_run, out)
    assert result.file.total_bytes < 15_000_000, result.file  # the budget for the demo
    return out, result.to_dict()


@pytest.fixture()
def offline_page(chromium):  # noqa: F811
    """A page that may load file:// URLs only; everything else is aborted and recorded."""
    context = chromium.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.blocked = []
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            page.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    yield page
    context.close()


def _scroll_through(page) -> None:
    """Scroll to the bottom in screen steps, so every lazily drawn figure draws."""
    height = page.evaluate("document.body.scrollHeight")
    for y in range(0, height + 1000, 700):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(20)
    page.wait_for_function("[...document.querySelectorAll('div[data-fig]')].every(d => d._fullLayout)",
                           timeout=TIMEOUT_MS)


def test_demo_report_opens_offline(demo_report, offline_page):
    path, result = demo_report
    page = offline_page
    page.goto(path.as_uri())
    _scroll_through(page)
    figures = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
    assert figures >= 5 and figures == result["file"]["figures"]
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=TIMEOUT_MS)
    images = page.evaluate("[...document.images].map(i => [i.alt, i.naturalWidth])")
    assert len(images) == result["file"]["images"] > 0
    assert [alt for alt, width in images if not width > 0] == []
    # the examples' clips (MP3 data URIs) decode and play
    assert page.evaluate("document.querySelectorAll('audio').length") == result["file"]["audio"] > 0
    page.evaluate("() => { const a = document.querySelector('audio'); a.preload = 'auto'; a.load(); a.play(); }")
    page.wait_for_function("() => { const a = document.querySelector('audio'); return a.duration > 0 && a.currentTime > 0; }",
                           timeout=TIMEOUT_MS)
    # hover works: a concept point of the beeswarm shows its hover label
    page.evaluate("window.scrollTo(0, 0)")
    page.locator(".wp-fig").nth(1).scroll_into_view_if_needed()
    xy = page.evaluate("""() => {
      const gd = document.querySelectorAll('.js-plotly-plot')[1];
      const pt = gd.querySelector('.scatterlayer .trace:not(:first-child) path.point') || gd.querySelector('path.point');
      const b = pt.getBoundingClientRect(); return [b.left + b.width / 2, b.top + b.height / 2];
    }""")
    page.mouse.move(*xy)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=TIMEOUT_MS)
    assert page.errors == [] and page.blocked == [], (page.errors, page.blocked)


def test_png_and_svg_download_from_the_report(demo_report, offline_page):
    path, result = demo_report
    page = offline_page
    page.goto(path.as_uri())
    fig = page.locator(".wp-fig").nth(1)  # the importance beeswarm
    fig.wait_for(state="attached")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=TIMEOUT_MS)
    fig.scroll_into_view_if_needed()
    fig.hover()
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        fig.locator(".modebar-btn[data-title='Download plot as a PNG']").click()
    download = info.value
    assert download.suggested_filename == f"whypop-{result['run']}-e{result['extraction_id']}-importance.png"
    assert Path(download.path()).read_bytes()[:8] == PNG
    fig.hover()
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        fig.locator(".modebar-btn[data-title='Download plot as SVG']").click()
    assert info.value.suggested_filename.endswith("-importance.svg")
    assert b"<svg" in Path(info.value.path()).read_bytes()[:2000]
    assert page.errors == [] and page.blocked == []


@pytest.mark.parametrize("read_only", [True, False], ids=["in-request", "background-job"])
def test_dashboard_figure_png_and_report_download(demo_run, chromium, tmp_path, read_only):  # noqa: F811
    from whypop.app import create_app, ids

    # read-only: no job manager, the report is built in the request; else a diskcache background job
    app = create_app(demo_run, read_only=read_only)
    server = ThreadServer(app.server)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    errors = []
    try:
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url + "/")
        sel = "[id='" + json.dumps(ids.importance("graph"), separators=(",", ":"), sort_keys=True) + "']"
        page.wait_for_function(f"() => {{ const gd = document.querySelector({json.dumps(sel + ' .js-plotly-plot')}); "
                               "return gd && gd.data && gd.data.some(t => t.meta === 'concepts'); }",
                               timeout=TIMEOUT_MS)
        graph = page.locator(sel)
        graph.hover()
        with page.expect_download(timeout=TIMEOUT_MS) as info:
            graph.locator(".modebar-btn[data-title='Download plot as a PNG']").click()
        eid = app.whypop_data.latest_extraction()
        assert info.value.suggested_filename == f"whypop-{demo_run.name}-e{eid}-importance.png"
        assert Path(info.value.path()).read_bytes()[:8] == PNG
        assert graph.locator(".modebar-btn[data-title='Download plot as SVG']").count() == 1
        with page.expect_download(timeout=120_000) as info:
            page.locator("[id='" + json.dumps(ids.report("start"), separators=(",", ":"), sort_keys=True) + "']").click()
        assert info.value.suggested_filename == f"{demo_run.name}-extraction-{eid}.html"
        html = Path(info.value.path()).read_text()
        assert html.startswith("<!DOCTYPE html>") and "Why Pop? report" in html
        assert ("<audio controls" in html) == (not read_only)  # in the request: no clips (worker timeout)
        assert errors == []
    finally:
        context.close()
        server.stop()
