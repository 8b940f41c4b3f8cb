"""The book's weight format (xpnet.nn.bookformat) worked out by hand on small networks: which
factor each array is saved and loaded with, the keys and their order, the dtypes, the refusals.

NumPy only (and array_api_strict where a dtype must not be left to a cast), no real weights and no
torch: these tests are in the mutation run's selection (pyproject.toml [tool.mutmut]).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import xpnet
from xpnet.errors import CheckpointError
from xpnet.fileio import save_pickle
from xpnet.nn.dropout import Dropout
from xpnet.nn.layers import Affine, ReLU
from xpnet.nn.network import Network


def read(path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def numbered(net, start=1.0) -> dict:
    """Give every parameter distinct values (start, start + 1, ...) and return copies of them."""
    for value in net.params.values():
        n = value.size
        value[...] = np.arange(start, start + n).reshape(value.shape) / 8
        start += n
    return {k: v.copy() for k, v in net.params.items()}


def mlp(**kw):
    kw.setdefault("dtype", "float64")
    kw.setdefault("seed", 1)
    return xpnet.MultiLayerNet(3, [4, 2], 2, **kw)


# -- what save_params writes -----------------------------------------------------------------------


def test_a_net_without_dropout_is_saved_as_it_is_in_the_books_order(tmp_path):
    net = mlp()
    own = numbered(net)
    net.save_params(tmp_path / "p.pkl")
    saved = read(tmp_path / "p.pkl")
    assert list(saved) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for key, value in own.items():
        assert type(saved[key]) is np.ndarray and saved[key].dtype == np.float64
        np.testing.assert_array_equal(saved[key], value)


def test_each_dropout_factor_is_divided_out_of_the_next_w_only(tmp_path):
    """Affine1 → ReLU → Dropout(0.3) → Affine2 → ReLU → Dropout(0.3) → Affine3: the book keeps
    the units unscaled, so its W2 and W3 are xpnet's divided by 1 − 0.3; W1 and every b as they are."""
    net = mlp(dropout_ratio=0.3)
    own = numbered(net)
    net.save_params(tmp_path / "p.pkl")
    saved = read(tmp_path / "p.pkl")
    expected = {**own, "W2": own["W2"] / 0.7, "W3": own["W3"] / 0.7}
    assert list(saved) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(saved[key], value, err_msg=key)


def test_two_dropouts_in_a_row_multiply_their_factors(tmp_path):
    rng = np.random.default_rng(0)
    layers = [
        Affine(rng.normal(size=(3, 4)), np.zeros(4)),
        ReLU(),
        Dropout(0.5, seed=0),
        Dropout(0.2, seed=1),
        Affine(rng.normal(size=(4, 2)), np.ones(2)),
    ]
    net = Network(layers)
    net.save_params(tmp_path / "p.pkl")
    saved = read(tmp_path / "p.pkl")
    np.testing.assert_array_equal(saved["W1"], net.params["W1"])
    np.testing.assert_array_equal(saved["W2"], net.params["W2"] / (0.5 * 0.8))
    np.testing.assert_array_equal(saved["b2"], np.ones(2))


def test_a_books_dropout_is_not_folded(tmp_path):
    """A non-inverted Dropout already scales at evaluation as the book's does: nothing to fold."""
    rng = np.random.default_rng(0)
    W2 = rng.normal(size=(4, 2))
    net = Network([Affine(rng.normal(size=(3, 4)), np.zeros(4)), Dropout(0.5, inverted=False),
                   Affine(W2.copy(), np.zeros(2))])  # fmt: skip
    net.save_params(tmp_path / "p.pkl")
    np.testing.assert_array_equal(read(tmp_path / "p.pkl")["W2"], W2)


def test_the_output_scale_divides_the_last_w_and_b(tmp_path):
    """A network whose book counterpart drops out its scores (book_output_scale 0.5): the last
    layer's W and b are saved ×2, on top of the hidden dropout's 1/(1 − p) in W."""
    net = mlp()
    net.book_output_scale = 0.5
    own = numbered(net)
    net.save_params(tmp_path / "plain.pkl")
    saved = read(tmp_path / "plain.pkl")
    for key in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(saved[key], own[key], err_msg=key)
    np.testing.assert_array_equal(saved["W3"], own["W3"] * 2)
    np.testing.assert_array_equal(saved["b3"], own["b3"] * 2)

    net = mlp(dropout_ratio=0.5)
    net.book_output_scale = 0.5
    own = numbered(net)
    net.save_params(tmp_path / "dropout.pkl")
    saved = read(tmp_path / "dropout.pkl")
    np.testing.assert_array_equal(saved["W2"], own["W2"] * 2)
    np.testing.assert_array_equal(saved["W3"], own["W3"] * 4)
    np.testing.assert_array_equal(saved["b3"], own["b3"] * 2)
    np.testing.assert_array_equal(saved["b2"], own["b2"])


def test_two_batchnorm_layers_save_their_statistics_numbered_like_gamma(tmp_path):
    net = mlp(batchnorm=True)
    numbered(net)
    layers = [net.layers["BatchNormalization1"], net.layers["BatchNormalization2"]]
    for i, layer in enumerate(layers):
        layer.running_mean[...] = np.arange(layer.running_mean.size) + 10 * i
        layer.running_var[...] = np.arange(layer.running_var.size) + 100 * i + 1
    net.save_params(tmp_path / "bn.pkl")
    saved = read(tmp_path / "bn.pkl")
    assert list(saved) == ["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2",
                           "beta2", "running_mean1", "running_var1", "running_mean2",
                           "running_var2"]  # fmt: skip
    for i, layer in enumerate(layers, start=1):
        np.testing.assert_array_equal(saved[f"running_mean{i}"], layer.running_mean)
        np.testing.assert_array_equal(saved[f"running_var{i}"], layer.running_var)

    other = mlp(batchnorm=True, seed=5)
    other.load_params(tmp_path / "bn.pkl")
    for key, value in net.buffers.items():
        np.testing.assert_array_equal(other.buffers[key], value, err_msg=key)
    for key, value in net.params.items():
        np.testing.assert_array_equal(other.params[key], value, err_msg=key)


def test_the_file_name_defaults_to_the_books_params_pkl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = mlp()
    own = numbered(net)
    net.save_params()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.pkl"]
    other = mlp()
    other.load_params()
    for key, value in own.items():
        np.testing.assert_array_equal(other.params[key], value)


# -- what load_params reads ------------------------------------------------------------------------


def test_loading_multiplies_by_the_factors_in_float64_and_rounds_once(tmp_path):
    """A float32 file into a float32 net with dropout 0.3: W2 = float32(float64(W2) × 0.7) — not
    float32 arithmetic, whose 0.7 is rounded first (the test checks that the two differ here)."""
    rng = np.random.default_rng(2)
    wide = xpnet.MultiLayerNet(20, [30, 20], 2, dropout_ratio=0.3, dtype="float64")
    book = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in wide.params.items()}
    save_pickle(book, tmp_path / "book.pkl")
    net = xpnet.MultiLayerNet(20, [30, 20], 2, dropout_ratio=0.3, dtype="float32")
    net.load_params(tmp_path / "book.pkl")
    for key in ("W2", "W3"):
        exact = (book[key].astype(np.float64) * 0.7).astype(np.float32)
        assert net.params[key].dtype == np.float32
        np.testing.assert_array_equal(net.params[key], exact, err_msg=key)
        assert np.any(book[key] * np.float32(0.7) != exact), "the test cannot tell the two apart"
    for key in ("W1", "b1", "b2", "b3"):
        np.testing.assert_array_equal(net.params[key], book[key], err_msg=key)

    wide.load_params(tmp_path / "book.pkl")
    assert wide.params["W2"].dtype == np.float64
    np.testing.assert_array_equal(wide.params["W2"], book["W2"].astype(np.float64) * 0.7)


def test_loading_undoes_saving_with_the_output_scale(tmp_path):
    net = mlp(dropout_ratio=0.5)
    net.book_output_scale = 0.5
    own = numbered(net)
    net.save_params(tmp_path / "p.pkl")
    other = mlp(dropout_ratio=0.5)
    other.book_output_scale = 0.5
    other.load_params(tmp_path / "p.pkl")
    for key, value in own.items():  # factors of 2: exact both ways
        np.testing.assert_array_equal(other.params[key], value, err_msg=key)


def test_a_float64_file_loads_into_a_float32_array_api_network(tmp_path):
    """The cast happens on the host: an Array API library refuses to copy float64 into float32."""
    xp = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    book = {k: rng.normal(size=v.shape) for k, v in mlp().params.items()}
    save_pickle(book, tmp_path / "book.pkl")
    net = xpnet.MultiLayerNet(3, [4, 2], 2, backend="array_api_strict", dtype="float32", seed=1)
    net.load_params(tmp_path / "book.pkl")
    for key, value in net.params.items():
        assert value.dtype == xp.float32 and not isinstance(value, np.ndarray)
        np.testing.assert_array_equal(np.asarray(value), book[key].astype(np.float32))


# -- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [{"W1": [[1.0, 2.0]]}, {1: np.zeros(3)}, [np.zeros(3)], np.zeros(3)],
    ids=["list-value", "int-key", "list", "array"],
)
def test_a_pickle_that_is_not_a_dict_of_named_arrays_is_refused(tmp_path, content):
    save_pickle(content, tmp_path / "odd.pkl")
    with pytest.raises(
        CheckpointError, match=r"odd.pkl does not hold weights in the book's format"
    ):
        mlp().load_params(tmp_path / "odd.pkl")


def test_missing_and_unknown_keys_are_named(tmp_path):
    small = xpnet.MultiLayerNet(3, [4], 2, dtype="float64")
    small.save_params(tmp_path / "small.pkl")
    with pytest.raises(CheckpointError, match=r"small.pkl does not fit this network: it lacks "
                       r"W3, b3 the network's parameters \(W1, b1, W2, b2, W3, b3\)"):  # fmt: skip
        mlp().load_params(tmp_path / "small.pkl")

    extra = {**read(tmp_path / "small.pkl"), "W9": np.zeros(1), "W10": np.zeros(1)}
    save_pickle(extra, tmp_path / "extra.pkl")
    with pytest.raises(CheckpointError, match=r"extra.pkl does not fit this network: it has "
                       r"W10, W9 besides the network's parameters \(W1, b1, W2, b2\)"):  # fmt: skip
        small.load_params(tmp_path / "extra.pkl")


def test_statistics_of_a_batchnorm_the_network_lacks_are_unknown(tmp_path):
    net = xpnet.MultiLayerNet(3, [4], 2, batchnorm=True, dtype="float64")
    net.save_params(tmp_path / "bn.pkl")
    plain = xpnet.MultiLayerNet(3, [4], 2, dtype="float64")
    with pytest.raises(CheckpointError, match=r"it has beta1, gamma1, running_mean1, "
                       r"running_var1 besides"):  # fmt: skip
        plain.load_params(tmp_path / "bn.pkl")


def test_a_refused_file_leaves_the_network_as_it_was(tmp_path):
    net = mlp()
    own = numbered(net)
    good = read_after_save(net, tmp_path)
    good["W3"] = np.zeros((5, 5))
    save_pickle(good, tmp_path / "bad.pkl")
    with pytest.raises(
        CheckpointError, match=r"bad.pkl: W3 has shape \(5, 5\), the network's \(2, 2\)"
    ):
        net.load_params(tmp_path / "bad.pkl")
    for key, value in own.items():
        np.testing.assert_array_equal(net.params[key], value)


def read_after_save(net, tmp_path) -> dict:
    net.save_params(tmp_path / "good.pkl")
    return read(tmp_path / "good.pkl")
