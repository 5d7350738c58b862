"""The `whypop` command: help everywhere, light imports, status keys, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whypop.cli import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]
STATUS_KEYS = {"tracks", "model", "extractions", "jobs", "features", "planted_regions", "run", "schema_version", "audio_root",
               "faithfulness", "stability", "collection"}


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "whypop.cli", *map(str, args)]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_stage():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for name in ("prepare", "status"):
        assert name in proc.stdout
    subs = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in subs:
        assert name in proc.stdout


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from whypop.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'torchaudio', 'dash', 'librosa') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = run_cli(code=code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"`whypop --help` imports {proc.stdout.strip()} (keep heavy imports lazy)"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    subs = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    if name not in subs:
        pytest.skip(f"pipelines for `whypop {name}` not in this build yet")
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"whypop {name}" in out and "--help" in out


def test_prepare_help_shows_the_documented_options(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    out = capsys.readouterr().out
    for flag in ("AUDIO_DIR", "--run", "--metadata", "--layout", "--config", "--workers", "--demo", "--set"):
        assert flag in out


@pytest.mark.skipif(shutil.which("whypop") is None, reason="the whypop console script is not on PATH (pip install -e .)")
def test_console_script_is_installed():
    proc = subprocess.run(["whypop", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("whypop ")


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_status_json_keys_are_the_documented_ones(tmp_path):
    from whypop.store import SCHEMA_VERSION, RunStore

    RunStore(tmp_path / "run", create=True).close()
    proc = run_cli("status", "--run", tmp_path / "run", "--json")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert set(st) == STATUS_KEYS
    assert st["schema_version"] == SCHEMA_VERSION and st["run"] == str((tmp_path / "run").resolve())
    assert st["model"] is None and st["extractions"] == [] and st["jobs"] == [] and st["audio_root"] is None
    assert st["faithfulness"] is None and st["stability"] is None
    assert {"total", "ok", "failed", "pending", "per_genre", "failures"} <= set(st["tracks"])


def test_status_text(tmp_path):
    from whypop.store import RunStore

    RunStore(tmp_path / "run", create=True).close()
    proc = run_cli("status", "--run", tmp_path / "run")
    assert proc.returncode == 0 and "tracks: 0 ok" in proc.stdout and "model: none" in proc.stdout


def test_status_of_a_missing_run_is_a_one_line_error(tmp_path):
    proc = run_cli("status", "--run", tmp_path / "nothing")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("whypop status: error: no run store")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nothing").exists()


def test_bad_override_is_a_one_line_error(tmp_path):
    proc = run_cli("prepare", tmp_path, "--run", tmp_path / "run", "--set", "train.epoch=3")
    assert proc.returncode == 1
    assert "unknown key 'epoch'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists(), "a bad setting creates no run"


def test_log_lines_show_control_characters_from_file_names():
    import logging

    from whypop.cli import VisibleFormatter

    record = logging.LogRecord("pipelines.prepare", logging.WARNING, __file__, 1,
                               "track %s failed: %s", ("rock/\x1b]0;pwned\x07.wav", "cannot decode"), None)
    line = VisibleFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\x1b" not in line and "\x07" not in line
    assert "rock/\\x1b]0;pwned\\x07.wav" in line
