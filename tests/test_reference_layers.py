"""Activations, softmax, losses and layers against values worked out by hand, on every backend.

The numbers here are written out (or spelled as plain arithmetic on literals), never computed by
the code under test: batch normalization over two training steps and in evaluation, dropout's
masks step by step and after a restore, cross-entropy of a batch, log-softmax, softmax on
logits that overflow exp, SoftmaxWithLoss.backward with a dout, ReLU's gradient at 0. They need
nothing but NumPy; the comparisons with torch elsewhere are a second opinion.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import HAS_STRICT, assert_on

import xpnet
from xpnet.backend import to_numpy
from xpnet.errors import BackendError, ConfigError, LabelError, ShapeError

EPS = 1e-5  # batch normalization's ε


def close(actual, expected, rtol=1e-12, atol=1e-15):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol)


# -- functions ----------------------------------------------------------------------------------


def test_cross_entropy_of_a_batch_is_the_mean_over_its_rows(backend):
    y = backend.asarray([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]], "float64")
    expected = -(math.log(0.7 + 1e-7) + math.log(0.5 + 1e-7) + math.log(0.6 + 1e-7)) / 3
    labels = backend.asarray([1, 0, 2], "int64")
    onehot = backend.asarray([[0, 1, 0], [1, 0, 0], [0, 0, 1]], "float64")
    for t in (labels, onehot):
        loss = xpnet.cross_entropy_error(y, t)
        assert_on(loss, backend, "float64", ())
        assert float(loss) == pytest.approx(expected, rel=1e-14)
    # one-hot rows of another dtype are cast, not refused
    loss = xpnet.cross_entropy_error(y, backend.asarray(to_numpy(onehot), "float32"))
    assert float(loss) == pytest.approx(expected, rel=1e-14)


def test_cross_entropy_of_one_sample(backend):
    y = backend.asarray([0.25, 0.75], "float64")
    expected = -math.log(0.75 + 1e-7)
    for t in (backend.asarray(1, "int64"), backend.asarray([0.0, 1.0], "float64")):
        assert float(xpnet.cross_entropy_error(y, t)) == pytest.approx(expected, rel=1e-14)
    # the 1e-7 guard: log(0) would be -inf
    zero = xpnet.cross_entropy_error(backend.asarray([1.0, 0.0], "float64"), backend.asarray(1))
    assert float(zero) == pytest.approx(-math.log(1e-7), rel=1e-14)


def test_cross_entropy_refuses_labels_that_do_not_fit(backend):
    y = backend.asarray([[0.5, 0.5], [0.5, 0.5]], "float64")
    message = (
        re.escape("labels of shape (2, 3) and dtype ")
        + r"\S*float64"
        + re.escape(
            " do not fit scores of shape (2, 2): give integer class labels of shape (2,) or one-hot "
            "rows of shape (2, 2)"
        )
    )
    with pytest.raises(ShapeError, match=message):
        xpnet.cross_entropy_error(y, backend.asarray(np.zeros((2, 3)), "float64"))
    with pytest.raises(ShapeError, match=re.escape("labels of shape (2,) and dtype")):
        xpnet.cross_entropy_error(y, backend.asarray([0.0, 1.0], "float64"))  # not integers
    with pytest.raises(ShapeError, match=re.escape("labels of shape (3,) and dtype")):
        xpnet.cross_entropy_error(y, backend.asarray([0, 1, 1], "int64"))


def test_log_softmax_values(backend):
    a = backend.asarray(
        [[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0], [-1000.0, 0.0, -1000.0]], "float64"
    )
    lse = math.log(1 + math.exp(-1) + math.exp(-2))  # log Σ exp(a − max) of the first row
    expected = [
        [-2 - lse, -1 - lse, -lse],
        [-math.log(3)] * 3,  # exp(1000) overflows: the max must be subtracted first
        [-1000.0, 0.0, -1000.0],  # exp(-1000) underflows to 0, harmlessly
    ]
    out = xpnet.log_softmax(a)
    assert_on(out, backend, "float64", (3, 3))
    close(out, expected)
    # along the first axis: each column is normalized
    columns = xpnet.log_softmax(
        backend.asarray([[0.0, 5.0], [math.log(3), 5.0]], "float64"), axis=0
    )
    close(columns, [[-math.log(4), -math.log(2)], [math.log(3) - math.log(4), -math.log(2)]])
    f32 = xpnet.log_softmax(backend.asarray([1.0, 2.0, 3.0], "float32"))
    assert_on(f32, backend, "float32", (3,))
    close(f32, [-2 - lse, -1 - lse, -lse], rtol=1e-6)


def test_softmax_of_logits_that_overflow_exp(backend):
    a = backend.asarray([[1000.0, 1001.0, 1002.0], [-5.0, -5.0, -5.0]], "float64")
    s = 1 + math.exp(-1) + math.exp(-2)
    out = xpnet.softmax(a)
    assert_on(out, backend, "float64", (2, 3))
    close(out, [[math.exp(-2) / s, math.exp(-1) / s, 1 / s], [1 / 3, 1 / 3, 1 / 3]])
    columns = xpnet.softmax(backend.asarray([[0.0, 7.0], [math.log(3), 7.0]], "float64"), axis=0)
    close(columns, [[0.25, 0.5], [0.75, 0.5]])
    f32 = xpnet.softmax(backend.asarray([88.0, 89.0, 90.0], "float32"))  # e^89 > float32's max
    close(f32, [math.exp(-2) / s, math.exp(-1) / s, 1 / s], rtol=1e-6)


def test_activations_at_and_around_their_kinks(backend):
    x = backend.asarray([-3.0, -0.5, 0.0, 0.5, math.log(3), 800.0, -800.0], "float64")
    close(xpnet.step_function(x), [0, 0, 0, 1, 1, 1, 0])
    close(xpnet.relu(x), [0, 0, 0, 0.5, math.log(3), 800, 0])
    # σ(log 3) = 3/4; no overflow warning far out (filterwarnings = error)
    sig = [
        1 / (1 + math.exp(3)),
        1 / (1 + math.exp(0.5)),
        0.5,
        1 / (1 + math.exp(-0.5)),
        0.75,
        1.0,
        0.0,
    ]
    close(xpnet.sigmoid(x), sig)
    close(xpnet.tanh(x), [math.tanh(v) for v in (-3.0, -0.5, 0.0, 0.5, math.log(3), 800.0, -800.0)])
    assert xpnet.identity(x) is x


def test_one_hot(backend):
    labels = backend.asarray([2, 0, 1], "int64")
    rows = xpnet.one_hot(labels, 4)
    assert_on(rows, backend, "float32", (3, 4))
    close(rows, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert_on(xpnet.one_hot(labels, 3, dtype=backend.dtype("float64")), backend, "float64", (3, 3))


# -- layers -------------------------------------------------------------------------------------


def test_relu_gradient_at_zero_is_zero(backend):
    """As torch's: the kink at 0 passes no gradient, on the way in or out."""
    for dtype in ("float32", "float64"):
        layer = xpnet.ReLU()
        x = backend.asarray([[-1.0, 0.0, 2.0], [0.0, 3.0, -0.0]], dtype)
        y = layer.forward(x)
        assert_on(y, backend, dtype, (2, 3))
        close(y, [[0, 0, 2], [0, 3, 0]])
        dx = layer.backward(backend.asarray([[5.0, 5.0, 5.0], [7.0, 7.0, 7.0]], dtype))
        assert_on(dx, backend, dtype, (2, 3))
        close(dx, [[0, 0, 5], [0, 7, 0]])


def test_sigmoid_and_tanh_backward_by_hand(backend):
    x = backend.asarray([0.0, math.log(3)], "float64")  # σ = 1/2, 3/4; tanh(log 3) = 4/5
    dout = backend.asarray([2.0, 8.0], "float64")
    sig = xpnet.Sigmoid()
    close(sig.forward(x), [0.5, 0.75])
    close(sig.backward(dout), [2 * 0.5 * 0.5, 8 * 0.75 * 0.25])
    tanh = xpnet.Tanh()
    close(tanh.forward(x), [0.0, 0.8])
    close(tanh.backward(dout), [2.0, 8 * (1 - 0.64)])
    # evaluation keeps nothing, so a later backward uses the training pass's output
    sig.forward(backend.asarray([5.0, 5.0], "float64"), train=False)
    close(sig.backward(dout), [2 * 0.5 * 0.5, 8 * 0.75 * 0.25])


def test_affine_by_hand(backend):
    W = backend.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "float64")
    layer = xpnet.Affine(W, backend.asarray([0.5, -0.5], "float64"))
    assert layer.grads == {"W": None, "b": None}
    x = backend.asarray([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], "float64")
    close(layer.forward(x), [[11.5, 13.5], [-1.5, -2.5]])
    dx = layer.backward(backend.asarray([[1.0, 2.0], [3.0, -1.0]], "float64"))
    close(dx, [[5, 11, 17], [1, 5, 9]])  # dy·Wᵀ
    close(layer.dW, [[1, 2], [3, -1], [-1, 5]])  # xᵀ·dy
    close(layer.db, [4, 1])
    # a 0-d input is one sample of one feature; an image batch is flattened, dx keeps its shape
    one = xpnet.Affine(
        backend.asarray([[2.0, 3.0]], "float64"), backend.asarray([1.0, 1.0], "float64")
    )
    close(one.forward(backend.asarray(2.0, "float64")), [[5.0, 7.0]])
    rows = backend.asarray(np.arange(6.0).reshape(2, 1, 3), "float64")  # (N, 1, 3): flattened too
    close(layer.forward(rows), [[13.5, 15.5], [40.5, 51.5]])
    images = backend.asarray(np.arange(6.0).reshape(2, 3, 1, 1), "float64")
    close(layer.forward(images), [[13.5, 15.5], [40.5, 51.5]])
    dx = layer.backward(backend.asarray([[1.0, 0.0], [0.0, 1.0]], "float64"))
    assert_on(dx, backend, "float64", (2, 3, 1, 1))
    close(dx[:, :, 0, 0], [[1, 3, 5], [2, 4, 6]])


def test_softmax_with_loss_by_hand(backend):
    x = backend.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], "float64")
    lse = math.log(1 + math.exp(-1) + math.exp(-2))
    s = 1 + math.exp(-1) + math.exp(-2)
    y = [[math.exp(-2) / s, math.exp(-1) / s, 1 / s], [1 / 3, 1 / 3, 1 / 3]]
    t = [[0, 0, 1], [0, 1, 0]]
    for labels in (backend.asarray([2, 1], "int64"), backend.asarray(t, "float64")):
        layer = xpnet.SoftmaxWithLoss()
        loss = layer.forward(x, labels)
        assert_on(loss, backend, "float64", ())
        assert float(loss) == pytest.approx((lse + math.log(3)) / 2, rel=1e-14)
        assert layer.loss is loss
        close(layer.y, y)
        dx = layer.backward()
        assert_on(dx, backend, "float64", (2, 3))
        close(dx, (np.array(y) - t) / 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_with_loss_backward_scales_by_an_array_dout(dtype, backend):
    """(softmax(x) − t)·dout/N with dout a 0-d array of any float dtype, or a number; N = 2
    samples, 3 classes (dividing by the class count would differ)."""
    x = backend.asarray([[0.0, 0.0, 0.0], [0.0, math.log(2), 0.0]], dtype)
    layer = xpnet.SoftmaxWithLoss()
    layer.forward(x, backend.asarray([1, 0], "int64"))
    base = np.array([[1 / 3, 1 / 3 - 1, 1 / 3], [0.25 - 1, 0.5, 0.25]])  # softmax − one-hot
    for dout in (backend.asarray(3.0, "float64"), backend.asarray(3.0, "float32"), 3.0, 3):
        dx = layer.backward(dout)
        assert_on(dx, backend, dtype, (2, 3))
        close(dx, base * 3 / 2, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_softmax_with_loss_subtracts_each_rows_own_maximum(backend):
    """Rows of very different scale: one maximum for the whole batch would underflow exp."""
    x = backend.asarray([[0.0, math.log(3)], [1000.0, 1000.0]], "float64")
    layer = xpnet.SoftmaxWithLoss()
    loss = layer.forward(x, backend.asarray([1, 0], "int64"))
    assert float(loss) == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-14)
    close(layer.backward(), [[0.25 / 2, -0.25 / 2], [-0.5 / 2, 0.5 / 2]])


def test_scores_with_more_axes_have_their_classes_last(backend):
    """(N, T, C) scores, (N, T) labels: every row is a prediction, the mean is over N."""
    x = backend.asarray([[[0.0, 0.0, 0.0], [0.0, math.log(2), 0.0]]] * 2, "float64")
    t = backend.asarray([[1, 0], [2, 1]], "int64")
    per_row = [math.log(3), math.log(4 / 1), math.log(3), math.log(4 / 2)]
    layer = xpnet.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert float(loss) == pytest.approx(sum(per_row) / 2, rel=1e-14)
    dx = layer.backward()
    assert_on(dx, backend, "float64", (2, 2, 3))
    y = np.array([[1 / 3] * 3, [0.25, 0.5, 0.25]] * 2).reshape(2, 2, 3)
    onehot = np.eye(3)[[[1, 0], [2, 1]]]
    close(dx, (y - onehot) / 2)
    # cross_entropy_error of the softmax: the same loss, up to its 1e-7 guard
    probs = xpnet.softmax(x)
    ce = xpnet.cross_entropy_error(probs, t)
    assert float(ce) == pytest.approx(sum(per_row) / 2, rel=1e-6)
    assert float(xpnet.cross_entropy_error(probs, backend.asarray(onehot, "float64"))) == float(ce)


def test_losses_keep_the_scores_dtype_whatever_the_labels_dtype(backend):
    """float32 scores with float64 one-hot rows, and integer one-hot rows: a float32 loss."""
    x = backend.asarray([[0.0, math.log(3)]], "float32")
    for t in (backend.asarray([[0.0, 1.0]], "float64"), backend.asarray([[0, 1]], "int64")):
        loss = xpnet.SoftmaxWithLoss().forward(x, t)
        assert_on(loss, backend, "float32", ())
        assert float(loss) == pytest.approx(math.log(4 / 3), rel=1e-6)
        ce = xpnet.cross_entropy_error(backend.asarray([[0.25, 0.75]], "float32"), t)
        assert_on(ce, backend, "float32", ())
        assert float(ce) == pytest.approx(-math.log(0.75 + 1e-7), rel=1e-6)


@pytest.mark.skipif(not HAS_STRICT, reason="array_api_strict is not installed")
def test_mixing_backends_in_a_loss_is_refused():
    import array_api_strict as strict

    y = np.array([[0.25, 0.75]])
    for t in (strict.asarray([1]), strict.asarray([[0.0, 1.0]])):
        with pytest.raises(TypeError, match="Multiple namespaces"):
            xpnet.cross_entropy_error(y, t)
    with pytest.raises(BackendError, match="give labels of the scores' library"):
        xpnet.SoftmaxWithLoss().forward(y, strict.asarray([1]))
    net = xpnet.init_network("cpu", "array_api_strict")
    with pytest.raises(TypeError, match="Multiple namespaces"):
        xpnet.forward(net, np.array([1.0, 0.5]))


def test_softmax_with_loss_labels_of_every_kind(backend):
    """Integer labels of another width, a new class count, one-hot rows of another dtype."""
    x3 = backend.asarray([[0.0, 0.0, 0.0]], "float64")
    x2 = backend.asarray([[0.0, math.log(3)]], "float64")
    layer = xpnet.SoftmaxWithLoss()
    assert float(layer.forward(x3, backend.asarray([1], "int64"))) == pytest.approx(math.log(3))
    # the cached class indices must follow the class count and the labels' dtype
    assert float(layer.forward(x2, backend.asarray([1], "int32"))) == pytest.approx(math.log(4 / 3))
    assert float(layer.forward(x2, backend.asarray([0], "int64"))) == pytest.approx(math.log(4))
    assert float(layer.forward(x3, backend.asarray([2], "int64"))) == pytest.approx(math.log(3))
    onehot = backend.asarray([[1.0, 0.0]], "float32")
    assert float(layer.forward(x2, onehot)) == pytest.approx(math.log(4))
    close(layer.t, [[1.0, 0.0]])
    assert_on(layer.t, backend, "float64", (1, 2))
    with pytest.raises(ShapeError, match=re.escape("labels of shape (1, 3) and dtype")):
        layer.forward(x2, backend.asarray([[0, 1, 0]], "int64"))  # the cache holds 3 classes
    layer.forward(x2, backend.asarray([0], "int64"))  # now 2, and int64: the cache fits
    with pytest.raises(ShapeError, match=re.escape("labels of shape (2,) and dtype")):
        layer.forward(x2, backend.asarray([0, 1], "int64"))


# -- batch normalization --------------------------------------------------------------------------

# two channels, four samples: channel 0 is 1, 3, 5, 7 (mean 4, variance 5, unbiased 20/3) and
# channel 1 is 0, 0, 4, 4 (mean 2, variance 4, unbiased 16/3)
BN_X1 = [[1.0, 0.0], [3.0, 0.0], [5.0, 4.0], [7.0, 4.0]]
# channel 0: 0, 2, 2, 4 (mean 2, variance 2, unbiased 8/3); channel 1: 1, 3, 5, 7 (mean 4, variance 5)
BN_X2 = [[0.0, 1.0], [2.0, 3.0], [2.0, 5.0], [4.0, 7.0]]
GAMMA, BETA = [2.0, 0.5], [1.0, -3.0]


def bn_layer(backend, **kw):
    return xpnet.BatchNormalization(
        backend.asarray(GAMMA, "float64"), backend.asarray(BETA, "float64"), **kw
    )


def test_batchnorm_two_training_steps_and_evaluation_by_hand(backend):
    layer = bn_layer(backend, momentum=0.75)
    assert layer.grads == {"gamma": None, "beta": None}
    r5, r4, r2 = math.sqrt(5 + EPS), math.sqrt(4 + EPS), math.sqrt(2 + EPS)
    y1 = layer.forward(backend.asarray(BN_X1, "float64"))
    assert_on(y1, backend, "float64", (4, 2))
    close(y1, [[2 * d / r5 + 1, 0.5 * e / r4 - 3] for d, e in ((-3, -2), (-1, -2), (1, 2), (3, 2))])
    # running = 0.75·running + 0.25·batch, from mean 0 and variance 1; the variance unbiased
    rm1, rv1 = [0.25 * 4, 0.25 * 2], [0.75 + 0.25 * 20 / 3, 0.75 + 0.25 * 16 / 3]
    close(layer.running_mean, rm1)
    close(layer.running_var, rv1)
    y2 = layer.forward(backend.asarray(BN_X2, "float64"))
    close(y2, [[2 * d / r2 + 1, 0.5 * e / r5 - 3] for d, e in ((-2, -3), (0, -1), (0, 1), (2, 3))])
    rm2 = [0.75 * rm1[0] + 0.25 * 2, 0.75 * rm1[1] + 0.25 * 4]
    rv2 = [0.75 * rv1[0] + 0.25 * 8 / 3, 0.75 * rv1[1] + 0.25 * 20 / 3]
    close(layer.running_mean, rm2)
    close(layer.running_var, rv2)
    assert_on(layer.running_var, backend, "float64", (2,))
    # evaluation: the running statistics, which it leaves alone
    x3 = [[1.0, 2.0], [-1.0, 0.5]]
    y3 = layer.forward(backend.asarray(x3, "float64"), train=False)
    assert_on(y3, backend, "float64", (2, 2))
    expected = [
        [GAMMA[c] * (row[c] - rm2[c]) / math.sqrt(rv2[c] + EPS) + BETA[c] for c in range(2)]
        for row in x3
    ]
    close(y3, expected)
    close(layer.running_mean, rm2)
    close(layer.running_var, rv2)


def test_batchnorm_backward_by_hand(backend):
    """dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/√(σ² + ε)·(dy − mean dy − x̂·mean(dy·x̂)), on one channel."""
    layer = xpnet.BatchNormalization(
        backend.asarray([3.0], "float64"), backend.asarray([0.0], "float64")
    )
    layer.forward(backend.asarray([[1.0], [3.0]], "float64"))  # mean 2, variance 1
    r = math.sqrt(1 + EPS)
    xn = [-1 / r, 1 / r]
    dx = layer.backward(backend.asarray([[1.0], [5.0]], "float64"))
    close(layer.dbeta, [6.0])
    close(layer.dgamma, [xn[0] + 5 * xn[1]])
    mean_dy, mean_dy_xn = 3.0, (xn[0] + 5 * xn[1]) / 2
    close(dx, [[3 / r * (dy - mean_dy - x * mean_dy_xn)] for dy, x in ((1.0, xn[0]), (5.0, xn[1]))])
    assert layer.backward(backend.asarray([[1.0], [5.0]], "float64"), input_grad=False) is None


def test_batchnorm_on_images_by_hand(backend):
    """(N, C, H, W) = (2, 3, 1, 2): per channel over N·H·W = 4 values."""
    # channel c holds (sample 0: w0, w1 | sample 1: w0, w1)
    channels = [[1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 2.0, 6.0]]
    x = np.array(channels).reshape(3, 2, 1, 2).transpose(1, 0, 2, 3)
    gamma, beta = [2.0, 0.5, -1.0], [1.0, -3.0, 0.25]
    layer = xpnet.BatchNormalization(
        backend.asarray(gamma, "float64"), backend.asarray(beta, "float64"), momentum=0.75
    )
    y = layer.forward(backend.asarray(x, "float64"))
    assert_on(y, backend, "float64", (2, 3, 1, 2))
    mean, var, unbiased = [4.0, 2.0, 3.0], [5.0, 4.0, 3.0], [20 / 3, 16 / 3, 4.0]
    expected = np.array(
        [[gamma[c] * (v - mean[c]) / math.sqrt(var[c] + EPS) + beta[c] for v in channels[c]] for c in range(3)]
    ).reshape(3, 2, 1, 2).transpose(1, 0, 2, 3)  # fmt: skip
    close(y, expected)
    close(layer.running_mean, [0.25 * m for m in mean])
    close(layer.running_var, [0.75 + 0.25 * u for u in unbiased])
    dout = backend.asarray(np.ones((2, 3, 1, 2)), "float64")
    dx = layer.backward(dout)
    assert_on(dx, backend, "float64", (2, 3, 1, 2))
    close(layer.dbeta, [4.0, 4.0, 4.0])
    close(layer.dgamma, [0.0, 0.0, 0.0], atol=1e-12)  # Σ x̂ = 0
    close(dx, np.zeros((2, 3, 1, 2)), atol=1e-12)  # a constant dy moves nothing
    ev = layer.forward(backend.asarray(x, "float64"), train=False)
    close(
        ev,
        np.array(
            [[gamma[c] * (v - 0.25 * mean[c]) / math.sqrt(0.75 + 0.25 * unbiased[c] + EPS) + beta[c] for v in channels[c]] for c in range(3)]
        ).reshape(3, 2, 1, 2).transpose(1, 0, 2, 3),
    )  # fmt: skip


def test_batchnorm_small_batches_and_momentum_edges(backend):
    # two values per channel: variance 1, unbiased 2 (×m/(m − 1) = ×2)
    layer = bn_layer(backend, momentum=0.75)
    layer.forward(backend.asarray([[1.0, 0.0], [3.0, 6.0]], "float64"))
    close(layer.running_var, [0.75 + 0.25 * 2, 0.75 + 0.25 * 18])
    # one value per channel: nothing to normalize over; refused in training, the running
    # statistics untouched (evaluation still takes one sample)
    layer = bn_layer(backend, momentum=0.75)
    with pytest.raises(ShapeError, match="needs more than one value per channel to train"):
        layer.forward(backend.asarray([[5.0, -2.0]], "float64"))
    close(layer.running_mean, [0.0, 0.0])
    close(layer.running_var, [1.0, 1.0])
    layer.forward(backend.asarray([[5.0, -2.0]], "float64"), train=False)
    # momentum 0 takes the batch's statistics, 1 keeps the running ones
    layer = bn_layer(backend, momentum=0.0)
    layer.forward(backend.asarray(BN_X1, "float64"))
    close(layer.running_mean, [4.0, 2.0])
    close(layer.running_var, [20 / 3, 16 / 3])
    layer = bn_layer(backend, momentum=1.0)
    layer.forward(backend.asarray(BN_X1, "float64"))
    close(layer.running_mean, [0.0, 0.0])
    close(layer.running_var, [1.0, 1.0])
    # the default momentum is 0.9
    layer = bn_layer(backend)
    assert layer.momentum == 0.9
    layer.forward(backend.asarray(BN_X1, "float64"))
    close(layer.running_mean, [0.4, 0.2])
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=re.escape(f"momentum must be in [0, 1], got {bad}")):
            bn_layer(backend, momentum=bad)


def test_batchnorm_given_running_statistics_are_used_in_evaluation(backend):
    layer = bn_layer(
        backend,
        running_mean=backend.asarray([1.0, -1.0], "float64"),
        running_var=backend.asarray([4.0, 0.25], "float64"),
    )
    y = layer.forward(backend.asarray([[3.0, 0.0]], "float64"), train=False)
    close(y, [[2 * 2 / math.sqrt(4 + EPS) + 1, 0.5 * 1 / math.sqrt(0.25 + EPS) - 3]])
    fresh = bn_layer(backend)  # mean 0, variance 1
    y = fresh.forward(backend.asarray([[3.0, 0.0]], "float64"), train=False)
    close(y, [[2 * 3 / math.sqrt(1 + EPS) + 1, -3.0]])


# -- dropout ------------------------------------------------------------------------------------


def host_mask(seed: int, call: int, shape, p: float, dtype=np.float64):
    """The documented mask of the `call`-th training pass: a NumPy Generator seeded from
    SeedSequence([seed, call]) (its two first 32-bit words w0, w1 as (w0 << 31) ^ w1) draws
    U[0, 1) in the input's dtype; a unit is kept where u < 1 − p and scaled by 1/(1 − p)."""
    w0, w1 = np.random.SeedSequence([seed, call]).generate_state(2, np.uint32)
    u = np.random.default_rng((int(w0) << 31) ^ int(w1)).random(shape, dtype=dtype)
    return (u < 1 - p).astype(dtype) / (1 - p)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_masks_are_the_seeded_stream_step_by_step(dtype, backend):
    """On NumPy and array_api_strict (the host generator) the masks are exactly the documented
    ones; on every backend they advance at each training step and repeat after a restore."""
    x = backend.asarray(np.ones((6, 10)), dtype)
    layer = xpnet.Dropout(0.3, seed=11)
    masks = []
    for step in range(4):
        assert layer.get_state() == {"seed": 11, "calls": step}
        y = layer.forward(x)
        assert_on(y, backend, dtype, (6, 10))
        masks.append(to_numpy(y))
        kept = masks[-1] != 0
        close(masks[-1][kept], 1 / 0.7, rtol=1e-6)
        assert 0 < kept.sum() < 60
        close(
            layer.backward(backend.asarray(np.full((6, 10), 2.0), dtype)), 2 * masks[-1], rtol=1e-6
        )
    assert layer.get_state() == {"seed": 11, "calls": 4}
    for i in range(4):
        for j in range(i):
            assert not np.array_equal(masks[i], masks[j]), f"step {i + 1} repeats step {j + 1}"
    if backend.name in ("numpy", "array_api_strict"):
        for step, mask in enumerate(masks):
            close(mask, host_mask(11, step, (6, 10), 0.3, np.dtype(dtype).type), rtol=1e-6)
    # evaluation passes x through and draws nothing
    assert layer.forward(x, train=False) is x
    assert layer.get_state()["calls"] == 4
    # restored to the state after two steps: the third and fourth masks again
    restored = xpnet.Dropout(0.3, seed=99)
    restored.set_state({"seed": np.int64(11), "calls": 2.0})
    assert restored.get_state() == {"seed": 11, "calls": 2}
    assert type(restored.seed) is int and type(restored.calls) is int
    for mask in masks[2:]:
        np.testing.assert_array_equal(to_numpy(restored.forward(x)), mask)


def test_dropout_state_travels_with_the_network(backend):
    """Network.layer_states / set_layer_states: a resumed net draws the masks an uninterrupted
    one would."""
    x = backend.asarray(np.ones((4, 3)), "float64")
    t = backend.asarray([0, 1, 0, 1], "int64")

    def net():
        return xpnet.MultiLayerNet(3, [5], 2, dropout_ratio=0.5, device=backend, dtype="float64")

    straight = net()
    for _ in range(2):
        straight.forward_backward(x, t)
    states = straight.layer_states
    assert states == {"Dropout1": {"seed": 0, "calls": 2}}
    resumed = net()
    resumed.set_layer_states(states)
    for _ in range(2):
        close(resumed.loss(x, t), float(straight.loss(x, t)), rtol=1e-14)
    assert resumed.layer_states == {"Dropout1": {"seed": 0, "calls": 4}}
    with pytest.raises(ShapeError, match="the network has no layer ReLU1 with a state to restore"):
        resumed.set_layer_states({"ReLU1": {}})
    with pytest.raises(ShapeError, match="the network has no layer Dropout9 with a state"):
        resumed.set_layer_states({"Dropout9": {"seed": 0, "calls": 0}})


def test_dropout_defaults_and_unseeded_layers():
    layer = xpnet.Dropout()
    assert layer.dropout_ratio == 0.5 and layer.seed == 0 and layer.calls == 0
    assert layer.mask is None
    x = np.ones((8, 8))
    y = layer.forward(x)
    np.testing.assert_array_equal(y, host_mask(0, 0, (8, 8), 0.5))
    assert set(np.unique(y)) == {0.0, 2.0}
    a, b = xpnet.Dropout(0.5, seed=None), xpnet.Dropout(0.5, seed=None)
    assert isinstance(a.seed, int) and 0 <= a.seed < 2**63 and a.seed != b.seed
    assert xpnet.Dropout(0.5, seed=5).seed == 5


def test_an_unseeded_dropout_draws_a_63_bit_seed(monkeypatch):
    """Entropy of 64 bits or more is folded into 63, so the seed fits a checkpoint's int64."""

    class Entropy:
        entropy = 2**64 + 2**63 + 5

    monkeypatch.setattr(np.random, "SeedSequence", lambda *args: Entropy())
    assert xpnet.Dropout(0.5, seed=None).seed == 5


def test_dropout_ratio_zero_and_its_checks(backend):
    layer = xpnet.Dropout(0.25, seed=1)
    x = backend.asarray(np.ones((3, 4)), "float64")
    layer.forward(x)
    layer.dropout_ratio = 0.0  # as the layer of a net built with 0: the identity
    assert layer.forward(x) is x and layer.mask is None
    dout = backend.asarray(np.full((3, 4), 2.0), "float64")
    assert layer.backward(dout) is dout
    assert layer.calls == 1
    assert xpnet.Dropout(0.0).dropout_ratio == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(
            ConfigError, match=re.escape(f"dropout ratio must be in [0, 1), got {bad}")
        ):
            xpnet.Dropout(bad)


# -- labels ---------------------------------------------------------------------------------------


def test_labels_are_checked_with_one_line_that_says_what_fits(backend):
    net = xpnet.TwoLayerNet(3, 4, 2, device=backend, dtype="float64")
    x = backend.asarray(np.ones((2, 3)), "float64")
    cases = [
        (backend.asarray([0, 2], "int64"), LabelError, "class labels must lie in 0..1 for 2 classes, got values from 0 to 2"),
        (backend.asarray([-1, 1], "int64"), LabelError, "got values from -1 to 1"),
        (backend.asarray([0.0, 1.0], "float64"), LabelError, "class labels must be integers, got dtype "),
        (backend.asarray([0, 1, 1], "int64"), ShapeError, "labels of shape (3,) do not fit scores of shape (2, 2): give integer class labels of shape (2,) or one-hot rows of shape (2, 2)"),
    ]  # fmt: skip
    for t, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            net.loss(x, t)
    assert float(net.loss(x, backend.asarray([[0.5, 0.5], [1.0, 0.0]], "float64"))) > 0
    assert float(net.loss(x, backend.asarray([1, 1], "int64"))) > 0


def test_the_array_api_code_that_numpy_never_runs_by_hand():
    """The hand-worked cases above on array_api_strict's second device, whatever
    XPNET_TEST_BACKENDS selects: NumPy takes its own branches (ReLU's boolean mask, the host
    generator's array moved once), so the Array API code beside them, and the device every new
    array must be made on, need another namespace even in a NumPy-only run."""
    pytest.importorskip("array_api_strict")
    generic = xpnet.resolve("device1", "array_api_strict")
    for dtype in ("float32", "float64"):
        test_softmax_with_loss_backward_scales_by_an_array_dout(dtype, generic)
        test_dropout_masks_are_the_seeded_stream_step_by_step(dtype, generic)
    for test in (
        test_cross_entropy_of_a_batch_is_the_mean_over_its_rows,
        test_cross_entropy_of_one_sample,
        test_log_softmax_values,
        test_softmax_of_logits_that_overflow_exp,
        test_activations_at_and_around_their_kinks,
        test_one_hot,
        test_relu_gradient_at_zero_is_zero,
        test_sigmoid_and_tanh_backward_by_hand,
        test_affine_by_hand,
        test_softmax_with_loss_by_hand,
        test_softmax_with_loss_subtracts_each_rows_own_maximum,
        test_softmax_with_loss_labels_of_every_kind,
        test_scores_with_more_axes_have_their_classes_last,
        test_losses_keep_the_scores_dtype_whatever_the_labels_dtype,
        test_batchnorm_two_training_steps_and_evaluation_by_hand,
        test_batchnorm_backward_by_hand,
        test_batchnorm_on_images_by_hand,
        test_batchnorm_small_batches_and_momentum_edges,
        test_batchnorm_given_running_statistics_are_used_in_evaluation,
        test_dropout_state_travels_with_the_network,
        test_dropout_ratio_zero_and_its_checks,
    ):
        test(generic)
