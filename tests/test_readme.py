"""Every Python block of README.md runs, so the README cannot drift from the code.

Blocks of `>>>` lines are checked as doctests (their printed output too); other blocks are executed
as written in a temporary folder. Blocks that load MNIST run on the real files when XPNET_DATA_DIR
names them (slow) and, always, on a small stand-in of MNIST's shape built from the offline digits.
"""

import doctest
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_dir

import xpnet
from xpnet.backend import DeviceFallbackWarning
from xpnet.errors import XpnetError

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
DOCTESTS = [b for b in BLOCKS if b.lstrip().startswith(">>>")]
SCRIPTS = [b for b in BLOCKS if not b.lstrip().startswith(">>>")]
NEEDS_MNIST = [b for b in SCRIPTS if "load_mnist" in b]


def test_readme_has_the_blocks_this_file_runs():
    assert len(BLOCKS) >= 4 and DOCTESTS and NEEDS_MNIST
    assert len(DOCTESTS) + len(SCRIPTS) == len(BLOCKS)


@pytest.mark.parametrize("block", DOCTESTS, ids=lambda b: b.strip().splitlines()[0][:40])
def test_doctest_block(block):
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(verbose=False)
    test = parser.get_doctest(block, {}, "README", str(README), 0)
    result = runner.run(test)
    assert result.attempted > 0 and result.failed == 0


def _run(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        # `resolve("cuda")` without a GPU falls back to the CPU with a warning, as the block says
        warnings.simplefilter("ignore", DeviceFallbackWarning)
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize(
    "block",
    [b for b in SCRIPTS if b not in NEEDS_MNIST],
    ids=lambda b: b.strip().splitlines()[0][:40],
)
def test_script_block_runs_as_written(block, tmp_path, monkeypatch):
    if "dask_jobqueue" in block:
        pytest.skip("the Slurm example needs a Slurm cluster: documented, not runnable here")
    _run(block, tmp_path, monkeypatch)


def _mnist_stand_in(normalize=True, flatten=True, one_hot_label=False, data_dir=None):
    """load_mnist's interface and shapes, filled with the 8x8 digits padded to 28x28 (offline)."""
    from xpnet.data import load_dataset

    d = load_dataset("digits", progress=False)

    def images(x):
        x = np.asarray(x, dtype=np.float32).reshape(-1, 8, 8)
        padded = np.zeros((x.shape[0], 1, 28, 28), np.float32)
        padded[:, 0, 10:18, 10:18] = x
        return padded.reshape(x.shape[0], -1) if flatten else padded

    def labels(t):
        t = np.asarray(t)
        return np.eye(10, dtype=np.float32)[t] if one_hot_label else t

    return (images(d.x_train), labels(d.t_train)), (images(d.x_test), labels(d.t_test))


@pytest.mark.parametrize("block", NEEDS_MNIST, ids=lambda b: b.strip().splitlines()[0][:40])
def test_mnist_block_runs_on_a_small_stand_in(block, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    monkeypatch.setattr(xpnet, "load_mnist", _mnist_stand_in)
    _run(block, tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    if "print(" in block:  # the slides' loop: its accuracies rise well above chance
        last = [float(v) for v in printed[-1].split()[1:]]
        assert len(printed) > 1 and min(last) > 0.5


@pytest.mark.parametrize("block", NEEDS_MNIST, ids=lambda b: b.strip().splitlines()[0][:40])
def test_mnist_block_without_mnist_fails_with_one_clear_line(block, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(XpnetError) as exc_info:
        _run(block, tmp_path, monkeypatch)
    message = str(exc_info.value)
    assert "\n" not in message and "MNIST" in message


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.skipif(
    mnist_dir() is None, reason="set XPNET_DATA_DIR to a folder with the MNIST files"
)
@pytest.mark.parametrize("block", NEEDS_MNIST, ids=lambda b: b.strip().splitlines()[0][:40])
def test_mnist_block_on_real_mnist(block, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XPNET_DATA_DIR", str(mnist_dir()))
    _run(block, tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    if "print(" in block:  # the slides' ~95% after 10,000 iterations
        assert min(float(v) for v in printed[-1].split()[1:]) > 0.9
