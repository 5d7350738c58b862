"""A built wheel, installed where the checkout cannot be seen, has its dashboard assets and presets.

The wheel is installed with ``--no-deps`` into a virtual environment that shares this
environment's packages (torch and the rest are not downloaded again); every command runs
from a folder outside the checkout without PYTHONPATH, and the test checks that
``whypop`` is imported from the installed wheel, not from the checkout or an editable
install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_fixtures import fake_run  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path]:
    """(the venv's python, the environment to run it with, a folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WHYPOP_CONFIG", "VIRTUAL_ENV")}
    # without build isolation when this environment can build wheels itself (no index needed)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("wheel") else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", tmp / "dist", REPO], tmp, env)
    wheel = next((tmp / "dist").glob("whypop-*.whl"))
    _run([sys.executable, "-m", "venv", "--system-site-packages", tmp / "venv"], tmp, env)
    python = tmp / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp, env)
    outside = tmp / "elsewhere"
    outside.mkdir()
    env["PATH"] = f"{tmp / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return python, env, outside


@pytest.mark.slow
def test_the_wheel_is_what_gets_imported(installed):
    python, env, outside = installed
    out = _run([python, "-c", "import json, whypop, whypop.app, whypop.config; print(json.dumps("
                "[whypop.__file__, str(whypop.app.ASSETS), str(whypop.config.REPO_CONFIG_DIR)]))"], outside, env)
    module, assets, config = json.loads(out.stdout)
    venv = str(python.parents[1])
    assert module.startswith(venv) and not module.startswith(str(REPO)), module
    assert assets.startswith(venv) and config.startswith(venv), (assets, config)


@pytest.mark.slow
def test_installed_dashboard_serves_its_script_and_stylesheet(installed, fake_run):  # noqa: F811
    python, env, outside = installed
    script = (
        "import json, sys\n"
        "from whypop.app import create_app\n"
        "client = create_app(sys.argv[1], read_only=True).server.test_client()\n"
        "page = client.get('/').data.decode()\n"
        "codes = {name: client.get('/assets/' + name).status_code for name in ('whypop.js', 'bootstrap.min.css', 'whypop.css')}\n"
        "print(json.dumps({'codes': codes, 'linked': [n for n in codes if '/assets/' + n in page]}))\n"
    )
    out = json.loads(_run([python, "-c", script, fake_run], outside, env).stdout.strip().splitlines()[-1])
    assert out["codes"] == {"whypop.js": 200, "bootstrap.min.css": 200, "whypop.css": 200}
    assert sorted(out["linked"]) == ["bootstrap.min.css", "whypop.css", "whypop.js"]


@pytest.mark.slow
def test_installed_demo_preset_prepares_from_outside_the_checkout(installed):
    python, env, outside = installed
    whypop = python.parent / "whypop"
    run = outside / "run"
    proc = _run([whypop, "prepare", "--demo", "--config", "demo", "--run", run, "--workers", "2",
                 "--set", "demo.clips_per_genre=5"], outside, env)
    assert "prepared 20 new" in proc.stdout, proc.stdout
    assert len(list((run / "spectrograms").glob("*.png"))) == 20
