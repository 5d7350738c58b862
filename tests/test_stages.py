"""The stage layer without whole-stage runs: the demo stage reuses what a run holds, progress is typed."""

from __future__ import annotations

import shutil

from app_fixtures import fake_run  # noqa: F401  (fixture)
from pipelines import demo
from whypop.cli import ProgressBars, main
from whypop.config import load_config
from whypop.progress import ProgressEvent
from whypop.store import RunStore


def test_demo_stage_reuses_every_result_of_a_complete_run(fake_run, tmp_path):  # noqa: F811
    root = tmp_path / "run"
    shutil.copytree(fake_run, root, symlinks=True)
    lines: list[str] = []
    events: list[ProgressEvent] = []
    timings = demo.build(load_config("demo", env=False), RunStore(root), events.append, say=lines.append)
    assert timings == {"prepare": 0.0, "train": 0.0, "extract": 0.0}
    assert [line.split()[0] for line in lines] == ["reusing"] * 3 and not events


def test_demo_command_builds_nothing_new_and_does_not_serve(fake_run, tmp_path, capsys):  # noqa: F811
    root = tmp_path / "run"
    shutil.copytree(fake_run, root, symlinks=True)
    assert main(["demo", "--run", str(root), "--no-serve"]) == 0
    err = capsys.readouterr().err
    assert "reusing the trained model" in err and f"whypop serve --run {root}" in err


def test_progress_bars_open_one_bar_per_step(capsys):
    with ProgressBars() as bars:
        for step, genre in (("loading", "Rock"), ("loading", "Rock"), ("segments", "Rock"), ("loading", "Jazz")):
            bars(ProgressEvent("extract", step, 1, 2, genre))
            bars(ProgressEvent("extract", step, 2, 2, genre))
    err = capsys.readouterr().err
    for label in ("extract: Rock: loading", "extract: Rock: segments", "extract: Jazz: loading"):
        assert label in err
    assert "extract: Jazz: segments" not in err
