"""The notebooks: each runs top to bottom in small mode, and each committed one carries its outputs.

(a) every notebook executes via nbclient with KERAS_TRANSFORMERS_SMALL=1 on a temporary copy (the
committed file is never rewritten), cwd notebooks/; skipped when its dataset or a module it needs
(its metadata's ``keras_transformers.data`` / ``.modules``) is absent.
(b) every code cell of a committed notebook has outputs, and its images are real PNGs.
"""

import base64
import copy
import importlib.util
import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
DATA = pathlib.Path(os.environ.get("KERAS_TRANSFORMERS_DATA", NOTEBOOKS.parents[1] / "shared" / "data"))
PNG = b"\x89PNG\r\n\x1a\n"


def meta(notebook):
    return notebook.metadata.get("keras_transformers", {})


def test_notebooks_exist():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_is_executed(path):
    notebook = nbformat.read(path, as_version=4)
    assert "*Outputs:" in notebook.cells[0].source, "the first cell must say which mode produced the outputs"
    images = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        assert cell.outputs, f"code cell {index} has no outputs: commit the notebook executed"
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {index} failed: {output.get('evalue')}"
            data = output.get("data", {})
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                assert png.startswith(PNG) and len(png) > 2000, f"cell {index}: not a real PNG plot"
                images += 1
    if meta(notebook).get("plots"):
        assert images, "the notebook says it plots, but has no PNG output"


# In the default run (issue 19: all of them within ~6 minutes). Small mode runs few steps of tiny
# models; the notebooks that train run every tf.function eagerly there, which costs less than tracing.
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_in_small_mode(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(path, as_version=4)
    for name in meta(notebook).get("data", []):
        if not (DATA / name).is_dir():
            pytest.skip(f"dataset {DATA / name} absent")
    for module in meta(notebook).get("modules", []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"module {module} not installed")
    monkeypatch.setenv("KERAS_TRANSFORMERS_SMALL", "1")
    monkeypatch.setenv("KERAS_TRANSFORMERS_DATA", str(DATA))
    copied = copy.deepcopy(notebook)  # executed in memory: the committed file is never rewritten
    nbclient.NotebookClient(copied, timeout=meta(notebook).get("timeout", 300), kernel_name="python3",
                            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
