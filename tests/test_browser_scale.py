"""The dashboard at real scale in headless Chromium: no marker hides another, panel 5's labels never collide.

Runs on synthetic runs of the thesis' size (8 genres x 25 concepts, 8,000 tracks) and of
16 genres x 25 concepts (:mod:`whypop.synthetic`), and on the busiest song of the demo
run. Overlap is measured from Plotly's own layout: each marker's pixel centre from the
rendered graph's axes (``_fullLayout.xaxis.l2p``) and its diameter from the trace's
marker sizes; a marker counts as hidden when another disc covers more than half of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servers import ThreadServer, chromium  # noqa: F401 (chromium: fixture)
from whypop.synthetic import SCALES, build_synthetic_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 30_000
GRAPH = "[id='{{\"part\":\"graph\",\"whypop\":\"{}\"}}'] .js-plotly-plot"
P1, P2 = GRAPH.format("importance"), GRAPH.format("clusters")
P5 = ".whypop-song-graph .js-plotly-plot"
MAX_HIDDEN = 0.05

# share of markers (traces "concepts" and "clusters") more than half covered by another marker
JS_HIDDEN = """(sel) => {
  const gd = document.querySelector(sel); const fl = gd._fullLayout;
  const discs = [];
  gd.data.forEach((tr) => {
    if (tr.meta !== 'concepts' && tr.meta !== 'clusters') return;
    const sizes = Array.isArray(tr.marker.size) ? tr.marker.size : tr.x.map(() => tr.marker.size);
    tr.x.forEach((x, j) => discs.push([fl.xaxis.l2p(x), fl.yaxis.l2p(tr.y[j]), sizes[j] / 2]));
  });
  const lens = (d, r, R) => {
    if (d >= r + R) return 0;
    if (d <= Math.abs(R - r)) return Math.PI * Math.min(r, R) ** 2;
    const a = r * r * Math.acos((d * d + r * r - R * R) / (2 * d * r));
    const b = R * R * Math.acos((d * d + R * R - r * r) / (2 * d * R));
    return a + b - 0.5 * Math.sqrt((-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R));
  };
  let hidden = 0;
  discs.forEach((p, i) => {
    for (let j = 0; j < discs.length; j++) {
      if (j === i) continue;
      const q = discs[j];
      if (lens(Math.hypot(p[0] - q[0], p[1] - q[1]), p[2], q[2]) > 0.5 * Math.PI * p[2] * p[2]) { hidden++; break; }
    }
  });
  return {n: discs.length, hidden: hidden, size: discs.length ? discs[0][2] * 2 : null};
}"""


@pytest.fixture(scope="module", params=["thesis", "wide"])
def scale_run(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, build_synthetic_run(tmp_path_factory.mktemp(request.param) / "run", SCALES[request.param])


@pytest.fixture()
def page(chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def _wait_panels(page) -> None:
    for sel in (P1, P2):
        page.wait_for_function(f"() => {{ const gd = document.querySelector({json.dumps(sel)}); "
                               "return gd && gd.data && gd.data.some(t => t.meta === 'concepts') && gd._fullLayout; }")


def test_panels_1_and_2_hide_no_marker_at_scale(scale_run, page):
    from whypop.app import create_app

    name, run = scale_run
    spec = SCALES[name]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    server = ThreadServer(create_app(run, read_only=True).server)
    try:
        page.goto(server.url + "/", wait_until="load")
        _wait_panels(page)
        for sel in (P1, P2):
            m = page.evaluate(JS_HIDDEN, sel)
            print(name, sel, m)
            assert m["n"] >= spec.genres * spec.concepts
            assert m["hidden"] / m["n"] < MAX_HIDDEN, (name, sel, m)
            assert m["size"] >= 4
        # the genre filter appears with many genres; picking two redraws the swarm with bigger markers
        page.wait_for_timeout(500)  # the filter's own callback (options, visibility) follows the extraction's
        shown = page.locator("[id='{\"part\":\"genres\",\"whypop\":\"importance\"}']").is_visible()
        assert shown == (spec.genres > 8)
        if shown:
            before = page.evaluate(JS_HIDDEN, P1)["size"]
            page.wait_for_function("() => document.body.innerText.includes('all genres (pick some')")
            # the value a pick in the dropdown sets (Dash's own prop setter: the same callback chain runs)
            page.evaluate("() => window.dash_clientside.set_props({part: 'genres', whypop: 'importance'}, "
                          "{value: ['Folk', 'Rock']})")
            page.wait_for_function(f"() => document.querySelector({json.dumps(P1)}).data"
                                   ".filter(t => t.meta === 'concepts').length === 2")
            after = page.evaluate(JS_HIDDEN, P1)
            assert after["size"] > before and after["hidden"] == 0, (before, after)
        # clicking a cluster's marker lists its concepts under the map
        xy = page.evaluate(f"""() => {{ const gd = document.querySelector({json.dumps(P2)}); const fl = gd._fullLayout;
            const tr = gd.data.find(t => t.meta === 'clusters'); const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
            return [r.left + fl.xaxis.l2p(tr.x[0]), r.top + fl.yaxis.l2p(tr.y[0]), tr.customdata[0].cluster]; }}""")
        page.mouse.move(xy[0], xy[1])
        page.mouse.click(xy[0], xy[1])
        page.wait_for_function("() => document.querySelectorAll('.whypop-cluster-members li').length > 0")
        head = page.locator(".whypop-cluster-members div").first.inner_text()
        assert head.startswith(f"cluster {xy[2]}:"), head
        assert not errors, errors
    finally:
        server.stop()


@pytest.mark.xfail(reason="on a demo run built from scratch a legend box ends past the figure frame; open, see the note", strict=False)
def test_panel_5_labels_never_collide_on_the_busiest_demo_song(demo_run, page):
    from whypop.app import create_app
    from whypop.app.data import AppData
    from whypop.store import RunStore

    data = AppData(RunStore(demo_run))
    eid = data.latest_extraction()
    view = data.view(eid)
    songs = [t for ids in view.discovery.values() for t in ids]
    song = max(songs, key=lambda t: (len(data.placements(eid, t)), t))
    placements = data.placements(eid, song)
    names = list(dict.fromkeys(p.name for p in placements))
    height, width = data.spectrogram_shape(song)
    duration = data.audio.duration
    data.store.close()
    assert len(placements) > 10, "the demo's busiest song should be crowded"
    server = ThreadServer(create_app(demo_run, read_only=True).server)
    try:
        page.goto(f"{server.url}/?extraction={eid}&song={song}", wait_until="load")
        page.wait_for_function(f"() => {{ const gd = document.querySelector({json.dumps(P5)}); "
                               f"return gd && gd.layout && gd.layout.images && gd.layout.images.length && "
                               f"gd.querySelectorAll('.annotation').length >= {min(len(names), 2)}; }}")
        boxes = page.evaluate(f"""() => Array.from(document.querySelectorAll({json.dumps(P5)} + ' .annotation'))
            .map(a => {{ const r = a.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, a.textContent]; }})""")
        texts = [b[4] for b in boxes]
        assert texts[: len(names)] == names[: len(texts)]  # one legend line per concept, in order of appearance
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                overlap_w = min(a[2], b[2]) - max(a[0], b[0])
                overlap_h = min(a[3], b[3]) - max(a[1], b[1])
                assert overlap_w <= 0.5 or overlap_h <= 0.5, (a, b)
        frame = page.evaluate(f"() => {{ const r = document.querySelector({json.dumps(P5)}).getBoundingClientRect(); "
                              "return [r.left, r.top, r.right, r.bottom]; }")
        assert all(frame[0] <= b[0] and b[2] <= frame[2] + 1 and frame[1] <= b[1] and b[3] <= frame[3] + 1 for b in boxes)
        # hovering inside a region names it
        p = placements[0]
        page.locator(P5).scroll_into_view_if_needed()
        xy = page.evaluate(f"""([bx, by]) => {{ const gd = document.querySelector({json.dumps(P5)}); const fl = gd._fullLayout;
            const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
            return [r.left + fl.xaxis.l2p(bx), r.top + fl.yaxis.l2p(by)]; }}""",
                           [(p.box[0] + p.box[2]) / 2 * duration / width, height - (p.box[1] + p.box[3]) / 2])
        page.mouse.move(*xy)
        page.wait_for_function(f"() => {{ const h = document.querySelector({json.dumps(P5)} + ' .hoverlayer'); "
                               f"return h && h.textContent.includes({json.dumps(p.name)}); }}")
    finally:
        server.stop()
