"""The README cannot drift from the code: every command and flag it shows must exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from whypop.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[list[str]]:
    """Every `whypop ...` invocation in the README's shell blocks (placeholders kept)."""
    text = README.read_text()
    out = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            for part in re.split(r"&&|;|\|", line):
                part = part.strip()
                if part.startswith("whypop "):
                    out.append(shlex.split(part.replace("[", " ").replace("]", " ").replace("|", " ")))
    return out


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_readme_shows_the_quick_start():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "whypop demo" in quick
    assert "pytest" in quick


def test_every_readme_command_and_flag_exists():
    commands = _commands()
    assert commands, "the README shows no whypop commands"
    subs = _subparsers()
    for argv in commands:
        name = argv[1]
        assert name in subs, f"README uses `whypop {name}`, which does not exist"
        known = {opt for a in subs[name]._actions for opt in a.option_strings}
        for token in argv[2:]:
            if token.startswith("--"):
                flag = token.split("=", 1)[0]
                assert flag in known, f"README uses `whypop {name} {flag}`, which does not exist"


def test_ci_runs_the_readme_test_command():
    quick = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    ci = (README.parent / ".ci" / "run").read_text()
    test_line = next(l for l in quick.splitlines() if "pytest" in l).strip()
    assert test_line in ci, f"CI does not run the README's test command {test_line!r}"
