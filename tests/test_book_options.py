"""The book's variants as options of xpnet's layers (what xpnet.book selects), on every backend,
against hand-written float64 references and torch; and xpnet.book's device switch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

from xpnet.backend import DeviceFallbackWarning, to_numpy
from xpnet.errors import ConfigError, ShapeError
from xpnet.nn.batchnorm import BatchNormalization
from xpnet.nn.dropout import Dropout
from xpnet.nn.layers import SoftmaxWithLoss

# -- SoftmaxWithLoss(delta): the book's guarded cross-entropy -------------------------------------


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_loss_with_the_books_delta(backend, rng, one_hot):
    scores = rng.normal(0, 3, (6, 5))
    scores[0] = [40.0, 0.0, 0.0, 0.0, 0.0]  # y_true ≈ 1: δ matters relative to the loss
    labels = np.array([0, 1, 4, 2, 2, 3])
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    expected = -np.log(y[np.arange(6), labels] + 1e-7).sum() / 6
    t = np.eye(5)[labels] if one_hot else labels
    layer = SoftmaxWithLoss(delta=1e-7)
    loss = layer.forward(backend.asarray(scores, "float64"), backend.asarray(t))
    assert_on(loss, backend, "float64", ())
    assert float(loss) == pytest.approx(expected, rel=1e-13)
    exact = SoftmaxWithLoss().forward(backend.asarray(scores, "float64"), backend.asarray(t))
    assert float(exact) != pytest.approx(expected, rel=1e-9)  # the guard is what differs
    dx = layer.backward()
    assert_on(dx, backend, "float64", (6, 5))
    np.testing.assert_allclose(to_numpy(dx), (y - np.eye(5)[labels]) / 6, rtol=1e-12, atol=1e-15)


def test_softmax_loss_delta_refuses_a_negative():
    with pytest.raises(ConfigError, match="delta"):
        SoftmaxWithLoss(delta=-1e-7)


def test_the_books_guarded_loss_keeps_the_fast_steps_off():
    """The fused kernels compute the exact loss, not the book's log(y + 1e-7): a network with
    delta > 0 runs on its layers (xpnet.fast.plan finds no step, dense or convolutional)."""
    from xpnet.fast import plan
    from xpnet.nn.convnet import SimpleConvNet
    from xpnet.nn.mlp import TwoLayerNet

    for make in (
        lambda: TwoLayerNet(6, 5, 3, dtype="float64"),
        lambda: SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3}, 4, 3),
    ):
        net = make()
        assert plan(net) is not None  # the step this test is about exists without delta
        net.last_layer = SoftmaxWithLoss(delta=1e-7)
        assert plan(net) is None


# -- Dropout(inverted=False, uniform=...): the book's dropout --------------------------------------


def test_books_dropout_scales_at_test_time_with_masks_from_the_given_source(backend, rng):
    x = rng.normal(size=(4, 6))
    draws = [rng.random((4, 6)), rng.random((4, 6))]
    calls = []

    def uniform(shape):
        calls.append(shape)
        return draws[len(calls) - 1]

    layer = Dropout(0.3, inverted=False, uniform=uniform)
    y = layer.forward(backend.asarray(x, "float64"))
    assert_on(y, backend, "float64", (4, 6))
    np.testing.assert_array_equal(to_numpy(y), x * (draws[0] > 0.3))  # kept above p, unscaled
    dout = rng.normal(size=(4, 6))
    dx = layer.backward(backend.asarray(dout, "float64"))
    np.testing.assert_array_equal(to_numpy(dx), dout * (draws[0] > 0.3))
    test = layer.forward(backend.asarray(x, "float32"), train=False)
    assert_on(test, backend, "float32", (4, 6))
    np.testing.assert_allclose(to_numpy(test), (x * 0.7).astype(np.float32), rtol=1e-6)
    assert calls == [(4, 6)]  # evaluation draws nothing


def test_books_dropout_draws_even_at_ratio_zero_as_the_books():
    calls = []
    layer = Dropout(0.0, inverted=False, uniform=lambda s: calls.append(s) or np.full(s, 0.5))
    np.testing.assert_array_equal(layer.forward(np.ones((2, 3))), np.ones((2, 3)))
    assert calls == [(2, 3)]


def test_inverted_dropout_with_a_source_scales_in_training():
    layer = Dropout(0.5, uniform=lambda s: np.array([[0.2, 0.7]]))
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 1.0]])), [[0.0, 2.0]])
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 1.0]]), train=False), [[1, 1]])


def test_dropout_options_are_checked():
    with pytest.raises(ConfigError, match="inverted"):
        Dropout(0.5, inverted="no")
    with pytest.raises(ConfigError, match="uniform"):
        Dropout(0.5, uniform=3)


# -- BatchNormalization(per_activation, unbiased, eps): the book's batch norm ----------------------


def books_batchnorm(x, gamma, beta, dout):
    """The book's batch normalization of (N, D) rows in training, written out: y and dx."""
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + 1e-6)
    xn = xc / std
    n = x.shape[0]
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -((dxn * xc) / (std * std)).sum(axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dx = dxc - dxc.sum(axis=0) / n
    return gamma * xn + beta, dx, mu, var


def _books_layer(backend, d, **kw):
    zeros = backend.zeros((d,), "float64")
    return BatchNormalization(
        backend.asarray(np.linspace(0.5, 1.5, d), "float64"),
        backend.asarray(np.linspace(-0.2, 0.2, d), "float64"),
        0.9,
        zeros,
        zeros,
        eps=1e-6,
        unbiased=False,
        per_activation=True,
        **kw,
    )


def test_books_batchnorm_per_activation_on_images(backend, rng):
    x = rng.normal(1.0, 2.0, (5, 2, 3, 3))
    dout = rng.normal(size=(5, 2, 3, 3))
    layer = _books_layer(backend, 18)
    y = layer.forward(backend.asarray(x, "float64"))
    assert_on(y, backend, "float64", (5, 2, 3, 3))
    gamma, beta = np.linspace(0.5, 1.5, 18), np.linspace(-0.2, 0.2, 18)
    y_ref, dx_ref, mu, var = books_batchnorm(x.reshape(5, 18), gamma, beta, dout.reshape(5, 18))
    np.testing.assert_allclose(to_numpy(y), y_ref.reshape(x.shape), rtol=1e-12, atol=1e-14)
    dx = layer.backward(backend.asarray(dout, "float64"))
    assert_on(dx, backend, "float64", (5, 2, 3, 3))
    np.testing.assert_allclose(to_numpy(dx), dx_ref.reshape(x.shape), rtol=1e-10, atol=1e-13)
    # running averages from zero, with the biased variance
    np.testing.assert_allclose(to_numpy(layer.running_mean), 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(layer.running_var), 0.1 * var, rtol=1e-12)
    test = layer.forward(backend.asarray(x, "float64"), train=False)
    expected = gamma * (x.reshape(5, 18) - 0.1 * mu) / np.sqrt(0.1 * var + 1e-6) + beta
    np.testing.assert_allclose(to_numpy(test), expected.reshape(x.shape), rtol=1e-10)


def test_books_batchnorm_trains_on_a_batch_of_one(backend, rng):
    layer = _books_layer(backend, 4)
    y = layer.forward(backend.asarray(rng.normal(size=(1, 4)), "float64"))
    np.testing.assert_allclose(to_numpy(y), [np.linspace(-0.2, 0.2, 4)], atol=1e-15)  # β
    dx = layer.backward(backend.asarray(rng.normal(size=(1, 4)), "float64"))
    np.testing.assert_allclose(to_numpy(dx), np.zeros((1, 4)), atol=1e-12)
    with pytest.raises(ShapeError, match="more than one value per channel"):  # the default refuses
        BatchNormalization(np.ones(4), np.zeros(4)).forward(np.ones((1, 4)))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_books_batchnorm_against_torch_on_flattened_images(rng):
    import torch

    x = rng.normal(0.5, 1.5, (6, 3, 2, 2))
    dout = rng.normal(size=(6, 3, 2, 2))
    layer = _books_layer(_numpy(), 12)
    y = layer.forward(x)
    dx = layer.backward(dout)
    xt = torch.tensor(x.reshape(6, 12), requires_grad=True)
    weight = torch.tensor(np.linspace(0.5, 1.5, 12), requires_grad=True)
    bias = torch.tensor(np.linspace(-0.2, 0.2, 12), requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, None, None, weight, bias, training=True, eps=1e-6)
    yt.backward(torch.tensor(dout.reshape(6, 12)))
    np.testing.assert_allclose(y.reshape(6, 12), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx.reshape(6, 12), xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(layer.dgamma, weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.dbeta, bias.grad.numpy(), rtol=1e-12)


def _numpy():
    from xpnet.backend import resolve

    return resolve("cpu", "numpy")


def test_batchnorm_options_are_checked():
    with pytest.raises(ConfigError, match="eps"):
        BatchNormalization(np.ones(2), np.zeros(2), eps=0.0)
    with pytest.raises(ConfigError, match="unbiased"):
        BatchNormalization(np.ones(2), np.zeros(2), unbiased=1)
    with pytest.raises(ConfigError, match="per_activation"):
        BatchNormalization(np.ones(2), np.zeros(2), per_activation="yes")


# -- XPNET_DEVICE, XPNET_BACKEND, XPNET_DTYPE --------------------------------------------------------


@pytest.fixture
def fresh_device(monkeypatch):
    from xpnet.book import device

    for name in ("XPNET_DEVICE", "XPNET_BACKEND", "XPNET_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    device._resolve.cache_clear()
    yield monkeypatch
    device._resolve.cache_clear()


def test_cuda_without_a_gpu_warns_once_and_uses_the_cpu(fresh_device):
    from xpnet.backend import gpu_available
    from xpnet.book import device

    if gpu_available("cupy"):
        pytest.skip("a GPU is present: cuda means CuPy here")
    fresh_device.setenv("XPNET_DEVICE", "cuda")
    with pytest.warns(DeviceFallbackWarning, match="falling back to the CPU") as caught:
        be = device.backend()
        device.backend()
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert be.name == "numpy"


def test_a_bad_dtype_is_one_clear_line(fresh_device):
    from xpnet.book import device

    fresh_device.setenv("XPNET_DTYPE", "float16")
    with pytest.raises(ConfigError, match="unknown XPNET_DTYPE 'float16'; choose one of"):
        device.dtype()


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
# np.argmax on a tensor goes through NumPy's conversion, which warns about torch's __array_wrap__
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_torch_tensors_stand_in_for_a_device(fresh_device):
    """XPNET_BACKEND=torch: the networks compute on torch tensors; the script's NumPy calls on
    the tensors they return work where NumPy's dispatch allows (on the CPU, by conversion)."""
    import torch

    from xpnet.book.ch05.two_layer_net import TwoLayerNet
    from xpnet.book.common.optimizer import SGD

    fresh_device.setenv("XPNET_BACKEND", "torch")
    fresh_device.setenv("XPNET_DTYPE", "float32")
    np.random.seed(1)  # noqa: NPY002
    net = TwoLayerNet(6, 4, 3)
    assert isinstance(net.params["W1"], torch.Tensor) and net.params["W1"].dtype == torch.float32
    x = np.random.rand(5, 6).astype(np.float32)  # noqa: NPY002 (host data, moved by the network)
    t = np.array([0, 2, 1, 1, 0])
    grads = net.gradient(x, t)
    assert all(isinstance(g, torch.Tensor) for g in grads.values())
    SGD(lr=0.1).update(net.params, grads)
    loss = net.loss(x, t)
    assert isinstance(loss, np.float32) and np.isfinite(loss)
    y = net.predict(torch.asarray(x))
    assert isinstance(y, torch.Tensor)
    # np.argmax works on a CPU tensor (by conversion); np.sum of a tensor would not (torch has no
    # __array_function__, which CuPy has): torch is a partial stand-in for a GPU
    hits = int((to_numpy(np.argmax(y, axis=1)) == t).sum())
    assert net.accuracy(x, t) == hits / 5


def test_cross_backend_warning_is_not_raised_on_the_cpu(fresh_device):
    from xpnet.book import device

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device.backend().name == "numpy" and device.dtype() is None


def test_the_books_layer_classes_select_the_books_options(rng):
    """xpnet.book.common.layers: the book's signatures, xpnet's layers, the book's options."""
    from xpnet.book.common import layers

    x = rng.normal(1.0, 2.0, (5, 2, 3, 3))
    dout = rng.normal(size=(5, 2, 3, 3))
    bn = layers.BatchNormalization(np.linspace(0.5, 1.5, 18), np.linspace(-0.2, 0.2, 18))
    y_ref, dx_ref, _, var = books_batchnorm(
        x.reshape(5, 18), np.linspace(0.5, 1.5, 18), np.linspace(-0.2, 0.2, 18), dout.reshape(5, 18)
    )
    np.testing.assert_allclose(bn.forward(x, train_flg=True), y_ref.reshape(x.shape), rtol=1e-12)
    np.testing.assert_allclose(bn.backward(dout), dx_ref.reshape(x.shape), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(bn.running_var, 0.1 * var, rtol=1e-12)

    np.random.seed(3)  # noqa: NPY002
    expected = np.random.rand(4, 5) > 0.4  # noqa: NPY002
    np.random.seed(3)  # noqa: NPY002
    drop = layers.Dropout(0.4)
    np.testing.assert_array_equal(drop.forward(np.ones((4, 5))), expected)
    np.testing.assert_allclose(drop.forward(np.ones((4, 5)), train_flg=False), 0.6)

    conv = layers.Convolution(rng.normal(size=(2, 1, 3, 3)), 0)  # the book's apply_filter passes 0
    assert conv.fast is False and conv.b.tolist() == [0.0, 0.0]
    assert layers.Pooling(2, 2).forward(np.arange(16.0).reshape(1, 1, 4, 4)).tolist() == [
        [[[5.0, 7.0], [13.0, 15.0]]]
    ]
    loss = layers.SoftmaxWithLoss().forward(np.array([[50.0, 0.0]]), np.array([0]))
    assert float(loss) == pytest.approx(-np.log(1.0 + 1e-7), rel=1e-9)
