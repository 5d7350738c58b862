"""Build hook: ship the top-level ``assets/`` and ``config/`` folders inside the package.

They stay at the top of the repository (the project's layout); a build copies them to
``whypop/_data/`` so that a wheel or ``pip install .`` finds them (``whypop.resources``).
Everything else is declared in ``setup.cfg``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("assets", "config")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads them from the checkout
            return
        for name in SHIPPED:
            shutil.copytree(
                ROOT / name, Path(self.build_lib) / "whypop" / "_data" / name, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.sh"),
            )


setup(cmdclass={"build_py": BuildPyWithData})
