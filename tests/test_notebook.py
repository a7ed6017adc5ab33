"""examples/seed-notebook.ipynb runs top to bottom on woof-mini (a few small epochs), and shows its figures."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "seed-notebook.ipynb"


@pytest.mark.slow
def test_the_seed_notebook_runs_top_to_bottom(woof_mini, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TLAB_NOTEBOOK_DATA", str(woof_mini))
    monkeypatch.setenv("TLAB_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    images = [cell for cell in code if any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert len(images) >= 6, "show_batch, the gallery, three curves and the comparison show as figures"
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert list(tmp_path.glob("runs/woof-mini-*/report.html"))
