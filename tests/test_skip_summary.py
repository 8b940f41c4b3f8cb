"""A plain test run ends with its skips counted by reason (tests/conftest.py), one line each,
instead of a line per skipped test; `pytest -rs` still lists them."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

MANY_SKIPS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("i", range(30))
    def test_on_a_gpu(i):
        pytest.skip(f"cupy: not installed or no device")

    @pytest.mark.parametrize("i", range(3))
    def test_on_mnist(i):
        pytest.skip("set XPNET_DATA_DIR to a folder with the MNIST files")

    def test_one_more():
        pytest.skip(f"a reason of its own")

    def test_runs():
        pass
    """
)


def run_pytest(folder: Path, *options: str) -> str:
    """pytest on `folder` with the suite's conftest as a plugin, as a plain run would load it
    (and no other: the installed plugins' start-up, hypothesis's 1.6 s here, is not under test)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", *options],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_plain_run_counts_its_skips_by_reason(tmp_path):
    (tmp_path / "test_many.py").write_text(MANY_SKIPS)
    out = run_pytest(tmp_path, "-q")
    assert "34 skipped, by reason" in out
    lines = [s.strip() for s in out.splitlines()]
    assert "30  cupy: not installed or no device" in lines
    assert "3  set XPNET_DATA_DIR to a folder with the MNIST files" in lines
    assert "1  a reason of its own" in lines
    assert "SKIPPED [" not in out  # no line per skip
    assert re.search(r"1 passed, 34 skipped", out)


def test_dash_rs_lists_the_skips_as_pytest_does(tmp_path):
    (tmp_path / "test_many.py").write_text(MANY_SKIPS)
    out = run_pytest(tmp_path, "-q", "-rs")
    assert "SKIPPED [" in out and "skipped, by reason" not in out


def test_the_suite_asks_pytest_for_no_line_per_skip():
    addopts = re.search(r'^addopts = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    chars = "".join(opt[2:] for opt in addopts.split() if opt.startswith("-r"))
    assert chars and not set(chars) & set("saA"), addopts
