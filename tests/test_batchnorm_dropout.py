"""BatchNormalization and Dropout: numerical gradients on every backend, torch's batch_norm (both
modes, running statistics) and dropout, seeding and train/eval behaviour."""

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

from xpnet import (
    BatchNormalization,
    Dropout,
    MultiLayerNet,
    max_relative_error,
    numerical_gradient,
)
from xpnet.backend import to_numpy
from xpnet.errors import ConfigError, ShapeError

TOL = 1e-6
SHAPES = [(4, 3, 3, 2), (5, 4)]  # per channel on images, per feature on vectors
SHAPE_IDS = ["4d", "2d"]


def make_bn(backend, rng, channels, dtype="float64", **kw):
    gamma = backend.asarray(1.0 + 0.5 * rng.standard_normal(channels), dtype)
    beta = backend.asarray(rng.standard_normal(channels), dtype)
    return BatchNormalization(gamma, beta, **kw)


# -- BatchNormalization --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batchnorm_gradients(shape, backend, rng):
    xp = backend.xp
    layer = make_bn(backend, rng, shape[1])
    x = backend.asarray(rng.standard_normal(shape) * 2 + 1, "float64")
    y = layer.forward(x)
    assert_on(y, backend, "float64", shape)
    R = backend.asarray(rng.standard_normal(shape), "float64")
    dx = layer.backward(R)
    assert_on(dx, backend, "float64", shape)

    def loss(_):  # training mode: the batch's statistics depend on x
        return xp.sum(layer.forward(x, train=True) * R)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < TOL
    for name in ("gamma", "beta"):
        grad = getattr(layer, "d" + name)
        assert_on(grad, backend, "float64", (shape[1],))
        assert max_relative_error(grad, numerical_gradient(loss, getattr(layer, name))) < TOL
    assert layer.backward(R, input_grad=False) is None


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batchnorm_matches_torch_in_training_and_evaluation(shape, backend, rng):
    import torch
    import torch.nn.functional as F

    C = shape[1]
    gamma, beta = 1.0 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)
    layer = BatchNormalization(
        backend.asarray(gamma, "float64"), backend.asarray(beta, "float64"), momentum=0.8
    )
    assert np.array_equal(to_numpy(layer.running_mean), np.zeros(C))
    assert np.array_equal(to_numpy(layer.running_var), np.ones(C))
    # torch's momentum is the weight of the new value, ours (the book's) of the old one
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for _ in range(2):
        x = rng.standard_normal(shape) * 3 + 2
        R = rng.standard_normal(shape)
        y = layer.forward(backend.asarray(x, "float64"))
        dx = layer.backward(backend.asarray(R, "float64"))
        xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
        yt = F.batch_norm(xt, rm, rv, gt, bt, training=True, momentum=0.2, eps=1e-5)
        (yt * torch.tensor(R)).sum().backward()
        close = {"rtol": 1e-10, "atol": 1e-12}
        np.testing.assert_allclose(to_numpy(y), yt.detach().numpy(), **close)
        for ours, theirs in ((dx, xt), (layer.dgamma, gt), (layer.dbeta, bt)):
            np.testing.assert_allclose(to_numpy(ours), theirs.grad.numpy(), **close)
        assert_on(layer.running_mean, backend, "float64", (C,))
        assert_on(layer.running_var, backend, "float64", (C,))
        np.testing.assert_allclose(to_numpy(layer.running_mean), rm.numpy(), **close)
        np.testing.assert_allclose(to_numpy(layer.running_var), rv.numpy(), **close)
    x = rng.standard_normal(shape)
    y = layer.forward(backend.asarray(x, "float64"), train=False)
    assert_on(y, backend, "float64", shape)
    yt = F.batch_norm(
        torch.tensor(x), rm, rv, torch.tensor(gamma), torch.tensor(beta), training=False, eps=1e-5
    )
    np.testing.assert_allclose(to_numpy(y), yt.numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_keeps_float32_and_its_buffers(backend, rng):
    layer = make_bn(backend, rng, 3, "float32")
    assert BatchNormalization.buffer_names == ("running_mean", "running_var")
    assert layer.param_names == ("gamma", "beta") and layer.decay_names == ()
    x = backend.asarray(rng.standard_normal((4, 3, 2, 2)), "float32")
    for train in (True, False):
        assert_on(layer.forward(x, train=train), backend, "float32", (4, 3, 2, 2))
    assert_on(layer.running_mean, backend, "float32", (3,))
    assert_on(layer.running_var, backend, "float32", (3,))
    layer.forward(x)
    dx = layer.backward(backend.asarray(np.ones((4, 3, 2, 2)), "float32"))
    assert_on(dx, backend, "float32", (4, 3, 2, 2))
    assert_on(layer.dgamma, backend, "float32", (3,))


def test_batchnorm_normalizes_per_channel(backend, rng):
    xp = backend.xp
    gamma, beta = backend.asarray(np.ones(2), "float64"), backend.asarray(np.zeros(2), "float64")
    layer = BatchNormalization(gamma, beta)
    x = rng.standard_normal((6, 2, 3, 3)) * np.array([1.0, 10.0])[:, None, None] + 5
    y = layer.forward(backend.asarray(x, "float64"))
    mean = to_numpy(xp.mean(y, axis=(0, 2, 3)))
    var = to_numpy(xp.var(y, axis=(0, 2, 3)))
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(var, 1.0, rtol=1e-3)  # σ²/(σ² + ε)


def test_batchnorm_checks_its_input(backend, rng):
    layer = make_bn(backend, rng, 3)
    with pytest.raises(ShapeError, match=r"expects input \(N, 3\) or \(N, 3, H, W\)"):
        layer.forward(backend.asarray(np.zeros((2, 4)), "float64"))
    with pytest.raises(ShapeError, match="the same shape"):
        BatchNormalization(np.ones(3), np.zeros(2))
    with pytest.raises(ConfigError, match="momentum"):
        BatchNormalization(np.ones(3), np.zeros(3), momentum=1.5)
    with pytest.raises(ShapeError, match=r"running_var of gamma's shape \(3,\), got \(2,\)"):
        BatchNormalization(np.ones(3), np.zeros(3), running_var=np.ones(2))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_batchnorm_refuses_to_train_on_one_value_per_channel(shape, backend, rng):
    """One value per channel normalizes to 0: the output would be β and the batch variance 0
    (running_var decaying towards 0), so training learns nothing. torch refuses; so does xpnet,
    in one line naming the fix. Evaluation, and more values per channel, are fine."""
    layer = make_bn(backend, rng, 3)
    x = backend.asarray(rng.standard_normal(shape), "float64")
    with pytest.raises(ShapeError, match=r"needs more than one value per channel .*--batch-size 2"):
        layer.forward(x)
    assert_on(layer.forward(x, train=False), backend, "float64", shape)
    several = backend.asarray(rng.standard_normal((1, 3, 2, 1)), "float64")  # 2 per channel
    assert_on(layer.forward(several), backend, "float64", (1, 3, 2, 1))


def test_a_batchnorm_network_refuses_a_batch_of_one_in_training(backend, rng):
    net = MultiLayerNet(4, [5], 3, batchnorm=True, device=backend, dtype="float64")
    x = backend.asarray(rng.standard_normal((1, 4)), "float64")
    t = backend.asarray(np.array([2]))
    with pytest.raises(ShapeError, match="BatchNormalization1 needs more than one value"):
        net.forward_backward(x, t)
    assert_on(net.predict(x), backend, "float64", (1, 3))


# -- Dropout -------------------------------------------------------------------------------------


def test_dropout_is_inverted_and_identity_at_evaluation(backend, rng):
    layer = Dropout(0.25, seed=3)
    x = backend.asarray(1.0 + rng.random((50, 40)), "float32")
    y = layer.forward(x)
    assert_on(y, backend, "float32", (50, 40))
    y_np, x_np = to_numpy(y), to_numpy(x)
    kept = y_np != 0
    # kept units are scaled by 1/(1 - p); about 75% are kept
    np.testing.assert_allclose(y_np[kept], x_np[kept] / 0.75, rtol=1e-6)
    assert 0.70 < kept.mean() < 0.80
    dout = backend.asarray(rng.standard_normal((50, 40)), "float32")
    dx = layer.backward(dout)
    assert_on(dx, backend, "float32", (50, 40))
    np.testing.assert_allclose(to_numpy(dx), to_numpy(dout) * kept / 0.75, rtol=1e-6)
    assert np.array_equal(to_numpy(layer.forward(x, train=False)), x_np)


def test_dropout_gradient_is_the_numerical_one_for_its_mask(backend, rng):
    xp = backend.xp
    layer = Dropout(0.5, seed=0)
    x = backend.asarray(rng.standard_normal((4, 5)), "float64")
    layer.forward(x)
    mask = layer.mask
    R = backend.asarray(rng.standard_normal((4, 5)), "float64")
    dx = layer.backward(R)
    assert_on(dx, backend, "float64", (4, 5))
    # the loss with this mask held fixed
    numerical = numerical_gradient(lambda _: xp.sum(x * mask * R), x)
    assert max_relative_error(dx, numerical) < TOL


def test_dropout_is_reproducible_per_seed(backend, rng):
    x = backend.asarray(np.ones((8, 30)), "float32")
    a, b, c = Dropout(0.5, seed=7), Dropout(0.5, seed=7), Dropout(0.5, seed=8)
    first = [to_numpy(a.forward(x)) for _ in range(2)]
    second = [to_numpy(b.forward(x)) for _ in range(2)]
    other = to_numpy(c.forward(x))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # a new mask every step
    assert not np.array_equal(first[0], other)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_dropout_has_torch_dropouts_expectation(backend):
    import torch
    import torch.nn.functional as F

    x = np.linspace(0.5, 2.0, 2000).reshape(40, 50)
    ours = np.mean(
        [to_numpy(Dropout(0.3, seed=s).forward(backend.asarray(x, "float64"))) for s in range(50)],
        axis=0,
    )
    torch.manual_seed(0)
    theirs = np.mean([F.dropout(torch.tensor(x), 0.3).numpy() for _ in range(50)], axis=0)
    # E[y] = x for both (inverted dropout); 50 draws: the standard error is about 0.1·x
    for mean in (ours, theirs):
        assert np.mean(mean / x) == pytest.approx(1.0, abs=0.02)
        assert np.abs(mean / x - 1).max() < 0.6
    # the same scale for the kept units
    kept = to_numpy(Dropout(0.3, seed=1).forward(backend.asarray(x, "float64")))
    np.testing.assert_allclose(kept[kept != 0], (x / 0.7)[kept != 0], rtol=1e-12)


def test_dropout_checks_its_ratio():
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        Dropout(1.0)
    layer = Dropout(0.0)
    x = np.ones((2, 3))
    assert layer.forward(x) is x and layer.backward(x) is x
