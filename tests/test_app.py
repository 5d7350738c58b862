"""The app factory, the selection logic and the server callbacks (through Dash's HTTP API)."""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

import flask
import pytest

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop.app import create_app, ids, links, normalise_prefix
from whypop.app.data import AppData
from whypop.app.payloads import callback_payload, find_callback, prop_key
from whypop.errors import StoreError
from whypop.store import RunStore

REPO = Path(__file__).resolve().parents[1]
K = prop_key  # K(id, prop): the key of a value passed to Dash.call


@pytest.fixture(scope="module")
def data(fake_run):  # noqa: F811
    return AppData(RunStore(fake_run))


class Dash:
    """Post to an app's callbacks the way the browser does."""

    def __init__(self, app):
        self.app = app
        self.client = app.server.test_client()
        self.prefix = app.config.routes_pathname_prefix
        self.deps = self.client.get(self.prefix + "_dash-dependencies").get_json()

    def call(self, output, values: dict, changed=None) -> dict:
        dep = find_callback(self.deps, output)
        body = callback_payload(dep, values,
                                changed=None if changed is None else [prop_key(*changed)])
        r = self.client.post(self.prefix + "_dash-update-component", json=body)
        if r.status_code == 204:
            return {}
        assert r.status_code == 200, r.data[:500]
        out = {}
        for sid, props in r.get_json()["response"].items():
            for prop, value in props.items():
                out[(sid, prop)] = value
        return out


def _get(out: dict, id_: dict, prop: str):
    return out[(prop_key(id_, prop).rsplit(".", 1)[0], prop)]


@pytest.fixture(scope="module")
def dash_app(fake_run):  # noqa: F811
    return Dash(create_app(fake_run))


# -- selection logic (pure) ------------------------------------------------------------------


def test_resolve_checks_every_id(data):
    sel = links.resolve(data, "1", "5", "bells_00", "audio")
    assert sel == links.Selection(1, 5, "bells_00", "audio")
    assert links.resolve(data).extraction == 2  # latest complete
    assert links.resolve(data, "3").extraction == 2  # 3 failed: fall back to the latest
    assert links.resolve(data, "../1").extraction == 2
    assert links.resolve(data, 2, 5).concept is None  # concept 5 belongs to extraction 1
    assert links.resolve(data, 2, "105abc").concept is None
    assert links.resolve(data, 2, True).concept is None
    assert links.resolve(data, 2, None, "nope").song is None
    assert links.resolve(data, 2, None, "broken_00").song is None  # failed track
    assert links.resolve(data, features="bogus").features == "echonest"  # the run has Echo Nest data


def test_features_switch_falls_back_to_audio_without_echonest(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    data = AppData(store)
    assert links.resolve(data, features="echonest").features == "audio"


def test_search_round_trip(data):
    sel = links.Selection(2, 105, "kick_01", "audio")
    q = links.parse_search(sel.search())
    assert links.resolve(data, q["extraction"], q["concept"], q["song"], q["features"]) == sel
    assert links.parse_search("") == {} and links.parse_search(None) == {}


def test_next_selection_events(data):
    cur = links.Selection(2, None, None, "audio")
    ev = dict(search=None, extraction=None, song=None, features="audio", click=None)
    click = {"points": [{"customdata": 105, "curveNumber": 2}]}
    assert links.next_selection(data, "importance", cur, **{**ev, "click": click}).concept == 105
    assert links.next_selection(data, "clusters", cur, **{**ev, "click": click}).concept == 105
    centre = {"points": [{"customdata": {"cluster": 1}}]}
    assert links.next_selection(data, "clusters", cur, **{**ev, "click": centre}) == cur
    radar = {"points": [{"customdata": "kick_02"}]}
    assert links.next_selection(data, "radar", cur, **{**ev, "click": radar}).song == "kick_02"
    assert links.next_selection(data, "radar", cur, **{**ev, "click": {"points": []}}) == cur
    moved = links.next_selection(data, "extraction", links.Selection(2, 105, "kick_02", "audio"), **{**ev, "extraction": 1})
    assert moved == links.Selection(1, None, "kick_02", "audio")  # concept ids are per extraction
    url = links.next_selection(data, None, cur, **{**ev, "search": "?extraction=1&concept=3&song=voice_00"})
    assert url == links.Selection(1, 3, "voice_00", "echonest")
    assert links.next_selection(data, "features", cur, **{**ev, "features": "echonest"}).features == "echonest"
    assert links.next_selection(data, "song", cur, **{**ev, "song": "voice_03"}).song == "voice_03"
    assert links.next_selection(data, "song", cur, **{**ev, "song": "../etc"}).song is None


def test_overview_and_model_line(data):
    fig1, fig2, similar, model = links.overview(data, 2)
    assert any(t.meta == "concepts" for t in fig1.data) and any(t.meta == "clusters" for t in fig2.data)
    view = data.view(2)
    assert similar["similar"] == {str(k): list(v) for k, v in view.similar.items()}
    assert set(similar["cluster"]) == {str(c.concept_id) for c in view.concepts}
    text = " ".join(str(c.children) for c in model)
    assert "test 81.0%" in text and "validation 84.0%" in text and "resnet18" in text
    fig1, _, similar, _ = links.overview(data, None)
    assert similar is None and "no complete extraction" in fig1.layout.annotations[0].text


# -- callbacks through HTTP ---------------------------------------------------------------------


def test_page_load_fills_state_from_the_url(dash_app):
    out = dash_app.call((ids.links("extraction"), "data"),
                        {K(ids.links("location"), "search"): "?extraction=1&concept=3&song=kick_01"},
                        changed=(ids.links("location"), "search"))
    assert _get(out, ids.links("extraction"), "data") == 1
    assert _get(out, ids.links("concept"), "data") == 3
    assert _get(out, ids.links("song"), "data") == "kick_01"
    assert _get(out, ids.header("extraction"), "value") == 1
    assert _get(out, ids.links("location"), "search") == "?extraction=1&concept=3&song=kick_01&features=echonest"


def test_click_selects_concept_and_updates_url(dash_app):
    out = dash_app.call(
        (ids.links("concept"), "data"),
        {K(ids.importance("graph"), "clickData"): {"points": [{"customdata": 106}]},
         K(ids.links("extraction"), "data"): 2, K(ids.header("extraction"), "value"): 2,
         K(ids.radar("source"), "value"): "audio", K(ids.links("location"), "search"): "?extraction=2&features=audio"},
        changed=(ids.importance("graph"), "clickData"))
    assert _get(out, ids.links("concept"), "data") == 106
    assert _get(out, ids.links("location"), "search") == "?extraction=2&concept=106&features=audio"
    assert (prop_key(ids.links("extraction"), "data").rsplit(".", 1)[0], "data") not in out  # unchanged: no_update


def test_gallery_callback(dash_app):
    out = dash_app.call((ids.examples("gallery"), "children"),
                        {K(ids.links("concept"), "data"): 101, K(ids.links("extraction"), "data"): 2})
    items = _get(out, ids.examples("gallery"), "children")
    assert len(items) == 10
    srcs = [img["props"]["src"] for item in items for img in item["props"]["children"][0]["props"]["children"]]
    assert srcs[:2] == ["/img/patch/2/101/0.png", "/img/context/2/101/0.png"]
    for src in srcs:
        assert dash_app.client.get(src).status_code == 200
    title = _get(out, ids.examples("title"), "children")
    assert "Bells concept 1" in str(title)


def test_gallery_for_unknown_concept_says_so(dash_app):
    out = dash_app.call((ids.examples("gallery"), "children"),
                        {K(ids.links("concept"), "data"): 9999, K(ids.links("extraction"), "data"): 2})
    assert "not in this extraction" in str(_get(out, ids.examples("gallery"), "children"))


def test_radar_callback(dash_app, data):
    out = dash_app.call((ids.radar("graph"), "figure"),
                        {K(ids.links("concept"), "data"): 101, K(ids.links("extraction"), "data"): 2,
                         K(ids.radar("source"), "value"): "echonest"})
    fig = _get(out, ids.radar("graph"), "figure")
    songs = list(dict.fromkeys(e.track_id for e in data.examples(2, 101)))
    assert [t["meta"] for t in fig["data"]] == songs
    caption = _get(out, ids.radar("caption"), "children")
    assert caption.startswith("Echo Nest: 3 of 5 songs have data") and "among the 10 tracks" in caption
    assert "NaN" not in str(fig)


def test_song_callbacks(dash_app, data):
    out = dash_app.call((ids.song("graph"), "figure"),
                        {K(ids.links("song"), "data"): "bells_01", K(ids.links("extraction"), "data"): 2})
    fig = _get(out, ids.song("graph"), "figure")
    assert fig["layout"]["images"][0]["source"] == "/img/song/2/bells_01.png"
    assert len(fig["layout"]["shapes"]) == 1 + len(data.placements(2, "bells_01"))
    assert _get(out, ids.song("audio"), "src") == "/audio/bells_01"
    assert "patches of" in _get(out, ids.song("caption"), "children")
    out = dash_app.call((ids.song("picker"), "options"),
                        {K(ids.links("song"), "data"): None, K(ids.links("concept"), "data"): 105,
                         K(ids.links("extraction"), "data"): 2})
    options = _get(out, ids.song("picker"), "options")
    assert [o["value"] for o in options] == list(data.view(2).discovery["Kick"])


def test_song_view_narrowed_to_the_selected_concept(dash_app, data):
    placements = data.placements(2, "bells_01")
    concept = placements[0].concept_id
    mine = [p for p in placements if p.concept_id == concept]
    assert 0 < len(mine) < len(placements)  # the fake song holds this concept and others
    inputs = {K(ids.links("song"), "data"): "bells_01", K(ids.links("extraction"), "data"): 2,
              K(ids.links("concept"), "data"): concept}
    out = dash_app.call((ids.song("graph"), "figure"), {**inputs, K(ids.song("only"), "value"): True})
    fig = _get(out, ids.song("graph"), "figure")
    assert fig["layout"]["images"][0]["source"] == f"/img/song/2/bells_01.png?concept={concept}"
    assert len(fig["layout"]["shapes"]) == 1 + len(mine)  # the playhead and this concept's patches
    assert {a["text"] for a in fig["layout"]["annotations"]} == {mine[0].name}
    assert f"{len(mine)} of its {len(placements)} concept patches" in _get(out, ids.song("caption"), "children")
    # switched off, or on with no concept selected: every patch
    for only, cid in ((False, concept), (True, None)):
        out = dash_app.call((ids.song("graph"), "figure"),
                            {**inputs, K(ids.links("concept"), "data"): cid, K(ids.song("only"), "value"): only})
        assert len(_get(out, ids.song("graph"), "figure")["layout"]["shapes"]) == 1 + len(placements)


def test_callbacks_under_a_prefix_use_prefixed_urls(fake_run):  # noqa: F811
    d = Dash(create_app(fake_run, prefix="/tools/whypop/"))
    out = d.call((ids.song("graph"), "figure"), {K(ids.links("song"), "data"): "kick_00", K(ids.links("extraction"), "data"): 2})
    assert _get(out, ids.song("audio"), "src") == "/tools/whypop/audio/kick_00"
    src = _get(out, ids.song("graph"), "figure")["layout"]["images"][0]["source"]
    assert src == "/tools/whypop/img/song/2/kick_00.png"
    assert d.client.get(src).status_code == 200


# -- factory, embedding, server entry points --------------------------------------------------------


def test_two_apps_in_one_flask_server(fake_run):  # noqa: F811
    import dash._callback

    server = flask.Flask("portal")
    server.add_url_rule("/", "home", lambda: "portal home")
    a = create_app(fake_run, prefix="/a/", server=server, read_only=True)
    b = create_app(fake_run, prefix="/b/", server=server, read_only=True)
    assert a.server is b.server is server
    c = server.test_client()
    assert c.get("/").data == b"portal home"
    for prefix in ("/a/", "/b/"):
        deps = c.get(prefix + "_dash-dependencies").get_json()
        assert sum(1 for d in deps if d.get("clientside_function")) == 3
        assert len(deps) == 13  # 10 + the genre filter (2) and the cluster member list (1)
        assert c.get(prefix + "img/spec/bells_00.png").status_code == 200
    assert not dash._callback.GLOBAL_CALLBACK_LIST  # nothing registered at module level


def test_normalise_prefix():
    assert normalise_prefix(None) is None
    assert normalise_prefix("") == normalise_prefix("/") == "/"
    assert normalise_prefix("x") == normalise_prefix("/x") == normalise_prefix("/x/") == "/x/"
    assert normalise_prefix("/a//b") == "/a/b/"


def test_create_server_reads_the_environment(fake_run, monkeypatch):  # noqa: F811
    from whypop.app.server import create_server

    monkeypatch.delenv("WHYPOP_RUN", raising=False)
    with pytest.raises(StoreError, match="WHYPOP_RUN"):
        create_server()
    monkeypatch.setenv("WHYPOP_RUN", str(fake_run))
    monkeypatch.setenv("WHYPOP_PREFIX", "/team/whypop")
    server = create_server()
    c = server.test_client()
    assert c.get("/team/whypop/").status_code == 200
    assert c.get("/team/whypop/img/spec/kick_00.png").status_code == 200


def test_gunicorn_config(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.delenv("WHYPOP_BIND", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("WHYPOP_CONTROL_SOCKET", raising=False)
    conf = runpy.run_path(str(REPO / "config" / "gunicorn.conf.py"))
    assert conf["bind"] == "0.0.0.0:9123" and conf["workers"] == 2 and conf["worker_class"] == "gthread"
    assert conf["control_socket_disable"] is True and "control_socket" not in conf
    assert "whypop.app.server:create_server()" in (REPO / "Procfile").read_text()
    monkeypatch.setenv("WHYPOP_CONTROL_SOCKET", "/tmp/whypop-test.ctl")
    conf = runpy.run_path(str(REPO / "config" / "gunicorn.conf.py"))
    assert conf["control_socket"] == "/tmp/whypop-test.ctl" and "control_socket_disable" not in conf


def test_serve_command(fake_run, monkeypatch):  # noqa: F811
    import dash

    import whypop.commands.serve as serve

    seen = {}
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: seen.update(kw, prefix=self.config.requests_pathname_prefix))
    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    assert serve.main(p.parse_args(["--run", str(fake_run), "--port", "8123", "--prefix", "/x"])) == 0
    assert seen == {"host": "127.0.0.1", "port": 8123, "debug": False, "prefix": "/x/",
                    "dev_tools_disable_version_check": True}


def test_an_empty_run_still_serves(tmp_path):
    store = RunStore(tmp_path / "empty", create=True)
    d = Dash(create_app(store))
    assert d.client.get("/").status_code == 200
    assert d.client.get("/_dash-layout").status_code == 200
    out = d.call((ids.links("extraction"), "data"), {K(ids.links("location"), "search"): ""},
                 changed=(ids.links("location"), "search"))
    assert (prop_key(ids.links("extraction"), "data").rsplit(".", 1)[0], "data") not in out or \
        _get(out, ids.links("extraction"), "data") is None


def test_the_app_only_reads_the_run(fake_run, dash_app):  # noqa: F811
    def snapshot():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(fake_run).rglob("*")
                if p.is_file() and not p.name.endswith(("-wal", "-shm"))}

    before = snapshot()
    c = dash_app.client
    for url in ("/", "/_dash-layout", "/img/spec/bells_00.png", "/img/patch/2/101/3.png", "/img/song/2/kick_00.png",
                "/audio/bells_01", "/audio/kick_00"):
        assert c.get(url).status_code == 200
    dash_app.call((ids.radar("graph"), "figure"), {K(ids.links("concept"), "data"): 102,
                                                   K(ids.links("extraction"), "data"): 2,
                                                   K(ids.radar("source"), "value"): "audio"})
    assert snapshot() == before


def test_browser_files_are_served_locally(dash_app):
    """Bootstrap and the partial plotly.js bundle come from assets/ (no CDN), in plotly.py's version."""
    from plotly.offline import get_plotlyjs_version

    from whypop.app import ASSETS

    bundle = ASSETS / f"plotly-{get_plotlyjs_version()}-whypop.min.js"
    assert bundle.is_file(), "rebuild the plotly bundle: assets/build-assets.sh"
    assert len(list(ASSETS.glob("plotly-*.js"))) == 1
    html = dash_app.client.get("/").data.decode()
    assert "cdn" not in html.lower() and "https://" not in html
    for name in (bundle.name, "bootstrap.min.css", "whypop.js", "whypop.css"):
        assert f"/assets/{name}" in html
        assert dash_app.client.get(f"/assets/{name}").status_code == 200


def test_scripts_are_served_before_the_index_was(fake_run):  # noqa: F811
    """A fresh threaded worker gets the page's script requests in parallel: none may fail."""
    import threading

    html = create_app(fake_run).server.test_client().get("/").data.decode()  # to learn the script URLs
    scripts = [s.split('"')[0] for s in html.split('src="')[1:] if "_dash-component-suites" in s]
    assert len(scripts) >= 4
    for _ in range(3):
        server = create_app(fake_run).server  # a new app: no request served yet
        barrier = threading.Barrier(len(scripts))
        codes = {}

        def get(src):
            client = server.test_client()
            barrier.wait()
            codes[src] = client.get(src).status_code

        threads = [threading.Thread(target=get, args=(src,)) for src in scripts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert set(codes.values()) == {200}, codes
