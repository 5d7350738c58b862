"""Take the README's screenshots from the real app in headless Chromium.

    python scripts/screenshots.py [--run runs/demo] [--out docs/img]

Serves the dashboard for a run (build one first with `whypop demo --no-serve`), opens it
in Debian's Chromium through Playwright (no browser download), selects the most
important concept of the first genre and one of its songs through the URL (the
selection lives there), hovers the concept, and saves one PNG per panel plus the whole
page.
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


def pick(run: Path) -> dict:
    """The view to show: the latest extraction, its strongest significant concept and a song of it."""
    from whypop.store import RunStore

    store = RunStore(run)
    ex = store.extraction()
    concepts = store.concepts(ex["extraction_id"])
    best = max(concepts, key=lambda c: (c["significant"] and not c["flags"], c["tcav_mean"]))
    patches = store.patches(ex["extraction_id"], best["concept_id"])
    return {"extraction": ex["extraction_id"], "concept": best["concept_id"],
            "song": patches[0]["track_id"], "features": "audio"}


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
    server = make_server("127.0.0.1", 0, create_app(args.run, read_only=True).server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/?{urlencode(view)}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            page.goto(url, wait_until="load")
            page.wait_for_function("() => document.querySelectorAll('img.whypop-patch').length > 0 && "
                                   "Array.from(document.querySelectorAll('img')).every(i => i.complete)")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4")
            # hover the selected concept in panel 1 (plotly's own hover event -> the highlight)
            page.evaluate("""(cid) => {
                const gd = document.querySelector("[id='{\\"part\\":\\"graph\\",\\"whypop\\":\\"importance\\"}'] .js-plotly-plot");
                gd.data.forEach((tr, i) => { if (tr.meta === 'concepts') { const j = tr.customdata.indexOf(cid);
                    if (j >= 0) Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: j}]); } });
            }""", view["concept"])
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            cards = page.locator(".whypop .card.shadow-sm")  # the five panels, in order
            for i, name in enumerate(PANELS):
                cards.nth(i).screenshot(path=str(out / f"panel-{i + 1}-{name}.png"))
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots of {url} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
