"""The top-level ``assets/`` (dashboard CSS and scripts) and ``config/`` (TOML presets) folders.

They live beside the package in a checkout (and an editable install reads them there).
A built distribution copies them into the package as ``whypop/_data/assets`` and
``whypop/_data/config`` (see ``setup.py``), so a wheel or ``pip install .`` has them too.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` ("assets" or "config"): the installed copy, else the checkout's."""
    installed = PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return PACKAGE.parent / name
