"""Image and audio routes: ids checked against the store, 404 for everything else, ranges, caching."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop.app import create_app


@pytest.fixture(scope="module")
def client(fake_run):  # noqa: F811
    return create_app(fake_run, prefix="/").server.test_client()


@pytest.fixture(scope="module")
def prefixed(fake_run):  # noqa: F811
    return create_app(fake_run, prefix="/portal/whypop").server.test_client()


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.status_code
    assert resp.content_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.data)))


def test_images_by_id(client):
    spec = _png(client.get("/img/spec/bells_00.png"))
    assert spec.shape == (128, 128)
    patch = _png(client.get("/img/patch/2/101/0.png"))
    assert 0 < patch.shape[0] <= 128 and 0 < patch.shape[1] <= 128
    context = np.asarray(Image.open(io.BytesIO(client.get("/img/context/2/101/0.png").data)).convert("RGB"))
    assert context.shape == (256, 256, 3)  # a palette PNG of the RGB picture
    song = _png(client.get("/img/song/2/bells_00.png"))
    assert song.shape == (128, 128, 3)



def test_song_image_of_one_concept(client, fake_run):  # noqa: F811
    from whypop.app.data import AppData
    from whypop.store import RunStore

    placements = AppData(RunStore(fake_run)).placements(2, "bells_00")
    concept = placements[0].concept_id
    everything = _png(client.get("/img/song/2/bells_00.png"))
    mine = _png(client.get(f"/img/song/2/bells_00.png?concept={concept}"))
    coloured = lambda im: (im[..., 0] != im[..., 1]) | (im[..., 1] != im[..., 2])  # noqa: E731 - grey is r == g == b
    assert coloured(mine).any() and coloured(mine).sum() < coloured(everything).sum()
    assert not (coloured(mine) & ~coloured(everything)).any()  # a subset of the full view's colour


def test_images_cache_headers_and_etag(client):
    r = client.get("/img/patch/2/101/1.png")
    assert r.status_code == 200 and "max-age" in r.headers["Cache-Control"] and r.headers.get("ETag")
    again = client.get("/img/patch/2/101/1.png", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and not again.data


@pytest.mark.parametrize("url", [
    "/img/spec/nope.png",
    "/img/spec/broken_00.png",                 # a failed track has no spectrogram
    "/img/spec/..%2F..%2Frun.sqlite.png",
    "/img/spec/bells_00.jpg",
    "/img/spec/a/b.png",
    "/img/patch/2/999/0.png",                  # unknown concept
    "/img/patch/2/101/12.png",                 # the fake run stores ranks 0..11
    "/img/patch/3/101/0.png",                  # failed extraction
    "/img/patch/1/101/0.png",                  # concept of another extraction
    "/img/patch/x/101/0.png",
    "/img/patch/-1/101/0.png",
    "/img/patch/2/101/1e1.png",
    "/img/context/2/101/%2e%2e.png",
    "/img/song/2/nope.png",
    "/img/song/9/bells_00.png",
    "/img/song/2/bells_00.png?concept=999",   # unknown concept
    "/img/song/2/bells_00.png?concept=1e1",
    "/img/song/2/bells_00.png?concept=",
    "/img/other/thing.png",
    "/img/",
    "/audio/nope",
    "/audio/broken_00",                        # registered, but the file does not exist
    "/audio/outside_00",                       # its file lies outside the run and the audio root
    "/audio/..%2Frun.sqlite",
    "/audio/../run.sqlite",
    "/audio/bells_00/../../run.sqlite",
    "/audio/",
])
def test_anything_else_is_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, url
    assert b"sqlite" not in r.data.lower()


def test_audio_streams_with_ranges(client):
    full = client.get("/audio/bells_00")
    assert full.status_code == 200 and full.content_type == "audio/wav"
    assert full.headers["Accept-Ranges"] == "bytes" and full.data[:4] == b"RIFF"
    part = client.get("/audio/bells_00", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == full.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(full.data)}"
    tail = client.get("/audio/bells_00", headers={"Range": f"bytes={len(full.data) - 10}-"})
    assert tail.status_code == 206 and tail.data == full.data[-10:]
    bad = client.get("/audio/bells_00", headers={"Range": f"bytes={len(full.data) + 5}-"})
    assert bad.status_code == 416


def test_audio_not_playable_in_browsers_is_transcoded(client):
    r = client.get("/audio/bells_01")  # stored as .au
    assert r.status_code == 200 and r.content_type == "audio/wav" and r.data[:4] == b"RIFF"
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(r.data))
    assert rate == 8000 and len(samples) == 4 * 8000
    part = client.get("/audio/bells_01", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.data == r.data[:44]
    etag = r.headers["ETag"]
    assert client.get("/audio/bells_01", headers={"If-None-Match": etag}).status_code == 304


def test_routes_live_under_the_prefix(prefixed):
    assert prefixed.get("/portal/whypop/img/spec/bells_00.png").status_code == 200
    assert prefixed.get("/portal/whypop/audio/bells_00").status_code == 200
    assert prefixed.get("/portal/whypop/img/spec/nope.png").status_code == 404
    assert prefixed.get("/portal/whypop/img/a/b/c").status_code == 404  # not the Dash index page
    assert prefixed.get("/img/spec/bells_00.png").status_code == 404
    index = prefixed.get("/portal/whypop/")
    assert index.status_code == 200 and b"/portal/whypop/_dash-component-suites/" in index.data
