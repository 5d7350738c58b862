"""The example notebook (docs/notebook.ipynb) runs top to bottom against a small run (nbclient).

It draws the dashboard's figures, writes the report and runs the dashboard inline through
Dash's ``jupyter_mode``; while the kernel is alive, the inline app answers over HTTP.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from app_fixtures import make_fake_run

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"
FIGURE_TYPES = ("application/vnd.plotly.v1+json", "text/html")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_example_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run = make_fake_run(tmp_path / "run")
    port = _free_port()
    monkeypatch.setenv("WHYPOP_NOTEBOOK_RUN", str(run))
    monkeypatch.setenv("WHYPOP_NOTEBOOK_PORT", str(port))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        # the inline dashboard is served by the (still running) kernel
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200 and b"Why Pop?" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=30) as r:
            assert b"importance" in r.read()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    figures = [c for c in code if any(o.output_type in ("execute_result", "display_data")
                                      and any(t in o.get("data", {}) for t in FIGURE_TYPES) for o in c.outputs)]
    assert len(figures) >= 4  # importance, map, radar, confusion
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "extraction" in text and "figures" in text
    assert (tmp_path / "whypop-report.html").stat().st_size > 1_000_000
    inline = code[-1].outputs
    assert any("iframe" in str(o.get("data", {})).lower() or str(port) in str(o.get("data", {})) for o in inline), inline
