"""Serve benchmark: gunicorn (2 workers) on a run, simulated users clicking concepts and songs.

Prints one JSON line::

    {"p50_ms": ..., "p95_ms": ..., "errors": ..., "first_page_bytes": ..., ...}

``p50_ms``/``p95_ms``: latency of the panel-filling callbacks (panel 3 gallery, panel 4
radar, panel 5 song view) as the users saw them; ``errors``: failed requests of any kind;
``first_page_bytes``: everything headless Chromium transferred for the first page load
(headers + encoded bodies, until the network is idle; null without Chromium).

Each simulated user is a thread with its own keep-alive connection that behaves like the
browser: it posts the same ``/_dash-update-component`` bodies the Dash renderer sends,
built from ``/_dash-dependencies`` and the values the server itself returned (concept ids
from the panel-1 figure, songs from the radar), fetches the images a browser would
(once each: the browser caches them), then thinks for ``--think`` seconds (uniform
0.5x..1.5x) before the next click. Without ``--run`` a demo run is built first (prepare,
train, extract), or with ``--fake`` the small synthetic run of the tests is used, or with
``--scale thesis`` (8 genres x 25 concepts, 10 examples each, 8,000 tracks) or ``--scale wide``
(16 genres) a synthetic run of real size (:mod:`whypop.synthetic`; ``build_s``: its build time).
``overview_ms``/``overview_bytes``: the callback that draws panels 1 and 2 for the extraction
(time and uncompressed JSON size), the one that grows with the number of concepts.

    python benchmarks/serve.py [--run RUN_DIR | --fake | --scale thesis] [--users 20] [--seconds 30] [--think 1.0]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from whypop.app import ids  # noqa: E402
from whypop.app.payloads import callback_payload, find_callback, prop_key  # noqa: E402

K = prop_key
PANELS = ("gallery", "radar", "song")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="run directory with a complete extraction (default: build a demo run)")
    p.add_argument("--fake", action="store_true", help="use the tests' small synthetic run")
    p.add_argument("--scale", choices=("thesis", "wide"), help="a synthetic run of real size (see whypop.synthetic)")
    p.add_argument("--no-baseline", action="store_true",
                   help="with --scale: skip the baseline (the same load on the small fake run, measured first)")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--think", type=float, default=1.0, help="mean seconds between a user's clicks")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="gunicorn threads per worker (default: the config's)")
    p.add_argument("--prefix", default="/")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="whypop-bench-"))
    try:
        baseline = None
        if args.scale and not args.no_baseline:
            # the same load on the tests' small run, measured now on the same (possibly busy) machine
            fake = argparse.Namespace(**{**vars(args), "scale": None, "fake": True, "run": None})
            small = _measure(fake, tmp / "baseline")
            baseline = {k: small[k] for k in ("p50_ms", "p95_ms", "errors", "overview_ms", "overview_bytes",
                                              "first_page_bytes")}
        run_tmp = tmp / "main"
        result = _measure(args, run_tmp)
        if baseline is not None:
            result["baseline_fake"] = baseline
            if baseline["p95_ms"] and result["p95_ms"]:
                result["p95_vs_baseline"] = round(result["p95_ms"] / baseline["p95_ms"], 2)
        print(json.dumps(result, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _measure(args, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    run, kind = _run_dir(args, tmp)
    proc, base = _start_gunicorn(run, args)
    try:
        _wait(base, proc)
        first = first_page_bytes(base)
        result = load(base, args)
    finally:
        _stop(proc)
    result.update(first_page_bytes=first, run=kind, users=args.users, seconds=args.seconds,
                  think_s=args.think, workers=args.workers, build_s=getattr(args, "build_s", None))
    return result


# -- the run and the server ----------------------------------------------------------------------


def _run_dir(args, tmp: Path) -> tuple[Path, str]:
    if args.run:
        return Path(args.run).resolve(), str(Path(args.run))
    if args.fake:
        sys.path.insert(0, str(REPO / "tests"))
        from app_fixtures import make_fake_run

        return make_fake_run(tmp / "run"), "fake"
    if args.scale:
        from whypop.synthetic import SCALES, build_synthetic_run

        start = time.perf_counter()
        run = build_synthetic_run(tmp / "run", SCALES[args.scale])
        args.build_s = round(time.perf_counter() - start, 1)
        return run, f"synthetic-{args.scale}"
    from whypop.config import load_config
    from whypop.store import RunStore

    import pipelines.demo

    root = tmp / "demo"
    store = RunStore(root, create=True)
    pipelines.demo.build(load_config("demo"), store, workers=2)
    store.close()
    return root, "demo"


def _start_gunicorn(run: Path, args) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WHYPOP_RUN": str(run), "WHYPOP_PREFIX": args.prefix, "WHYPOP_BIND": f"127.0.0.1:{port}",
           "WEB_CONCURRENCY": str(args.workers), "WHYPOP_SECRET_KEY": "benchmark", "WHYPOP_LOG_LEVEL": "warning"}
    if args.threads:
        env["WHYPOP_THREADS"] = str(args.threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "config" / "gunicorn.conf.py"), "whypop.app.server:create_server()"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    prefix = "/" + "".join(p + "/" for p in args.prefix.split("/") if p)
    return proc, f"http://127.0.0.1:{port}{prefix}"


def _wait(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- first page ------------------------------------------------------------------------------------


def first_page_bytes(url: str) -> int | None:
    """Bytes headless Chromium transfers to load the page (None when Chromium is missing)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        finished = []
        page.on("requestfinished", lambda r: finished.append(r))
        page.goto(url, wait_until="networkidle")
        page.wait_for_timeout(500)
        page.wait_for_load_state("networkidle")
        sizes = [r.sizes() for r in finished]
        browser.close()
    total = sum(s["responseBodySize"] + s["responseHeadersSize"] for s in sizes)
    return total


# -- simulated users -------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection posting Dash callbacks and fetching images."""

    def __init__(self, base: str, deps: list[dict]):
        u = urlsplit(base)
        self.host, self.port, self.prefix = u.hostname, u.port, u.path
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.deps = deps
        self.cache: set[str] = set()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Accept-Encoding": "gzip", "Connection": "keep-alive"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def callback(self, output: tuple, values: dict, changed: tuple | None = None) -> tuple[float, dict | None]:
        dep = find_callback(self.deps, output)
        body = callback_payload(dep, values, changed=None if changed is None else [K(*changed)])
        start = time.perf_counter()
        status, data = self.request("POST", self.prefix + "_dash-update-component", json.dumps(body).encode())
        ms = (time.perf_counter() - start) * 1000
        if status == 204:
            return ms, {}
        if status != 200:
            return ms, None
        import gzip

        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        out = {}
        for sid, props in json.loads(data)["response"].items():
            for prop, value in props.items():
                out[f"{sid}.{prop}"] = value
        return ms, out

    def images(self, paths: list[str]) -> list[tuple[float, int]]:
        out = []
        for path in paths:
            if path in self.cache:
                continue
            start = time.perf_counter()
            status, _ = self.request("GET", path)
            out.append(((time.perf_counter() - start) * 1000, status))
            self.cache.add(path)
        return out


def _json_get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.loads(r.read())


def load(base: str, args) -> dict:
    deps = _json_get(base, "_dash-dependencies")
    setup = Client(base, deps)
    # what a page load does: the URL sync, then the extraction's panels
    _, state = setup.callback((ids.links("extraction"), "data"), {K(ids.links("location"), "search"): ""},
                              changed=(ids.links("location"), "search"))
    extraction = state[K(ids.links("extraction"), "data")]
    features = state[K(ids.radar("source"), "value")]
    overview_ms, panels = setup.callback((ids.importance("graph"), "figure"), {K(ids.links("extraction"), "data"): extraction})
    overview_bytes = len(json.dumps(panels))
    fig = panels[K(ids.importance("graph"), "figure")]
    concepts = [c for t in fig["data"] if t.get("meta") == "concepts" for c in t["customdata"]]
    if not concepts:
        raise SystemExit("the run's extraction has no concepts to click")

    records: dict[str, list[float]] = {name: [] for name in ("sync", *PANELS, "images")}
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def record(name: str, ms: float, ok: bool) -> None:
        with lock:
            if ok:
                records[name].append(ms)
            else:
                errors[0] += 1

    def user(n: int) -> None:
        rng = random.Random(args.seed * 1000 + n)
        c = Client(base, deps)
        cur = {"concept": None, "song": None, "songs": []}
        base_values = {K(ids.links("extraction"), "data"): extraction, K(ids.header("extraction"), "value"): extraction,
                       K(ids.radar("source"), "value"): features}
        time.sleep(rng.uniform(0, args.think))  # users arrive spread out
        while time.monotonic() < stop_at:
            try:
                if cur["songs"] and rng.random() < 0.35:
                    song = rng.choice(cur["songs"])
                    values = {**base_values, K(ids.links("concept"), "data"): cur["concept"],
                              K(ids.links("song"), "data"): cur["song"],
                              K(ids.radar("graph"), "clickData"): {"points": [{"customdata": song}]}}
                    ms, out = c.callback((ids.links("song"), "data"), values, changed=(ids.radar("graph"), "clickData"))
                    record("sync", ms, out is not None)
                    cur["song"] = song
                    v = {K(ids.links("song"), "data"): song, K(ids.links("extraction"), "data"): extraction,
                         K(ids.links("concept"), "data"): cur["concept"]}
                    ms, out = c.callback((ids.song("graph"), "figure"), v)
                    record("song", ms, out is not None)
                    if out:
                        src = out[K(ids.song("graph"), "figure")]["layout"]["images"][0]["source"]
                        for ms_img, status in c.images([urlsplit(src).path, out[K(ids.song("audio"), "src")]]):
                            record("images", ms_img, status == 200)
                    ms, out2 = c.callback((ids.song("picker"), "options"), v)
                    record("sync", ms, out2 is not None)
                else:
                    concept = rng.choice(concepts)
                    values = {**base_values, K(ids.links("concept"), "data"): cur["concept"],
                              K(ids.links("song"), "data"): cur["song"],
                              K(ids.importance("graph"), "clickData"): {"points": [{"customdata": concept}]}}
                    ms, out = c.callback((ids.links("concept"), "data"), values, changed=(ids.importance("graph"), "clickData"))
                    record("sync", ms, out is not None)
                    cur["concept"] = concept
                    v = {K(ids.links("concept"), "data"): concept, K(ids.links("extraction"), "data"): extraction,
                         K(ids.radar("source"), "value"): features}
                    ms, out = c.callback((ids.examples("gallery"), "children"), v)
                    record("gallery", ms, out is not None)
                    if out:
                        srcs = [img["props"]["src"] for item in out[K(ids.examples("gallery"), "children")]
                                if isinstance(item, dict) and item["props"].get("className") == "whypop-example"
                                for img in item["props"]["children"][0]["props"]["children"]]
                        for ms_img, status in c.images(srcs):
                            record("images", ms_img, status == 200)
                    ms, out = c.callback((ids.radar("graph"), "figure"), v)
                    record("radar", ms, out is not None)
                    if out:
                        cur["songs"] = [t["meta"] for t in out[K(ids.radar("graph"), "figure")]["data"]]
            except Exception:  # a broken connection or a bad answer counts as an error, the user goes on
                with lock:
                    errors[0] += 1
            time.sleep(args.think * rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(args.users)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 60)
    elapsed = time.monotonic() - started
    panel = sorted(ms for name in PANELS for ms in records[name])

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)

    return {
        "overview_ms": round(overview_ms, 1),
        "overview_bytes": overview_bytes,
        "p50_ms": pct(panel, 0.50),
        "p95_ms": pct(panel, 0.95),
        "errors": errors[0],
        "panel_requests": len(panel),
        "requests": sum(len(v) for v in records.values()) + errors[0],
        "requests_per_s": round((sum(len(v) for v in records.values()) + errors[0]) / elapsed, 1),
        "per_callback": {name: {"n": len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95),
                                "mean_ms": round(statistics.fmean(v), 1) if v else None}
                         for name, v in records.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
