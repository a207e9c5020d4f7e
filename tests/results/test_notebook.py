"""notebooks/compare.ipynb runs top to bottom on a real results folder and draws its plots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import has_module

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare.ipynb"


@pytest.mark.skipif(not (has_module("nbclient") and has_module("ipykernel")), reason="nbclient/ipykernel not installed")
def test_compare_notebook_executes_on_a_real_results_folder(small_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HARNESS_RESULTS", str(small_results))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    # latency distribution, FPS, latency over time, the frame grid (+ accuracy vs latency when AP is there)
    assert len(images) >= 4
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"{small_results}: 1 job(s), 20 timed frames" in text
    assert "agreement needs at least two jobs" in text  # one job: the matrix is left out, and says why
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("tf1_ref_pets09-s2l1_cpu" in t for t in tables)
