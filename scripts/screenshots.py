"""Take the README's screenshots from the real app in headless Chromium.

    python scripts/screenshots.py [--run runs/demo] [--out docs/img]

Serves the dashboard for a run (build one first with `whypop demo --no-serve`), opens it
in Debian's Chromium through Playwright (no browser download), selects the most
important concept of the first genre and one of its songs through the URL (the
selection lives there), hovers the concept, and saves one PNG per panel plus the whole
page. On a demo run it also takes the two case studies of docs/case_studies.md: the
most important concept of the genre whose top concept sits best on its planted
signature (``case-signature-*.png``), and the flagged concept on the planted silent
bands (``case-artefact-*.png``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PANELS = ("importance", "clusters", "examples", "radar", "song")


def _view(store, extraction_id: int, concept_id: int) -> dict:
    patches = store.patches(extraction_id, concept_id)
    return {"extraction": extraction_id, "concept": concept_id, "song": patches[0]["track_id"], "features": "audio"}


def pick(run: Path) -> dict:
    """The view to show: the latest extraction, its strongest significant concept and a song of it."""
    from whypop.store import RunStore

    store = RunStore(run)
    ex = store.extraction()
    concepts = store.concepts(ex["extraction_id"])
    best = max(concepts, key=lambda c: (c["significant"] and not c["flags"], c["tcav_mean"]))
    return _view(store, ex["extraction_id"], best["concept_id"])


def case_views(run: Path) -> dict[str, dict]:
    """The case studies' views on a demo run (none without planted ground truth)."""
    from whypop.store import RunStore

    store = RunStore(run)
    ex = store.extraction()
    summary = ex["summary"] or {}
    genres = {g: v for g, v in (summary.get("genres") or {}).items() if v.get("overlap") is not None}
    out = {}
    if genres:
        genre = max(genres, key=lambda g: genres[g]["overlap"] / max(genres[g]["chance"], 1e-9))
        out["signature"] = _view(store, ex["extraction_id"], genres[genre]["top_concept"])
    flagged = (summary.get("artefact") or {}).get("flagged_on_planted") or []
    if flagged:
        concepts = {c["concept_id"]: c for c in store.concepts(ex["extraction_id"])}
        out["artefact"] = _view(store, ex["extraction_id"], max(flagged, key=lambda c: concepts[c]["tcav_mean"]))
    return out


def shoot(page, base: str, view: dict, out: Path, prefix: str, panels: tuple[str, ...] = PANELS,
          only_concept: bool = False) -> None:
    """Open a view, hover its concept, save the page and the chosen panels.

    ``only_concept`` turns on panel 5's "only the selected concept" switch first.
    """
    page.goto(f"{base}/?{urlencode(view)}", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('img.whypop-patch').length > 0 && "
                           "Array.from(document.querySelectorAll('img')).every(i => i.complete)")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4")
    # hover the selected concept in panel 1 (plotly's own hover event -> the highlight)
    page.evaluate("""(cid) => {
        const gd = document.querySelector("[id='{\\"part\\":\\"graph\\",\\"whypop\\":\\"importance\\"}'] .js-plotly-plot");
        gd.data.forEach((tr, i) => { if (tr.meta === 'concepts') { const j = tr.customdata.indexOf(cid);
            if (j >= 0) Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: j}]); } });
    }""", view["concept"])
    if only_concept:
        with page.expect_response(lambda r: "?concept=" in r.url):
            page.get_by_label("only the selected concept").check()
    page.wait_for_timeout(1500)
    if prefix == "panel":
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
    cards = page.locator(".whypop .card.shadow-sm")  # the five panels, in order
    for i, name in enumerate(PANELS):
        if name in panels:
            cards.nth(i).screenshot(path=str(out / f"{prefix}-{i + 1}-{name}.png"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(REPO / "runs" / "demo"))
    p.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from whypop.app import create_app

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    view = pick(Path(args.run))
    cases = case_views(Path(args.run))
    server = make_server("127.0.0.1", 0, create_app(args.run, read_only=True).server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            shoot(page, base, view, out, "panel")
            for name, case in cases.items():
                shoot(page, base, case, out, f"case-{name}", ("importance", "examples", "song"), only_concept=True)
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots of {base}/?{urlencode(view)} and {len(cases)} case studies in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
