"""Convolution, pooling, im2col/col2im: float64 numerical gradients on every backend, torch's
conv2d/max_pool2d and their autograd gradients, and NumPy's fast branches against the generic code.
"""

import numpy as np
import pytest
from conftest import HAS_TORCH, assert_on

from xpnet import Convolution, Pooling, col2im, im2col, max_relative_error, numerical_gradient
from xpnet.backend import to_numpy
from xpnet.errors import ConfigError, ShapeError

TOL = 1e-6

# (x shape, W shape, stride, pad): non-square inputs and filters, several channels
CONV_CASES = [
    ((2, 3, 6, 5), (4, 3, 3, 2), 1, 0),
    ((2, 3, 7, 6), (2, 3, 3, 3), 2, 1),
    ((1, 2, 5, 7), (3, 2, 2, 3), (2, 1), 2),
]
CONV_IDS = ["s1p0", "s2p1", "s21p2"]

# (x shape, pool_h, pool_w, stride, pad)
POOL_CASES = [
    ((2, 3, 6, 4), 2, 2, None, 0),  # windows tile the input
    ((2, 2, 7, 8), 3, 3, None, 0),  # stride = window, last row and columns in no window
    ((2, 3, 7, 5), 3, 2, 2, 1),  # padding, non-square window
    ((1, 2, 5, 6), 2, 2, 1, 0),  # overlapping windows
]
POOL_IDS = ["tiled", "cropped", "padded", "overlapping"]


def to_backend(backend, a, dtype="float64"):
    return backend.asarray(a, dtype)


def distinct_values(rng, shape):
    """Values at least 0.01 apart, so no max-pooling window has a tie and h = 1e-6 never flips one."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)


# -- im2col / col2im -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_im2col_layout_and_col2im_is_its_adjoint(case, backend, rng):
    x_shape, (_, C, FH, FW), stride, pad = case
    x = rng.standard_normal(x_shape)
    col = im2col(to_backend(backend, x), FH, FW, stride, pad)
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    N, _, H, W = x_shape
    oh, ow = (H + 2 * pad - FH) // sh + 1, (W + 2 * pad - FW) // sw + 1
    assert_on(col, backend, "float64", (N * oh * ow, C * FH * FW))
    # row (n, y, x) holds the patch under the filter at output position (y, x), channel-major
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, y, z = N - 1, oh - 1, ow // 2
    patch = xp_[n, :, y * sh : y * sh + FH, z * sw : z * sw + FW].reshape(-1)
    np.testing.assert_array_equal(to_numpy(col)[(n * oh + y) * ow + z], patch)
    # <im2col(x), c> = <x, col2im(c)>
    c = rng.standard_normal(tuple(col.shape))
    back = col2im(to_backend(backend, c), x_shape, FH, FW, stride, pad)
    assert_on(back, backend, "float64", x_shape)
    assert np.sum(to_numpy(col) * c) == pytest.approx(np.sum(x * to_numpy(back)), rel=1e-12)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_numpy_im2col_fast_branch_matches_the_generic_code(case, layout, rng):
    x_shape, (_, _, FH, FW), stride, pad = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    if layout == "nhwc":  # a convolution's output: a permuted view
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    fast = im2col(x, FH, FW, stride, pad)
    generic = im2col(x, FH, FW, stride, pad, fast=False)
    assert fast.dtype == np.float32 and fast.shape == generic.shape
    np.testing.assert_array_equal(fast, generic)


# -- Convolution ---------------------------------------------------------------------------------


def make_conv(backend, rng, W_shape, stride=1, pad=0, dtype="float64"):
    W = to_backend(backend, rng.standard_normal(W_shape), dtype)
    b = to_backend(backend, rng.standard_normal(W_shape[0]), dtype)
    return Convolution(W, b, stride, pad)


def check_gradients(layer, x, backend, rng, **backward_kw):
    """Backward against numerical gradients of L = Σ y·R, for x and every parameter."""
    xp = backend.xp
    y = layer.forward(x)
    R = to_backend(backend, rng.standard_normal(tuple(y.shape)))
    dx = layer.backward(R, **backward_kw)
    assert_on(dx, backend, "float64", x.shape)

    def loss(_):
        return xp.sum(layer.forward(x, train=False) * R)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < TOL
    for name in layer.param_names:
        grad, param = getattr(layer, "d" + name), getattr(layer, name)
        assert_on(grad, backend, "float64", param.shape)
        assert max_relative_error(grad, numerical_gradient(loss, param)) < TOL
    return y


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_convolution_gradients(case, backend, rng):
    x_shape, W_shape, stride, pad = case
    layer = make_conv(backend, rng, W_shape, stride, pad)
    y = check_gradients(layer, to_backend(backend, rng.standard_normal(x_shape)), backend, rng)
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    oh = (x_shape[2] + 2 * pad - W_shape[2]) // sh + 1
    ow = (x_shape[3] + 2 * pad - W_shape[3]) // sw + 1
    assert_on(y, backend, "float64", (x_shape[0], W_shape[0], oh, ow))


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_convolution_matches_torch_conv2d_and_autograd(case, backend, rng):
    import torch
    import torch.nn.functional as F

    x_shape, W_shape, stride, pad = case
    x, W, b = (rng.standard_normal(s) for s in (x_shape, W_shape, W_shape[0]))
    layer = Convolution(to_backend(backend, W), to_backend(backend, b), stride, pad)
    y = layer.forward(to_backend(backend, x))
    R = rng.standard_normal(tuple(y.shape))
    dx = layer.backward(to_backend(backend, R))

    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = F.conv2d(xt, Wt, bt, stride=stride, padding=pad)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(to_numpy(y), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, theirs in ((dx, xt), (layer.dW, Wt), (layer.db, bt)):
        np.testing.assert_allclose(to_numpy(ours), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_convolution_fast_path_matches_the_im2col_reference(case, layout, backend, rng):
    xp = backend.xp
    x_shape, W_shape, stride, pad = case
    x_np = rng.standard_normal(x_shape)
    if layout == "nhwc":
        x = to_backend(backend, np.ascontiguousarray(x_np.transpose(0, 2, 3, 1)), "float32")
        x = xp.permute_dims(x, (0, 3, 1, 2))
    else:
        x = to_backend(backend, x_np, "float32")
    W = to_backend(backend, rng.standard_normal(W_shape), "float32")
    b = to_backend(backend, rng.standard_normal(W_shape[0]), "float32")
    fast, reference = Convolution(W, b, stride, pad), Convolution(W, b, stride, pad)
    reference.fast = False
    y_fast, y_reference = fast.forward(x), reference.forward(x)
    assert_on(y_fast, backend, "float32", tuple(y_reference.shape))
    np.testing.assert_allclose(to_numpy(y_fast), to_numpy(y_reference), rtol=1e-5, atol=1e-5)
    dout = to_backend(backend, rng.standard_normal(tuple(y_fast.shape)), "float32")
    dx_fast, dx_reference = fast.backward(dout), reference.backward(dout)
    assert reference.colT is None and fast.colT is not None  # each took its own path
    pairs = ((dx_fast, dx_reference), (fast.dW, reference.dW), (fast.db, reference.db))
    for ours, theirs in pairs:
        assert_on(ours, backend, "float32", tuple(theirs.shape))
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-4, atol=1e-4)


def test_convolution_keeps_float32_and_skips_dx_for_a_first_layer(backend, rng):
    layer = make_conv(backend, rng, (4, 2, 3, 3), 1, 1, "float32")
    x = to_backend(backend, rng.standard_normal((3, 2, 5, 4)), "float32")
    y = layer.forward(x)
    assert_on(y, backend, "float32", (3, 4, 5, 4))
    dout = to_backend(backend, np.ones((3, 4, 5, 4)), "float32")
    dx = layer.backward(dout)
    assert_on(dx, backend, "float32", (3, 2, 5, 4))
    dW = layer.dW
    assert layer.backward(dout, input_grad=False) is None
    assert_on(layer.dW, backend, "float32", (4, 2, 3, 3))
    assert_on(layer.db, backend, "float32", (4,))
    assert layer.dW is not dW  # a new array each pass
    np.testing.assert_allclose(to_numpy(layer.db), np.full(4, 3 * 5 * 4), rtol=1e-6)


def test_convolution_checks_its_input(backend, rng):
    layer = make_conv(backend, rng, (4, 2, 3, 3))
    layer.name = "Convolution1"
    with pytest.raises(ShapeError, match=r"expects images of shape \(N, C, H, W\)"):
        layer.forward(to_backend(backend, np.zeros((3, 18))))
    with pytest.raises(ShapeError, match="expects 2 input channels"):
        layer.forward(to_backend(backend, np.zeros((3, 1, 5, 5))))
    with pytest.raises(ShapeError, match="does not fit"):
        layer.forward(to_backend(backend, np.zeros((3, 2, 2, 5))))
    with pytest.raises(ShapeError, match=r"W of shape \(FN, C, FH, FW\)"):
        Convolution(np.zeros((4, 9)), np.zeros(4))
    with pytest.raises(ConfigError, match="stride"):
        Convolution(np.zeros((4, 2, 3, 3)), np.zeros(4), stride=0)


# -- Pooling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pooling_gradients(case, backend, rng):
    x_shape, ph, pw, stride, pad = case
    layer = Pooling(ph, pw, stride, pad)
    x = to_backend(backend, distinct_values(rng, x_shape))
    y = check_gradients(layer, x, backend, rng)
    sh, sw = (ph, pw) if stride is None else (stride, stride)
    oh, ow = (x_shape[2] + 2 * pad - ph) // sh + 1, (x_shape[3] + 2 * pad - pw) // sw + 1
    assert_on(y, backend, "float64", (*x_shape[:2], oh, ow))
    # evaluation gives the same output and keeps nothing new
    assert np.array_equal(to_numpy(layer.forward(x, train=False)), to_numpy(y))


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_pooling_matches_torch_max_pool2d_and_autograd(case, ties, backend, rng):
    import torch
    import torch.nn.functional as F

    x_shape, ph, pw, stride, pad = case
    # with ties (ReLU zeros, repeated values) the gradient goes to the first maximum, as in torch
    x = (
        np.maximum(np.round(rng.standard_normal(x_shape)), 0)
        if ties
        else rng.standard_normal(x_shape)
    )
    layer = Pooling(ph, pw, stride, pad)
    y = layer.forward(to_backend(backend, x))
    R = rng.standard_normal(tuple(y.shape))
    dx = layer.backward(to_backend(backend, R))
    assert_on(dx, backend, "float64", x_shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.max_pool2d(xt, (ph, pw), stride, pad)
    (yt * torch.tensor(R)).sum().backward()
    np.testing.assert_array_equal(to_numpy(y), yt.detach().numpy())
    # overlapping windows sum several gradients into one pixel, in another order than torch
    np.testing.assert_allclose(to_numpy(dx), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_pooling_fast_branches_match_the_reference_code(case, layout, backend, rng):
    if backend.name != "numpy":
        # the fast branches are NumPy's: elsewhere fast=True and fast=False run the same code,
        # which the comparisons with torch (above) and the numerical gradients check
        pytest.skip(f"{backend.name} has no fast pooling branch: both sides would be one code")
    xp = backend.xp
    x_shape, ph, pw, stride, pad = case
    # many ties (zeros, repeated integers): the first-maximum rule must agree too
    x_np = np.maximum(np.round(rng.standard_normal(x_shape) * 2), 0)
    if layout == "nhwc":  # a convolution's output: channel-last in memory
        x = to_backend(backend, np.ascontiguousarray(x_np.transpose(0, 2, 3, 1)), "float32")
        x = xp.permute_dims(x, (0, 3, 1, 2))
    else:
        x = to_backend(backend, x_np, "float32")
    layer = Pooling(ph, pw, stride, pad)
    y = layer.forward(x)
    dout = to_backend(backend, rng.standard_normal(tuple(y.shape)), "float32")
    fast, reference = layer.backward(dout), layer.backward(dout, fast=False)
    assert_on(fast, backend, "float32", x_shape)
    np.testing.assert_array_equal(to_numpy(fast), to_numpy(reference))


def test_pooling_keeps_float32(backend, rng):
    layer = Pooling(2, 2)
    x = to_backend(backend, rng.standard_normal((2, 3, 4, 6)), "float32")
    y = layer.forward(x)
    assert_on(y, backend, "float32", (2, 3, 2, 3))
    dx = layer.backward(to_backend(backend, np.ones((2, 3, 2, 3)), "float32"))
    assert_on(dx, backend, "float32", (2, 3, 4, 6))
    # each window passes its one gradient to one pixel
    assert float(backend.xp.sum(dx)) == 2 * 3 * 2 * 3


def test_pooling_checks_its_arguments(backend):
    with pytest.raises(ConfigError, match="at most half the pool window"):
        Pooling(2, 2, pad=2)
    with pytest.raises(ConfigError, match="pool size"):
        Pooling(0, 2)
    layer = Pooling(3, 3)
    with pytest.raises(ShapeError, match="does not fit"):
        layer.forward(to_backend(backend, np.zeros((1, 1, 2, 5))))
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        layer.forward(to_backend(backend, np.zeros((1, 9))))


def test_numpy_integers_are_integers(backend, rng):
    """Convolution(W, b, pad=np.int64(1)) once said "stride must be >= 1 and pad >= 0, got
    stride 1, pad 1"; sizes from NumPy (a shape's arithmetic, np.arange) are integers."""
    W = to_backend(backend, rng.standard_normal((2, 1, 3, 3)))
    b = to_backend(backend, np.zeros(2))
    conv = Convolution(W, b, stride=np.int64(1), pad=np.int64(1))
    assert (conv.stride, conv.pad) == (1, 1) and type(conv.pad) is int and type(conv.stride) is int
    strided = Convolution(W, b, stride=(np.int32(2), np.uint8(1)), pad=np.int16(0))
    assert strided.stride == (2, 1) and all(type(s) is int for s in strided.stride)
    pool = Pooling(np.int64(2), np.int64(2), stride=np.int64(2), pad=np.int64(1))
    assert (pool.pool_h, pool.pad) == (2, 1) and type(pool.pool_h) is int and type(pool.pad) is int
    x = to_backend(backend, rng.standard_normal((2, 1, 5, 5)))
    assert_on(pool.forward(conv.forward(x)), backend, "float64", (2, 2, 3, 3))
    for bad in (1.0, True, "1", np.float64(1.0), -1, np.int64(-1)):
        with pytest.raises(ConfigError, match="pad an integer >= 0"):
            Convolution(W, b, pad=bad)
        with pytest.raises(ConfigError, match="pad an integer >= 0"):
            Pooling(2, 2, pad=bad)
    with pytest.raises(ConfigError, match="stride must be an int or a pair of ints"):
        Convolution(W, b, stride=np.float32(1))
