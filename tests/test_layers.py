"""Every backward pass against float64 central differences, and against torch.autograd."""

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

import xpnet
from xpnet import (
    Affine,
    ReLU,
    Sigmoid,
    SoftmaxWithLoss,
    Tanh,
    max_relative_error,
    numerical_gradient,
)
from xpnet.backend import to_numpy
from xpnet.errors import ShapeError

TOL = 1e-6


def away_from_zero(rng, shape):
    """Inputs at least 0.1 from ReLU's kink, so a central difference never straddles it."""
    z = rng.standard_normal(shape)
    return np.sign(z) * (0.1 + np.abs(z))


def check_layer(layer, x, backend, rng):
    """Compare backward with numerical gradients of L = Σ y·R for a fixed random R."""
    xp = backend.xp
    y = layer.forward(x)
    R = backend.asarray(rng.standard_normal(tuple(y.shape)), "float64")
    dx = layer.backward(R)
    assert_on(dx, backend, "float64", x.shape)

    def loss(_):
        return xp.sum(layer.forward(x, train=False) * R)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < TOL
    for name in layer.param_names:
        grad = getattr(layer, "d" + name)
        param = getattr(layer, name)
        assert_on(grad, backend, "float64", param.shape)
        assert max_relative_error(grad, numerical_gradient(loss, param)) < TOL


def make_affine(backend, rng, n_in, n_out):
    W = backend.asarray(rng.standard_normal((n_in, n_out)), "float64")
    b = backend.asarray(rng.standard_normal(n_out), "float64")
    return Affine(W, b)


def test_affine_gradients(backend, rng):
    layer = make_affine(backend, rng, 5, 4)
    check_layer(layer, backend.asarray(rng.standard_normal((3, 5)), "float64"), backend, rng)


def test_affine_flattens_4d_input_and_restores_its_shape(backend, rng):
    layer = make_affine(backend, rng, 2 * 3 * 2, 4)
    x = backend.asarray(rng.standard_normal((3, 2, 3, 2)), "float64")
    assert_on(layer.forward(x), backend, "float64", (3, 4))
    check_layer(layer, x, backend, rng)


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh])
def test_activation_layer_gradients(cls, backend, rng):
    check_layer(cls(), backend.asarray(away_from_zero(rng, (4, 6)), "float64"), backend, rng)


@pytest.mark.parametrize("labels", ["int", "onehot"])
def test_softmax_with_loss_gradient(labels, backend, rng):
    xp = backend.xp
    x = backend.asarray(rng.standard_normal((5, 4)) * 3, "float64")
    t_int = rng.integers(0, 4, 5)
    t = backend.asarray(t_int) if labels == "int" else backend.asarray(np.eye(4)[t_int], "float64")
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert_on(loss, backend, "float64", ())
    expected = -np.mean(np.log(xpnet.softmax(to_numpy(x))[np.arange(5), t_int]))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    dx = layer.backward()
    assert_on(dx, backend, "float64", (5, 4))
    assert max_relative_error(dx, numerical_gradient(lambda _: layer.forward(x, t), x)) < TOL
    # (y - t) / N, the slides' formula
    y = to_numpy(xpnet.softmax(x))
    np.testing.assert_allclose(to_numpy(dx), (y - np.eye(4)[t_int]) / 5, atol=1e-15)
    del xp


@pytest.mark.parametrize("dout", [1.0, np.float64(1.0), np.float32(2.0), 3])
def test_softmax_with_loss_backward_keeps_the_scores_dtype(dout, backend, rng):
    """A NumPy float64 scalar as dout must not turn a float32 gradient into float64."""
    x = backend.asarray(rng.standard_normal((3, 4)), "float32")
    layer = SoftmaxWithLoss()
    layer.forward(x, backend.asarray(np.array([0, 1, 3])))
    assert_on(layer.backward(dout), backend, "float32", (3, 4))
    dout_array = backend.asarray(np.array(float(dout)), "float64")
    assert_on(layer.backward(dout_array), backend, "float32", (3, 4))


def test_layers_keep_float32(backend, rng):
    W = backend.asarray(rng.standard_normal((6, 3)), "float32")
    layers = [Affine(W, backend.zeros((3,))), ReLU(), Sigmoid(), Tanh()]
    x = backend.asarray(rng.standard_normal((2, 6)), "float32")
    for layer in layers:
        x = layer.forward(x)
        assert_on(x, backend, "float32", (2, 3))
    dout = backend.asarray(np.ones((2, 3)), "float32")
    for layer in reversed(layers):
        dout = layer.backward(dout)
    assert_on(dout, backend, "float32", (2, 6))
    assert_on(layers[0].dW, backend, "float32", (6, 3))
    assert_on(layers[0].db, backend, "float32", (3,))


def test_affine_without_input_grad_returns_none(backend, rng):
    layer = make_affine(backend, rng, 4, 2)
    layer.forward(backend.asarray(rng.standard_normal((3, 4)), "float64"))
    assert layer.backward(backend.asarray(np.ones((3, 2)), "float64"), input_grad=False) is None
    assert_on(layer.dW, backend, "float64", (4, 2))


def test_eval_forward_keeps_nothing(backend, rng):
    layer = make_affine(backend, rng, 4, 2)
    layer.forward(backend.asarray(rng.standard_normal((3, 4)), "float64"), train=False)
    assert layer.x is None


def test_affine_rejects_wrong_feature_count(backend, rng):
    layer = make_affine(backend, rng, 4, 2)
    layer.name = "Affine1"
    with pytest.raises(
        ShapeError,
        match=r"Affine1 expects 4 input features per sample, got an input of shape \(3, 5\)",
    ):
        layer.forward(backend.asarray(np.zeros((3, 5)), "float64"))


def test_affine_rejects_mismatched_bias():
    with pytest.raises(ShapeError, match="b of shape"):
        Affine(np.zeros((3, 2)), np.zeros(3))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize(
    "cls, torch_fn",
    [(ReLU, "relu"), (Sigmoid, "sigmoid"), (Tanh, "tanh")],
)
def test_activation_layers_match_torch_autograd(cls, torch_fn, rng):
    import torch

    x = away_from_zero(rng, (4, 7))
    R = rng.standard_normal((4, 7))
    layer = cls()
    layer.forward(x)
    dx = layer.backward(R)
    xt = torch.tensor(x, requires_grad=True)
    (getattr(torch, torch_fn)(xt) * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_affine_and_softmax_loss_match_torch_autograd(rng):
    import torch

    x, W, b = rng.standard_normal((6, 2, 5)), rng.standard_normal((10, 3)), rng.standard_normal(3)
    t = rng.integers(0, 3, 6)
    affine, loss_layer = Affine(W.copy(), b.copy()), SoftmaxWithLoss()
    loss = loss_layer.forward(affine.forward(x), t)
    dx = affine.backward(loss_layer.backward())

    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    lt = torch.nn.functional.cross_entropy(xt.reshape(6, -1) @ Wt + bt, torch.tensor(t))
    lt.backward()
    assert float(loss) == pytest.approx(lt.item(), rel=1e-13)
    for ours, theirs in ((dx, xt.grad), (affine.dW, Wt.grad), (affine.db, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)


# -- the layer contract: a layer owns its arrays ------------------------------------------------


def _owning_network(kind, backend, rng):
    """A network with two layers of `kind` built from the same caller arrays, and those arrays."""
    from xpnet import BatchNormalization, Convolution, Network

    def arr(*shape):
        return backend.asarray(rng.standard_normal(shape), "float64")

    if kind == "affine":
        given = {"W": arr(4, 4), "b": arr(4)}
        layers = [Affine(given["W"], given["b"]), ReLU(), Affine(given["W"], given["b"])]
        return Network(layers), given, arr(6, 4)
    if kind == "convolution":
        given = {"W": arr(2, 2, 3, 3), "b": arr(2)}
        conv = [Convolution(given["W"], given["b"], pad=1) for _ in range(2)]
        layers = [conv[0], ReLU(), conv[1], Affine(arr(2 * 4 * 4, 4), arr(4))]
        return Network(layers), given, arr(6, 2, 4, 4)
    given = {"gamma": arr(4), "beta": arr(4), "running_mean": arr(4), "running_var": arr(4) ** 2}
    norms = [
        BatchNormalization(
            given["gamma"],
            given["beta"],
            running_mean=given["running_mean"],
            running_var=given["running_var"],
        )
        for _ in range(2)
    ]
    layers = [Affine(arr(4, 4), arr(4)), norms[0], ReLU(), Affine(arr(4, 4), arr(4)), norms[1]]
    return Network(layers), given, arr(6, 4)


@pytest.mark.parametrize("kind", ["affine", "convolution", "batchnorm"])
def test_layers_copy_the_arrays_they_are_built_from(kind, backend, rng):
    """Layer's contract: "the arrays it is built from are copied, so nothing a caller passed is
    ever written". Every layer with parameters or buffers, two of them built from one set of
    arrays: three SGD steps and a set_params with buffers change neither the caller's arrays nor
    the other layer's, and each layer steps by its own gradient only."""
    net, given, x = _owning_network(kind, backend, rng)
    before = {name: to_numpy(a).copy() for name, a in given.items()}
    t = backend.asarray(rng.integers(0, 4, x.shape[0]))
    kinds = {"affine": "Affine", "convolution": "Convolution", "batchnorm": "BatchNormalization"}
    owners = [net.layers[f"{kinds[kind]}{i}"] for i in (1, 2)]  # the two built from `given`
    for layer in owners:  # before any step: a training forward replaces the running statistics
        for name, array in given.items():
            assert getattr(layer, name) is not array, f"{layer.name}.{name} is the caller's array"
    for _ in range(3):
        net.forward_backward(x, t)
        expected = [
            {
                p: to_numpy(getattr(layer, p)) - 0.1 * to_numpy(getattr(layer, "d" + p))
                for p in layer.param_names
            }
            for layer in owners
        ]
        xpnet.SGD(lr=0.1).update(net.params, net.grads)
        for layer, want in zip(owners, expected, strict=True):
            for p, value in want.items():
                assert_on(getattr(layer, p), backend, "float64", value.shape)
                np.testing.assert_allclose(to_numpy(getattr(layer, p)), value, rtol=1e-12)
    buffers = {
        k: backend.asarray(np.full(tuple(v.shape), 7.0), "float64") for k, v in net.buffers.items()
    }
    net.set_params({**net.params, **buffers})
    for layer in owners:
        for name, array in given.items():
            assert getattr(layer, name) is not array, f"{layer.name}.{name} is the caller's array"
    for name, array in given.items():
        np.testing.assert_array_equal(to_numpy(array), before[name], err_msg=f"{name} written")
