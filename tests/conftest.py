"""Shared test fixtures: the real audio clips, tool checks that skip locally but fail in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from whypop.env import setup_environment

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
AUDIO = FIXTURES / "audio"
IN_CI = os.environ.get("CI", "").lower() == "true"
setup_environment()  # before torch loads: no spinning threads


def need_tool(name: str, why: str) -> str:
    """The tool's path; skip with a reason when missing, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: {why} (install it: apt-get install {name})"
        if IN_CI:
            pytest.fail(message + " -- CI must run these tests")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def audio_fixtures() -> Path:
    if not AUDIO.is_dir():
        pytest.fail(f"audio fixtures missing at {AUDIO} (../shared/fixtures beside the repo)")
    return AUDIO


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A complete demo run (prepare, train, extract: `whypop demo --no-serve`'s stages), built once per session.

    ``WHYPOP_TEST_DEMO_RUN=DIR`` copies a run built beforehand instead (for quick local
    iterations; CI leaves it unset and builds the run with the code under test).
    """
    from whypop.config import load_config
    from whypop.store import RunStore

    import pipelines.demo

    root = tmp_path_factory.mktemp("demo") / "run"
    prebuilt = os.environ.get("WHYPOP_TEST_DEMO_RUN")
    if prebuilt:  # a demo run built earlier by the same code (`whypop demo --no-serve --run DIR`)
        if not (Path(prebuilt) / "run.sqlite").is_file():
            pytest.fail(f"WHYPOP_TEST_DEMO_RUN={prebuilt} holds no run.sqlite")
        shutil.copytree(prebuilt, root, symlinks=True)
        return root
    store = RunStore(root, create=True)
    pipelines.demo.build(load_config("demo"), store, workers=2)
    store.close()
    return root


def pytest_collection_modifyitems(config, items):
    """Browser tests are rerun once on failure: their timing in headless Chromium on a busy
    2-core machine flakes now and then (a late asynchronous component, a slow poll). A rerun
    repeats the whole test with the same assertions (pytest-rerunfailures)."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=1))
