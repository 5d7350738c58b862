"""The re-extraction form: validation messages, read-only mode, the picker refresh."""

from __future__ import annotations

import pytest

from app_fixtures import fake_run  # noqa: F401  (fixture)
from whypop.app import create_app, ids, reextract
from whypop.app.payloads import callback_payload, find_callback, prop_key
from whypop.errors import ConfigError

GOOD = ("layer4.1.conv2", 10, "10 15", 4, 6, "faithful", "fast", [])


def test_parse_form_accepts_good_values():
    params = reextract.parse_form(*GOOD)
    assert params == {
        "layer": "layer4.1.conv2", "n_clusters": 10, "segments": [10, 15], "random_experiments": 4,
        "discovery_images": 6, "patch_mode": "faithful", "cav_mode": "fast", "genres": [],
    }


@pytest.mark.parametrize("index, value, message", [
    (1, None, "clusters"),
    (1, 2.5, "clusters"),
    (2, "ten", "segments"),
    (2, "", "segments"),
    (3, "x", "random experiments"),
    (5, "stretched", "patch mode"),
    (6, "magic", "CAV mode"),
])
def test_parse_form_names_the_bad_field(index, value, message):
    values = list(GOOD)
    values[index] = value
    with pytest.raises(ConfigError, match=message):
        reextract.parse_form(*values)


def _deps(app):
    client = app.server.test_client()
    prefix = app.config.routes_pathname_prefix
    return client, prefix, client.get(prefix + "_dash-dependencies").get_json()


def test_validation_message_for_out_of_range_values(fake_run):  # noqa: F811
    app = create_app(fake_run, read_only=False)
    client, prefix, deps = _deps(app)
    dep = find_callback(deps, (ids.jobs("message"), "children"))
    values = dict(zip((prop_key(ids.jobs(f), "value") for f in reextract.FIELDS),
                      ("layer4.1.conv2", 500, "10 15", 4, 6, "faithful", "fast", [])))
    r = client.post(prefix + "_dash-update-component", json=callback_payload(dep, values))
    assert r.status_code == 200
    assert "n_clusters=500" in r.get_data(as_text=True) and "2..200" in r.get_data(as_text=True)


def test_read_only_hides_the_form_and_refuses_jobs(fake_run, monkeypatch):  # noqa: F811
    writable = create_app(fake_run, read_only=False)
    _, _, deps = _deps(writable)
    start = find_callback(deps, (ids.links("jobs-done"), "data"))
    assert start is not None

    monkeypatch.setenv("WHYPOP_READ_ONLY", "1")
    app = create_app(fake_run)
    client, prefix, ro_deps = _deps(app)
    outputs = " ".join(d["output"] for d in ro_deps)
    assert '"jobs"' not in outputs.replace(" ", "")  # no job callback registered at all
    page = client.get(prefix).get_data(as_text=True)
    layout = client.get(prefix + "_dash-layout").get_data(as_text=True)
    assert "Re-extract" not in layout and "whypop-jobs" not in layout and page
    # a job request crafted by hand (the writable app's payload) is refused
    body = callback_payload(start, {})
    r = client.post(prefix + "_dash-update-component", json=body)
    assert r.status_code >= 400


def test_the_form_offers_every_cav_mode():
    from whypop.config import CavMode, choices

    assert reextract.CAV_MODES == choices(CavMode)
    values = list(GOOD)
    values[6] = "logistic"
    assert reextract.parse_form(*values)["cav_mode"] == "logistic"
