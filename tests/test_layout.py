"""The house keeps its shape: the layers contract holds (and can fail), no module passes 400
lines, and no import cycle, at module level or inside functions."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "xpnet").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these by meaning: {long}"


def _lint_imports(cwd: Path):
    if shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install import-linter)")
    return subprocess.run(["lint-imports", "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent) +
                               ":/usr/bin:/bin"}, check=False)  # fmt: skip


def test_the_layers_contract_holds():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def test_the_layers_contract_fails_on_an_import_that_climbs(tmp_path):
    """The book's math importing the Trainer: the contract names the wrong-way import."""
    shutil.copytree(ROOT / "xpnet", tmp_path / "xpnet")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    functions = tmp_path / "xpnet" / "nn" / "functions.py"
    functions.write_text(functions.read_text() + "\nfrom ..training import trainer  # wrong way\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "xpnet.nn is not allowed to import xpnet.training" in done.stdout


def test_no_import_cycle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("xpnet")
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles, state = [], {}

    def visit(module, path):  # depth-first; state 1: on the current path, 2: done
        state[module] = 1
        for other in sorted(imports[module]):
            if state.get(other) == 1:
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in sorted(imports):
        if module not in state:
            visit(module, [module])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)
