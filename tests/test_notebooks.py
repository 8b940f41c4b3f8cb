"""The chapter notebooks (notebooks/ch2..ch8) run top to bottom in a fresh kernel and draw their
pictures, and the repository holds them without outputs.

Each runs on the CPU in about a minute on a quiet 2-core machine (the digits, or a slice of MNIST).
MNIST is read from XPNET_DATA_DIR when the tests have it, and an empty folder is named otherwise, so
nothing is downloaded; the book's sample weights (chapter 3) from XPNET_BOOK_WEIGHTS when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import mnist_dir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("ch*.ipynb"))
CELL_TIMEOUT = 300  # seconds for one cell on a busy 2-core machine


def test_one_notebook_per_chapter_in_the_books_order():
    assert [p.name.split("_")[0] for p in NOTEBOOKS] == [f"ch{n}" for n in range(2, 9)]


def code_cells(path: Path) -> list[dict]:
    return [
        c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    for cell in code_cells(path):
        assert cell["outputs"] == [] and cell["execution_count"] is None, (
            f"{path.name} holds outputs: clear them before committing "
            f"(jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)})"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_a_cell_that_chooses_the_device(path):
    sources = ["".join(c["source"]) for c in code_cells(path)]
    assert any(
        'device = "cpu"' in s and '"cuda"' in s and "xpnet.resolve(device)" in s
        for s in sources[:2]
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws_its_pictures(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
    pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebooks draw inline
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = mnist_dir()
    if data is None:
        data = tmp_path / "no-data"  # an empty folder named: nothing is downloaded
        data.mkdir()
    monkeypatch.setenv("XPNET_DATA_DIR", str(data))
    monkeypatch.delenv("XPNET_MNIST_DIR", raising=False)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        # the notebooks' arrays are small: one BLAS thread, which does not wait for another
        monkeypatch.setenv(var, os.environ.get(var, "1"))

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error

    drawn, expected = 0, 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        images = sum("image/png" in o.get("data", {}) for o in cell.outputs)
        drawn += images
        shows = (
            cell.source.count("plt.show()")
            + cell.source.count("show_filters(")
            - cell.source.count("def show_filters")
        )
        conditional = "XpnetError" in cell.source  # a section that runs only when MNIST is at hand
        if shows and not conditional:
            expected += 1
            assert images >= 1, (
                f"{path.name}: a cell that draws showed no picture:\n{cell.source[:300]}"
            )
    assert drawn >= expected >= 1
