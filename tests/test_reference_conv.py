"""Convolution, pooling, im2col and col2im against outputs and gradients worked out by hand.

Small images with the numbers written out: the default stride and pad, a stride of (2, 1),
outputs of one pixel, padded max pooling over negative inputs (padding is −∞, never the
maximum), equal maxima in one window (the first in row-major order takes the gradient, as in
torch), and each argument check on its own. NumPy's fast branches and the generic code
(``Convolution.fast = False``, ``Pooling.backward(fast=False)``) must give the same numbers.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import assert_on

import xpnet
from xpnet.backend import to_numpy
from xpnet.errors import ConfigError, ShapeError

X3 = np.arange(9.0).reshape(1, 1, 3, 3)  # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
W22 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
# not monotonic, so a window in the wrong place finds another maximum
X34 = np.array([[[[1.0, 9.0, 2.0, 8.0], [3.0, 4.0, 7.0, 5.0], [6.0, 0.0, 10.0, 11.0]]]])


def close(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol)


def conv(backend, W, b, dtype="float64", **kw):
    return xpnet.Convolution(backend.asarray(W, dtype), backend.asarray(b, dtype), **kw)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "im2col"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convolution_with_the_default_stride_and_pad(fast, dtype, backend):
    layer = conv(backend, W22, [0.5], dtype)
    assert layer.stride == 1 and layer.pad == 0
    layer.fast = fast
    y = layer.forward(backend.asarray(X3, dtype))
    assert_on(y, backend, dtype, (1, 1, 2, 2))
    # 0·1 + 1·2 + 3·3 + 4·4 = 27, then 37, 57, 67; plus the bias
    close(y, [[[[27.5, 37.5], [57.5, 67.5]]]])
    dx = layer.backward(backend.asarray([[[[1.0, 0.0], [0.0, 2.0]]]], dtype))
    assert_on(dx, backend, dtype, (1, 1, 3, 3))
    # W under the first window, 2·W under the last
    close(dx, [[[[1, 2, 0], [3, 6, 4], [0, 6, 8]]]])
    assert_on(layer.dW, backend, dtype, (1, 1, 2, 2))
    close(layer.dW, [[[[0 + 2 * 4, 1 + 2 * 5], [3 + 2 * 7, 4 + 2 * 8]]]])
    assert_on(layer.db, backend, dtype, (1,))
    close(layer.db, [3.0])
    assert layer.backward(backend.asarray(np.ones((1, 1, 2, 2)), dtype), input_grad=False) is None
    close(layer.db, [4.0])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "im2col"])
def test_convolution_with_stride_2_1_and_pad_1(fast, backend):
    layer = conv(backend, W22, [0.5], stride=(2, 1), pad=1)
    layer.fast = fast
    y = layer.forward(backend.asarray(X3, "float64"))
    # padded rows 0-1 and 2-3 (stride 2), every column offset 0..3 (stride 1)
    close(y, [[[[0.5, 4.5, 11.5, 6.5], [30.5, 57.5, 67.5, 29.5]]]])
    dx = layer.backward(backend.asarray(np.ones((1, 1, 2, 4)), "float64"))
    # row 0 lies under W's second row only, row 1 under its first, row 2 under its second;
    # every column under both of W's columns
    close(dx, [[[[7, 7, 7], [3, 3, 3], [7, 7, 7]]]])
    close(layer.dW, [[[[12, 12], [24, 24]]]])
    close(layer.db, [8.0])


def test_convolution_of_several_channels_and_filters(backend):
    """(N, C, H, W) = (2, 2, 2, 2) and two 2×2 filters over both channels: one output pixel."""
    x = np.stack([X3[0, 0, :2, :2], X3[0, 0, 1:, 1:]])[None].repeat(2, axis=0)  # channels 0, 1
    x[1] *= -1
    # the patch matrix orders its rows channel, filter row, filter column: pixels whose row in
    # it would move under another order (channel last: 2, 5 instead of 1, 6)
    W = np.zeros((2, 2, 2, 2))
    W[0, 0] = [[0, 1], [0, 0]]  # filter 0 reads channel 0's top right
    W[1, 1] = [[0, 0], [1, 0]]  # filter 1 reads channel 1's bottom left
    layer = conv(backend, W, [1.0, -1.0])
    y = layer.forward(backend.asarray(x, "float64"))
    assert_on(y, backend, "float64", (2, 2, 1, 1))
    close(y[:, :, 0, 0], [[1 + 1, 7 - 1], [-1 + 1, -7 - 1]])
    dx = layer.backward(backend.asarray([[[[1.0]], [[2.0]]], [[[3.0]], [[4.0]]]], "float64"))
    expected = np.zeros((2, 2, 2, 2))
    expected[0, 0, 0, 1], expected[0, 1, 1, 0] = 1, 2
    expected[1, 0, 0, 1], expected[1, 1, 1, 0] = 3, 4
    close(dx, expected)
    close(layer.db, [4.0, 6.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"stride": 0},
            "stride must be an integer >= 1 and pad an integer >= 0, got stride 0, pad 0",
        ),
        (
            {"stride": (1, 0)},
            "stride must be an integer >= 1 and pad an integer >= 0, got stride (1, 0), pad 0",
        ),
        ({"stride": (0, 1)}, "got stride (0, 1), pad 0"),
        ({"pad": -1}, "got stride 1, pad -1"),
        ({"pad": 1.0}, "got stride 1, pad 1.0"),
        ({"stride": (1, 2, 3)}, "stride must be an int or a pair of ints, got (1, 2, 3)"),
        ({"stride": True}, "stride must be an int or a pair of ints, got True"),
        ({"stride": (1, 2.0)}, "stride must be an int or a pair of ints, got (1, 2.0)"),
    ],
)
def test_convolution_checks_each_argument_on_its_own(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.Convolution(np.ones((1, 1, 2, 2)), np.zeros(1), **kwargs)


def test_convolution_checks_its_shapes(backend):
    with pytest.raises(ShapeError, match=re.escape("got W (1, 1, 2, 2) and b (2,)")):
        xpnet.Convolution(np.ones((1, 1, 2, 2)), np.zeros(2))
    with pytest.raises(ShapeError, match=re.escape("got W (1, 4) and b (1,)")):
        xpnet.Convolution(np.ones((1, 4)), np.zeros(1))
    layer = conv(backend, np.ones((1, 1, 3, 3)), [0.0])
    layer.name = "Convolution1"
    message = "Convolution1: a 3x3 filter with pad 0 does not fit an input of shape (1, 1, 2, 5)"
    with pytest.raises(ShapeError, match=re.escape(message)):
        layer.forward(backend.asarray(np.zeros((1, 1, 2, 5)), "float64"))
    with pytest.raises(ShapeError, match=re.escape("does not fit an input of shape (1, 1, 5, 2)")):
        layer.forward(backend.asarray(np.zeros((1, 1, 5, 2)), "float64"))
    message = "Convolution1 expects 1 input channels, got an input of shape (1, 2, 3, 3)"
    with pytest.raises(ShapeError, match=re.escape(message)):
        layer.forward(backend.asarray(np.zeros((1, 2, 3, 3)), "float64"))
    message = (
        "Convolution1 expects images of shape (N, C, H, W), got shape (2, 9); reshape flat MNIST "
        "rows with x.reshape(-1, 1, 28, 28)"
    )
    with pytest.raises(ShapeError, match=re.escape(message)):
        layer.forward(backend.asarray(np.zeros((2, 9)), "float64"))


# -- im2col / col2im ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_im2col_and_col2im_by_hand(dtype, backend):
    x = backend.asarray(X3, dtype)
    patches = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    for fast in (True, False):
        col = xpnet.im2col(x, 2, 2, fast=fast)  # stride 1, pad 0
        assert_on(col, backend, dtype, (4, 4))
        close(col, patches)
    # stride (2, 1) with pad 1: the padded image's rows 0-1 and 2-3
    for fast in (True, False):
        col = xpnet.im2col(x, 2, 2, (2, 1), 1, fast=fast)
        assert_on(col, backend, dtype, (8, 4))
        close(col[:4, ...], [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 2, 0]])
        close(col[4:, ...], [[0, 3, 0, 6], [3, 4, 6, 7], [4, 5, 7, 8], [5, 0, 8, 0]])
    # col2im sums each entry back onto its pixel: how many windows hold each pixel
    counts = xpnet.col2im(backend.asarray(np.ones((4, 4)), dtype), (1, 1, 3, 3), 2, 2)
    assert_on(counts, backend, dtype, (1, 1, 3, 3))
    close(counts, [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]])
    counts = xpnet.col2im(backend.asarray(np.ones((8, 4)), dtype), (1, 1, 3, 3), 2, 2, (2, 1), 1)
    assert_on(counts, backend, dtype, (1, 1, 3, 3))
    close(counts, [[[[2, 2, 2], [2, 2, 2], [2, 2, 2]]]])


# -- pooling ------------------------------------------------------------------------------------


def pool_both_ways(layer, x, dout):
    """(y, dx) with NumPy's fast branches, checked against the reference backward."""
    y = layer.forward(x)
    fast = layer.backward(dout)
    reference = layer.backward(dout, fast=False)
    np.testing.assert_array_equal(to_numpy(fast), to_numpy(reference))
    return y, fast


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling_with_stride_2_1_and_1_2(dtype, backend):
    x = backend.asarray(X34, dtype)
    layer = xpnet.Pooling(2, 2, stride=(2, 1))
    y, dx = pool_both_ways(layer, x, backend.asarray([[[[1.0, 2.0, 4.0]]]], dtype))
    assert_on(y, backend, dtype, (1, 1, 1, 3))
    close(y, [[[[9, 9, 8]]]])
    assert_on(dx, backend, dtype, (1, 1, 3, 4))
    close(dx, [[[[0, 3, 0, 4], [0, 0, 0, 0], [0, 0, 0, 0]]]])  # the last row is in no window
    layer = xpnet.Pooling(2, 2, stride=(1, 2))
    y, dx = pool_both_ways(layer, x, backend.asarray([[[[1.0, 2.0], [4.0, 8.0]]]], dtype))
    close(y, [[[[9, 8], [6, 11]]]])
    close(dx, [[[[0, 1, 0, 2], [0, 0, 0, 0], [4, 0, 0, 8]]]])


def test_pooling_to_one_pixel(backend):
    layer = xpnet.Pooling(2, 2)
    y, dx = pool_both_ways(
        layer,
        backend.asarray([[[[4.0, 1.0], [3.0, 2.0]]]], "float64"),
        backend.asarray([[[[5.0]]]], "float64"),
    )
    close(y, [[[[4.0]]]])  # the first offset's pixel: no later one may stand in for it
    close(dx, [[[[5, 0], [0, 0]]]])
    # a 3×3 input: the window covers the top left 2×2 only, the rest gets no gradient
    y, dx = pool_both_ways(
        layer, backend.asarray(X3, "float64"), backend.asarray([[[[5.0]]]], "float64")
    )
    close(y, [[[[4.0]]]])
    close(dx, [[[[0, 0, 0], [0, 5, 0], [0, 0, 0]]]])


def test_padded_pooling_never_takes_the_padding(backend):
    """Padding is −∞: over negative inputs a zero pad would be every window's maximum."""
    x = backend.asarray([[[[-1.0, -2.0], [-3.0, -4.0]]]], "float64")
    layer = xpnet.Pooling(2, 2, stride=2, pad=1)  # each window holds one real pixel
    y, dx = pool_both_ways(layer, x, backend.asarray([[[[1.0, 2.0], [3.0, 4.0]]]], "float64"))
    assert_on(y, backend, "float64", (1, 1, 2, 2))
    close(y, [[[[-1, -2], [-3, -4]]]])
    close(dx, [[[[1, 2], [3, 4]]]])
    layer = xpnet.Pooling(3, 3, stride=1, pad=1)  # every window holds all four pixels
    y, dx = pool_both_ways(layer, x, backend.asarray([[[[1.0, 2.0], [3.0, 4.0]]]], "float64"))
    close(y, [[[[-1, -1], [-1, -1]]]])
    close(dx, [[[[10, 0], [0, 0]]]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equal_maxima_send_the_gradient_to_the_first(dtype, backend):
    """Row-major first maximum of each window, on tiled, cropped and overlapping windows."""
    x = np.zeros((2, 2, 2, 4))
    x[0, 0] = [[5, 5, 1, 5], [1, 5, 5, 5]]
    x[0, 1] = [[1, 1, 7, 2], [7, 7, 7, 7]]
    x[1, 0] = [[0, 0, 0, 0], [0, 0, 0, 0]]
    x[1, 1] = [[3, 2, 9, 9], [3, 1, 9, 9]]
    dout = np.arange(1.0, 17.0).reshape(2, 2, 2, 2)[:, :, :1, :]  # (2, 2, 1, 2)
    layer = xpnet.Pooling(2, 2)  # tiles the input
    y, dx = pool_both_ways(layer, backend.asarray(x, dtype), backend.asarray(dout, dtype))
    close(y, [[[[5, 5]], [[7, 7]]], [[[0, 0]], [[3, 9]]]])
    expected = np.zeros((2, 2, 2, 4))
    expected[0, 0, 0, 0], expected[0, 0, 0, 3] = dout[0, 0, 0, 0], dout[0, 0, 0, 1]
    expected[0, 1, 1, 0], expected[0, 1, 0, 2] = dout[0, 1, 0, 0], dout[0, 1, 0, 1]
    expected[1, 0, 0, 0], expected[1, 0, 0, 2] = dout[1, 0, 0, 0], dout[1, 0, 0, 1]
    expected[1, 1, 0, 0], expected[1, 1, 0, 2] = dout[1, 1, 0, 0], dout[1, 1, 0, 1]
    close(dx, expected)
    # overlapping windows (stride 1): each offset's first maximum, the gradients summed
    layer = xpnet.Pooling(2, 2, stride=1)
    ones = np.full((1, 1, 1, 3), 1.0)
    y, dx = pool_both_ways(layer, backend.asarray(np.full((1, 1, 2, 4), 5.0), dtype), backend.asarray(ones, dtype))  # fmt: skip
    close(y, [[[[5, 5, 5]]]])
    close(dx, [[[[1, 1, 1, 0], [0, 0, 0, 0]]]])


def test_pooling_defaults_and_which_windows_tile():
    layer = xpnet.Pooling(2, 3)
    assert layer.stride is None and layer.pad == 0 and layer.tiles
    y = layer.forward(np.arange(24.0).reshape(1, 1, 4, 6))
    np.testing.assert_array_equal(y, [[[[8, 11], [20, 23]]]])
    assert not xpnet.Pooling(2, 2, stride=1).tiles
    assert not xpnet.Pooling(2, 2, stride=(2, 1)).tiles
    assert not xpnet.Pooling(2, 2, pad=1).tiles
    assert xpnet.Pooling(2, 2, stride=2).tiles
    assert xpnet.Pooling(3, 3, stride=3).tiles  # a cropped input still tiles (with zeros)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (
            (0, 2),
            {},
            "pool size and stride must be integers >= 1 and pad an integer >= 0, got pool 0x2, stride None, pad 0",
        ),
        ((2, 0), {}, "got pool 2x0"),
        ((2, 2), {"stride": 0}, "got pool 2x2, stride 0, pad 0"),
        ((2, 2), {"stride": (1, 0)}, "got pool 2x2, stride (1, 0), pad 0"),
        ((2, 2), {"stride": (0, 1)}, "stride (0, 1)"),
        ((2, 2), {"pad": -1}, "stride None, pad -1"),
        ((2, 2), {"pad": 1.0}, "stride None, pad 1.0"),
        ((4, 2), {"pad": 2}, "pad must be at most half the pool window, got pad 2"),
        ((2, 4), {"pad": 2}, "pad must be at most half the pool window, got pad 2"),
        ((2.0, 2), {}, "pool size must be an int or a pair of ints, got (2.0, 2)"),
        ((2, 2), {"stride": "2"}, "stride must be an int or a pair of ints, got '2'"),
    ],
)
def test_pooling_checks_each_argument_on_its_own(args, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.Pooling(*args, **kwargs)


def test_pooling_checks_its_input(backend):
    assert xpnet.Pooling(4, 4, pad=2).pad == 2  # pad may be exactly half the window
    layer = xpnet.Pooling(3, 3)
    layer.name = "Pooling1"
    message = "Pooling1: a 3x3 window does not fit an input of shape (1, 1, 2, 5)"
    with pytest.raises(ShapeError, match=re.escape(message)):
        layer.forward(backend.asarray(np.zeros((1, 1, 2, 5)), "float64"))
    with pytest.raises(ShapeError, match=re.escape("does not fit an input of shape (1, 1, 5, 2)")):
        layer.forward(backend.asarray(np.zeros((1, 1, 5, 2)), "float64"))
    message = "Pooling1 expects images of shape (N, C, H, W), got shape (9,)"
    with pytest.raises(ShapeError, match=re.escape(message)):
        layer.forward(backend.asarray(np.zeros(9), "float64"))


def test_im2col_and_col2im_check_their_stride():
    x = np.zeros((1, 1, 3, 3))
    message = "stride must be an int or a pair of ints, got (1, 1, 1)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.im2col(x, 2, 2, (1, 1, 1))
    with pytest.raises(ConfigError, match=re.escape(message)):
        xpnet.col2im(np.zeros((4, 4)), (1, 1, 3, 3), 2, 2, (1, 1, 1))


def test_a_window_size_of_zero_is_refused_with_any_stride():
    for args in ((0, 2), (2, 0)):
        with pytest.raises(ConfigError, match="pool size and stride must be integers >= 1"):
            xpnet.Pooling(*args, stride=1)


def test_the_bias_gradient_is_a_new_array_and_none_before_a_backward_pass(backend):
    layer = conv(backend, W22, [0.5])
    assert layer.grads == {"W": None, "b": None}
    layer.forward(backend.asarray(X3, "float64"))
    layer.backward(backend.asarray(np.ones((1, 1, 2, 2)), "float64"))
    if isinstance(layer.db, np.ndarray):  # db is the product's last row, copied out of it
        assert layer.db.base is None or layer.db.flags.owndata


def test_pooling_gradient_takes_the_dtype_of_dout(backend):
    """float32 images, a float64 dout (0.1 is not a float32 number): dx is float64, exactly."""
    for x, stride in ((X34[:, :, :2, :], None), (X34, (2, 1))):
        layer = xpnet.Pooling(2, 2, stride=stride)
        y = layer.forward(backend.asarray(x, "float32"))
        dout = backend.asarray(np.full(tuple(y.shape), 0.1), "float64")
        dx = layer.backward(dout)
        assert_on(dx, backend, "float64", x.shape)
        assert float(backend.xp.sum(dx)) == pytest.approx(0.1 * y.shape[3], rel=1e-15)
        np.testing.assert_array_equal(to_numpy(layer.backward(dout, fast=False)), to_numpy(dx))


def test_the_array_api_code_that_numpy_never_runs_by_hand():
    """The hand-worked cases above on array_api_strict's second device, whatever
    XPNET_TEST_BACKENDS selects: NumPy takes its own branches (np.pad, the patch matrix written
    in place, pooling's channel-last backward), so the Array API code beside them (padding by
    assignment, stack and concat, the offset-by-offset backward, the device of every new array)
    needs another namespace even in a NumPy-only run."""
    pytest.importorskip("array_api_strict")
    generic = xpnet.resolve("device1", "array_api_strict")
    for dtype in ("float32", "float64"):
        for fast in (True, False):
            test_convolution_with_the_default_stride_and_pad(fast, dtype, generic)
        test_im2col_and_col2im_by_hand(dtype, generic)
        test_pooling_with_stride_2_1_and_1_2(dtype, generic)
        test_equal_maxima_send_the_gradient_to_the_first(dtype, generic)
    for fast in (True, False):
        test_convolution_with_stride_2_1_and_pad_1(fast, generic)
    test_convolution_of_several_channels_and_filters(generic)
    test_pooling_to_one_pixel(generic)
    test_padded_pooling_never_takes_the_padding(generic)
    test_pooling_gradient_takes_the_dtype_of_dout(generic)
