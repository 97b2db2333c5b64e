"""The quick-start notebook runs top to bottom (on tiny generated data)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"

pytestmark = pytest.mark.slow


def test_quickstart_notebook_executes(tmp_path: Path, tiny_npz: Path, monkeypatch) -> None:
    monkeypatch.setenv("HYPERCNN_DATA", str(tiny_npz))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    outputs = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "hand-written CNN: test accuracy" in outputs
    run = tmp_path / "results" / "notebook"
    assert (run / "report" / "index.html").is_file()
    # The notebook searched the data it was given (not the shared zip or Keras's download) ...
    env = json.loads((run / "env.json").read_text())
    assert env["data"]["sha256"] == hashlib.sha256(tiny_npz.read_bytes()).hexdigest()
    assert env["data"]["classes"] == ["airplane", "automobile", "bird", "cat"]
    # ... and printed the accuracy its report measured.
    printed = re.search(r"HyperCNN: test accuracy (\d\.\d{3})", outputs)
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert printed and float(printed.group(1)) == round(metrics["test_accuracy"], 3)
    images = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    )
    assert images >= 4  # sample grid, curves, confusion matrix, predictions
