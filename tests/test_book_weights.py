"""Trained weights in the book's format: the restricted unpickler, save/load round trips between
xpnet.book's networks and xpnet's own, and the book's three trained pickles on the real MNIST.

The book's pickles are looked up in $XPNET_BOOK_WEIGHTS, else in ../shared/book-weights beside the
repository; MNIST in $XPNET_DATA_DIR. Tests that need them skip without them (the files are data
for tests, not part of the repository).
"""

# ruff: noqa: NPY002 (the book's networks draw from NumPy's global generator)

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import book_reference as ref
import numpy as np
import pytest
from conftest import mnist_dir

import xpnet
from xpnet.errors import CheckpointError
from xpnet.fileio import load_pickle, save_pickle
from xpnet.nn.convnet import DeepConvNet, SimpleConvNet


def weights_dir() -> Path | None:
    """The folder of the book's three pickles, when it holds them: $XPNET_BOOK_WEIGHTS, else the
    nearest shared/book-weights above the repository (../shared/book-weights for a checkout beside
    it, ../../shared/book-weights for a worktree one folder deeper)."""
    names = ("sample_weight.pkl", "params.pkl", "deep_convnet_params.pkl")
    value = os.environ.get("XPNET_BOOK_WEIGHTS")
    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(value)] if value else [p / "shared/book-weights" for p in repo.parents]
    for path in candidates:
        if all((path / n).is_file() for n in names):
            return path
    return None


@pytest.fixture
def cpu(monkeypatch):
    for name in ("XPNET_DEVICE", "XPNET_BACKEND", "XPNET_DTYPE"):
        monkeypatch.delenv(name, raising=False)


# -- the restricted unpickler ----------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: what a malicious params.pkl would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, cpu):
    from xpnet.book.ch07.simple_convnet import SimpleConvNet as BookSimpleConvNet

    marker = tmp_path / "ran"
    path = tmp_path / "params.pkl"
    path.write_bytes(pickle.dumps({"W1": np.zeros(3), "b1": RunsCode(marker)}))
    for load in (load_pickle, SimpleConvNet().load_params, BookSimpleConvNet().load_params):
        with pytest.raises(CheckpointError) as caught:
            load(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message
        assert "refusing to load posix.system" in message or "refusing to load os.system" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "refusing to load builtins.eval"),
        (pickle.dumps(np.array([1, "a"], dtype=object)), "refusing NumPy values of dtype object"),
        (pickle.dumps({"W1": {1, 2}}), "refusing a set"),
        (pickle.dumps({"W1": np.zeros(3)})[:-7], "is not a readable pickle of weights"),
        (b"not a pickle", "is not a readable pickle of weights"),
    ],
)
def test_refused_files_get_one_line_naming_them(tmp_path, payload, why):
    path = tmp_path / "weights.pkl"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=why) as caught:
        load_pickle(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot read .*missing.pkl: No such file"):
        load_pickle(tmp_path / "missing.pkl")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_arrays_numbers_strings_load_in_every_protocol(tmp_path, protocol):
    obj = {
        "W1": np.arange(6.0).reshape(2, 3).T,  # not contiguous
        "b1": np.ones(3, np.float32),
        "n": np.int64(3),
        "x": np.float64(-7.5),
        "names": ["a", 1, 2.5, True],
    }
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = load_pickle(path)
    assert list(got) == list(obj) and got["names"] == obj["names"]
    for key in ("W1", "b1", "n", "x"):
        np.testing.assert_array_equal(got[key], obj[key])
        assert got[key].dtype == obj[key].dtype


def test_save_pickle_names_only_numpy(tmp_path):
    path = save_pickle({"W1": np.ones((2, 2)), "b1": np.zeros(2)}, tmp_path / "w.pkl")
    names = {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if "UNICODE" in op.name}
    assert {n for n in names if "." in n} <= {"numpy._core.multiarray", "numpy._core.numeric"}
    with pytest.raises(CheckpointError, match="refusing a object"):
        save_pickle({"W1": object()}, tmp_path / "x.pkl")


# -- round trips -----------------------------------------------------------------------------------


def test_books_dropout_net_and_xpnets_give_the_same_scores_both_ways(tmp_path, cpu, rng):
    """The book's test-time dropout factor is folded into the next Affine on load, and out on save."""
    from xpnet.book.common.multi_layer_net_extend import MultiLayerNetExtend

    np.random.seed(4)
    book = MultiLayerNetExtend(12, [8, 6], 3, use_dropout=True, dropout_ration=0.25)
    x = rng.normal(size=(5, 12))
    book.save_params(tmp_path / "book.pkl")
    own = xpnet.MultiLayerNet(12, [8, 6], 3, dropout_ratio=0.25, dtype="float64", seed=9)
    own.load_params(tmp_path / "book.pkl")
    expected = book.predict(x, train_flg=False)
    np.testing.assert_allclose(own.predict(x), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(own.params["W1"], book.params["W1"])  # no dropout before it
    np.testing.assert_allclose(own.params["W2"], 0.75 * book.params["W2"], rtol=1e-15)

    own.save_params(tmp_path / "own.pkl")
    np.random.seed(5)
    back = MultiLayerNetExtend(12, [8, 6], 3, use_dropout=True, dropout_ration=0.25)
    back.load_params(tmp_path / "own.pkl")
    for key, value in book.params.items():
        np.testing.assert_allclose(back.params[key], value, rtol=1e-15, atol=1e-17)


def test_xpnets_deep_convnet_saves_what_the_books_reads(tmp_path, cpu, rng):
    """DeepConvNet: the book drops out the scores too; its 0.5 and the hidden 0.5 are folded
    into W8 (×0.25) and b8 (×0.5), so the scores are the book's, bit for bit."""
    from xpnet.book.ch08.deep_convnet import DeepConvNet as BookDeepConvNet

    own = DeepConvNet(dtype="float64", seed=3)
    own.params["b8"][...] = rng.normal(size=10)
    x = rng.random((3, 1, 28, 28))
    own.save_params(tmp_path / "deep.pkl")
    np.random.seed(0)
    book = BookDeepConvNet()
    book.load_params(tmp_path / "deep.pkl")
    np.testing.assert_array_equal(book.params["W8"], 4.0 * own.params["W8"])
    np.testing.assert_array_equal(book.params["b8"], 2.0 * own.params["b8"])
    np.testing.assert_allclose(
        book.predict(x, train_flg=False), own.predict(x), rtol=1e-12, atol=1e-14
    )
    again = DeepConvNet(dtype="float64", seed=4)
    again.load_params(tmp_path / "deep.pkl")
    for key, value in own.params.items():
        np.testing.assert_array_equal(again.params[key], value)


def test_batchnorm_running_statistics_travel_with_the_weights(tmp_path):
    net = xpnet.MultiLayerNet(6, [5], 2, batchnorm=True, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        net.forward_backward(rng.normal(size=(8, 6)), rng.integers(0, 2, 8))
    net.save_params(tmp_path / "bn.pkl")
    with open(tmp_path / "bn.pkl", "rb") as f:
        assert list(pickle.load(f)) == ["W1", "b1", "W2", "b2", "gamma1", "beta1",
                                        "running_mean1", "running_var1"]  # fmt: skip
    other = xpnet.MultiLayerNet(6, [5], 2, batchnorm=True, dtype="float64", seed=2)
    other.load_params(tmp_path / "bn.pkl")
    x = rng.normal(size=(4, 6))
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_weights_of_another_network_are_refused_in_one_line(tmp_path):
    SimpleConvNet(dtype="float64").save_params(tmp_path / "simple.pkl")
    with pytest.raises(CheckpointError, match=r"simple.pkl does not fit this network: it lacks W4"):
        DeepConvNet().load_params(tmp_path / "simple.pkl")
    small = SimpleConvNet(conv_param={"filter_num": 3})
    with pytest.raises(CheckpointError, match=r"simple.pkl: W1 has shape \(30, 1, 5, 5\)"):
        small.load_params(tmp_path / "simple.pkl")
    save_pickle([np.zeros(3)], tmp_path / "list.pkl")
    with pytest.raises(CheckpointError, match="does not hold weights in the book's format"):
        small.load_params(tmp_path / "list.pkl")


# -- the book's trained weights on the real MNIST --------------------------------------------------

needs_weights = pytest.mark.skipif(
    weights_dir() is None or mnist_dir() is None,
    reason="set XPNET_BOOK_WEIGHTS to the book's three pickles and XPNET_DATA_DIR to MNIST",
)


@pytest.fixture(scope="module")
def real():
    """MNIST's test set, as the book's load_mnist returns it (float32 / 255, uint8 labels)."""
    d = xpnet.load_dataset("mnist", mnist_dir(), normalize=False, progress=False)
    return ref.normalized(d.x_test), d.t_test.astype(np.uint8)


@pytest.mark.mnist
@needs_weights
def test_books_load_mnist_is_the_books_format(real, cpu, monkeypatch):
    from xpnet.book.dataset.mnist import load_mnist

    monkeypatch.setenv("XPNET_DATA_DIR", str(mnist_dir()))
    (x_train, _), (x_test, t_test) = load_mnist(flatten=False, one_hot_label=True)
    assert x_train.shape == (60000, 1, 28, 28) and x_train.dtype == np.float32
    np.testing.assert_array_equal(x_test.reshape(10000, 784), real[0])  # x / 255 in float32
    assert t_test.dtype == np.float64 and t_test.shape == (10000, 10)
    np.testing.assert_array_equal(t_test.argmax(axis=1), real[1])
    _, (_, labels) = load_mnist(normalize=False)
    assert labels.dtype == np.uint8


def _predictions(predict, x, batch=500):
    return np.concatenate([np.argmax(predict(x[i : i + batch]), axis=1) for i in range(0, len(x), batch)])  # fmt: skip


@pytest.mark.mnist
@needs_weights
def test_chapter3_weights_give_the_books_9352(real, cpu):
    from xpnet.book.common.multi_layer_net import MultiLayerNet as BookMLP

    x, t = real
    w = load_pickle(weights_dir() / "sample_weight.pkl")
    z = x
    for i in (1, 2):  # the book computes in the file's float32
        z = 1.0 / (1.0 + np.exp(-(z @ w[f"W{i}"] + w[f"b{i}"])))
    expected = np.argmax(z @ w["W3"] + w["b3"], axis=1)
    assert (expected == t).mean() == 0.9352

    book = BookMLP(784, [50, 100], 10, activation="sigmoid")
    book.load_params(weights_dir() / "sample_weight.pkl")
    assert book.params["W1"].dtype == np.float32  # the file's dtype, as the book's load_params
    own = xpnet.MultiLayerNet(784, [50, 100], 10, "sigmoid", dtype="float32")
    own.load_params(weights_dir() / "sample_weight.pkl")
    for predict in (book.predict, own.predict):
        np.testing.assert_array_equal(_predictions(predict, x), expected)
    assert book.accuracy(x, t) == 0.9352 and own.accuracy(x, t) == 0.9352


@pytest.mark.mnist
@pytest.mark.slow
@needs_weights
def test_chapter7_weights_give_the_books_9890(real, cpu):
    from xpnet.book.ch07.simple_convnet import SimpleConvNet as BookSimpleConvNet

    x, t = real
    images = x.reshape(-1, 1, 28, 28)
    own = SimpleConvNet(dtype="float64")
    own.load_params(weights_dir() / "params.pkl")
    mine = _predictions(own.predict, images)
    assert (mine == t).mean() == 0.9890
    book = BookSimpleConvNet()
    book.load_params(weights_dir() / "params.pkl")
    assert book.accuracy(images[:2000], t[:2000]) == 1966 / 2000  # the book's code: 1966 right
    w = load_pickle(weights_dir() / "params.pkl")
    net = ref.Net([ref.conv(w["W1"], w["b1"]), ref.act("relu"), ref.pool(),
                   ref.affine(w["W2"], w["b2"]), ref.act("relu"), ref.affine(w["W3"], w["b3"])])  # fmt: skip
    np.testing.assert_array_equal(mine[:500], net.scores(images[:500]).argmax(axis=1))


@pytest.mark.mnist
@pytest.mark.slow
@needs_weights
def test_chapter8_weights_give_the_books_predictions(real, cpu):
    from xpnet.book.ch08.deep_convnet import DeepConvNet as BookDeepConvNet

    x, t = real
    images = x.reshape(-1, 1, 28, 28)
    own = DeepConvNet(dtype="float64")
    own.load_params(weights_dir() / "deep_convnet_params.pkl")
    # the first 1000 images (all 10,000 take minutes on a CPU; docs/book.md has the full run,
    # 0.9935 with the book's prediction on every image): the book's code gets 993 right
    mine = _predictions(own.predict, images[:1000])
    assert (mine == t[:1000]).sum() == 993
    book = BookDeepConvNet()
    book.load_params(weights_dir() / "deep_convnet_params.pkl")
    np.testing.assert_array_equal(_predictions(book.predict, images[:300], 100), mine[:300])
