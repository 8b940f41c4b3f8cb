"""Chapter 7: convolution and max pooling as matrix products over im2col's patch matrix.

The code below uses only the Array API (strided slices, ``stack``, ``concat``, ``permute_dims``,
``reshape``, ``@``), so it runs on NumPy, CuPy, torch and array_api_strict alike. Convolution
builds the patch matrix transposed by default (block copies of whole pixel rows, the bias folded
into the product); the book's im2col layout is the reference it is tested against
(``Convolution.fast = False``). NumPy takes small branches (``sliding_window_view`` for im2col,
writing the patch blocks in place, a channel-last pooling backward), each tested against the
reference code.

Where xpnet differs from the book's ``common/util.py`` and ``common/layers.py``:

- im2col/col2im and pooling keep the input's dtype (the book allocates float64 whatever it gets).
- col2im accumulates by one strided-slice add per filter offset (FH·FW adds); the book does the
  same, and there is no ``np.add.at``, so it works on every backend.
- Pooling pads with −∞ (as ``torch.nn.functional.max_pool2d``), not with zeros, and its output
  size accounts for ``pad`` (the book's ignores it).
- The first layer of a network is called with ``input_grad=False`` and skips col2im entirely.
"""

from __future__ import annotations

import math

from array_api_compat import device as device_of
from array_api_compat import is_numpy_namespace

from ..backend import namespace_of
from ..errors import ConfigError, ShapeError
from .layers import Layer


def _pair(value, name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def output_size(size: int, window: int, stride: int, pad: int) -> int:
    """Number of window positions along one axis: (size + 2·pad − window) // stride + 1."""
    return (size + 2 * pad - window) // stride + 1


def _padded(x, pad: int, fill: float = 0.0):
    """x (N, C, H, W) with `pad` rows and columns of `fill` on every side (x itself if pad == 0)."""
    if pad == 0:
        return x
    xp = namespace_of(x)
    N, C, H, W = x.shape
    if is_numpy_namespace(xp):
        import numpy as np

        return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    out = xp.full((N, C, H + 2 * pad, W + 2 * pad), fill, dtype=x.dtype, device=device_of(x))
    out[:, :, pad : pad + H, pad : pad + W] = x
    return out


def _windows(x_pad, filter_h: int, filter_w: int, stride, out_h: int, out_w: int) -> list:
    """The FH·FW strided slices x_pad[:, :, i::sh, j::sw] (each (N, C, OH, OW)), row-major."""
    sh, sw = stride
    return [
        x_pad[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
        for i in range(filter_h)
        for j in range(filter_w)
    ]


def im2col(input_data, filter_h: int, filter_w: int, stride=1, pad: int = 0, *, fast: bool = True):
    """Patch matrix of an image batch: (N, C, H, W) -> (N·OH·OW, C·FH·FW), the book's layout.

    Row n·OH·OW + y·OW + x holds the C·FH·FW inputs under the filter at output position (y, x)
    of sample n, channel-major then filter row then column, so that ``col @ W.reshape(FN, -1).T``
    is the convolution. ``fast=False`` forces the generic Array API code.
    """
    xp = namespace_of(input_data)
    N, C, H, W = input_data.shape
    sh, sw = _pair(stride, "stride")
    out_h = output_size(H, filter_h, sh, pad)
    out_w = output_size(W, filter_w, sw, pad)
    x_pad = _padded(input_data, pad)
    if fast and is_numpy_namespace(xp):
        import numpy as np

        # a strided view (N, C, OH, OW, FH, FW), copied once into the patch matrix
        view = np.lib.stride_tricks.sliding_window_view(x_pad, (filter_h, filter_w), axis=(2, 3))
        view = view[:, :, : sh * (out_h - 1) + 1 : sh, : sw * (out_w - 1) + 1 : sw]
        return view.transpose(0, 2, 3, 1, 4, 5).reshape(N * out_h * out_w, -1)
    col = xp.stack(_windows(x_pad, filter_h, filter_w, (sh, sw), out_h, out_w), axis=-1)
    col = xp.permute_dims(col, (0, 2, 3, 1, 4))  # (N, OH, OW, C, FH·FW)
    return xp.reshape(col, (N * out_h * out_w, C * filter_h * filter_w))


def col2im(col, input_shape, filter_h: int, filter_w: int, stride=1, pad: int = 0):
    """Adjoint of im2col: sums each patch entry back onto the input pixel it came from.

    (N·OH·OW, C·FH·FW) -> input_shape (N, C, H, W), by one strided-slice add per filter offset.
    """
    xp = namespace_of(col)
    N, C, H, W = input_shape
    sh, sw = _pair(stride, "stride")
    out_h = output_size(H, filter_h, sh, pad)
    out_w = output_size(W, filter_w, sw, pad)
    cols = xp.reshape(col, (N, out_h, out_w, C, filter_h, filter_w))
    cols = xp.permute_dims(cols, (0, 3, 4, 5, 1, 2))  # (N, C, FH, FW, OH, OW)
    # pixels that no window reaches (rows past the last stride) stay zero
    img = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=col.dtype, device=device_of(col))
    for i in range(filter_h):
        rows = slice(i, i + sh * (out_h - 1) + 1, sh)
        for j in range(filter_w):
            cols_ = slice(j, j + sw * (out_w - 1) + 1, sw)
            img[:, :, rows, cols_] += cols[:, :, i, j, :, :]
    return img[:, :, pad : pad + H, pad : pad + W] if pad else img


def _check_images(layer, x, channels: int | None = None) -> None:
    if x.ndim != 4:
        raise ShapeError(
            f"{layer.name} expects images of shape (N, C, H, W), got shape {tuple(x.shape)}; "
            "reshape flat MNIST rows with x.reshape(-1, 1, 28, 28)"
        )
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(
            f"{layer.name} expects {channels} input channels, got an input of shape "
            f"{tuple(x.shape)}"
        )


class Convolution(Layer):
    """2-D convolution (cross-correlation, as in every framework): y = W ⋆ x + b.

    W has shape (FN, C, FH, FW), b shape (FN,); x (N, C, H, W) gives y (N, FN, OH, OW) with
    OH = (H + 2·pad − FH) // stride + 1. Forward is ``im2col(x) @ W.reshape(FN, -1).T + b``;
    backward dW = doutᵀ·col, db = Σ dout, dx = col2im(dout·W). Unlike the book's, the layer keeps
    the input's dtype and skips dx (col2im) when ``input_grad`` is false (a network's first layer).
    The output is a permuted view of the (N·OH·OW, FN) product, not a copy. By default the patch
    matrix is built transposed (see ``_forward_t``): the same numbers, 3-4× faster to build.
    """

    param_names = ("W", "b")
    decay_names = ("W",)
    #: use the transposed patch matrix (_forward_t); False: the book's im2col layout, the
    #: reference the tests compare it with
    fast = True

    def __init__(self, W, b, stride=1, pad: int = 0):
        if W.ndim != 4 or b.shape != (W.shape[0],):
            raise ShapeError(
                f"Convolution needs W of shape (FN, C, FH, FW) and b of shape (FN,), got W "
                f"{tuple(W.shape)} and b {tuple(b.shape)}"
            )
        sh, sw = _pair(stride, "stride")
        if sh < 1 or sw < 1 or not isinstance(pad, int) or pad < 0:
            raise ConfigError(f"stride must be >= 1 and pad >= 0, got stride {stride}, pad {pad}")
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.dW = None
        self.db = None
        self.x_shape = None  # pragma: no mutate - forward sets these before backward reads them
        self.col = None  # pragma: no mutate
        self.col_W = None  # pragma: no mutate
        self.colT = None  # pragma: no mutate

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        _check_images(self, x, self.W.shape[1])
        FN, _, FH, FW = self.W.shape
        N, _, H, W = x.shape
        sh, sw = _pair(self.stride, "stride")  # pragma: no mutate - __init__ checked the stride
        out_h = output_size(H, FH, sh, self.pad)
        out_w = output_size(W, FW, sw, self.pad)
        if out_h < 1 or out_w < 1:
            raise ShapeError(
                f"{self.name}: a {FH}x{FW} filter with pad {self.pad} does not fit an input of "
                f"shape {tuple(x.shape)}"
            )
        col_W = xp.reshape(self.W, (FN, FH * FW * self.W.shape[1]))
        if self.fast:
            return self._forward_t(x, col_W, out_h, out_w, train)
        col = im2col(x, FH, FW, self.stride, self.pad)
        out = col @ col_W.T
        out += self.b  # in place: `out` is a fresh array
        if train:
            self.x_shape, self.col, self.col_W = tuple(x.shape), col, col_W
            self.colT = None
        return xp.permute_dims(xp.reshape(out, (N, out_h, out_w, FN)), (0, 3, 1, 2))

    def _forward_t(self, x, col_W, out_h: int, out_w: int, train: bool):
        """The patch matrix transposed, (C·FH·FW + 1, N·OH·OW): FH·FW block copies, then ones.

        Each block copy moves whole rows of OW pixels (im2col's rows hold FW-pixel runs): about
        four times faster on NumPy for MNIST-sized inputs, and fewer, larger copies elsewhere.
        The last row is ones, so one product gives x ⋆ W + b here and (dW, db) in backward. The
        output is (N, OH, OW, FN) in memory, as on the im2col path (channel-last suits the
        pooling that follows). NumPy writes the blocks straight into the matrix; the Array API
        code stacks them and appends the row of ones.
        """
        xp = namespace_of(x)
        FN, C, FH, FW = self.W.shape
        N = x.shape[0]
        sh, sw = _pair(self.stride, "stride")  # pragma: no mutate - __init__ checked the stride
        x_t = xp.permute_dims(_padded(x, self.pad), (1, 0, 2, 3))
        K, M = C * FH * FW, N * out_h * out_w
        windows = [
            (i, j, x_t[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw])
            for i in range(FH)
            for j in range(FW)
        ]
        dev = device_of(x)
        if is_numpy_namespace(xp):
            import numpy as np

            colT = np.empty((K + 1, M), dtype=x.dtype)
            blocks = colT[:K].reshape(C, FH, FW, N, out_h, out_w)
            for i, j, window in windows:
                blocks[:, i, j] = window
            colT[K] = 1.0
        else:
            blocks = xp.stack([w for _, _, w in windows], axis=1)  # (C, FH·FW, N, OH, OW)
            ones = xp.ones((1, M), dtype=x.dtype, device=dev)
            colT = xp.concat([xp.reshape(blocks, (K, M)), ones], axis=0)
        Wb = xp.concat([col_W.T, xp.reshape(self.b, (1, FN))], axis=0)  # (K + 1, FN)
        out = colT.T @ Wb  # BLAS reads the transpose in place
        if train:
            self.x_shape, self.col, self.col_W, self.colT = tuple(x.shape), None, col_W, colT
        return xp.permute_dims(xp.reshape(out, (N, out_h, out_w, FN)), (0, 3, 1, 2))

    def _backward_t(self, dout, input_grad: bool):
        """Backward for _forward_t: [dWᵀ; db] = colᵀ·dout in one product, dcolᵀ = Wᵀ·doutᵀ."""
        xp = namespace_of(dout)
        FN, C, FH, FW = self.W.shape
        N, _, H, W = self.x_shape
        out_h, out_w = dout.shape[2], dout.shape[3]
        # free when dout kept forward's (N, OH, OW, FN) memory layout
        d = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, FN))
        g = self.colT @ d  # (K + 1, FN)
        self.dW = xp.reshape(xp.permute_dims(g[:-1, :], (1, 0)), (FN, C, FH, FW))
        self.db = xp.asarray(g[-1, :], copy=True)
        if not input_grad:
            return None
        sh, sw = _pair(self.stride, "stride")  # pragma: no mutate - __init__ checked the stride
        p = self.pad
        dcolT = xp.reshape(self.col_W.T @ d.T, (C, FH, FW, N, out_h, out_w))
        img = xp.zeros((C, N, H + 2 * p, W + 2 * p), dtype=dout.dtype, device=device_of(dout))
        for i in range(FH):
            rows = slice(i, i + sh * (out_h - 1) + 1, sh)
            for j in range(FW):
                img[:, :, rows, j : j + sw * (out_w - 1) + 1 : sw] += dcolT[:, i, j, :, :, :]
        return xp.permute_dims(img, (1, 0, 2, 3))[:, :, p : p + H, p : p + W]

    def backward(self, dout, input_grad: bool = True):
        xp = namespace_of(dout)
        FN, C, FH, FW = self.W.shape
        if self.colT is not None:
            return self._backward_t(dout, input_grad)
        # free when dout has forward's (N, OH, OW, FN) memory layout, as elementwise layers keep it
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, FN))
        self.db = xp.sum(dout, axis=0)
        self.dW = xp.reshape(dout.T @ self.col, (FN, C, FH, FW))
        if not input_grad:
            return None
        dcol = dout @ self.col_W
        return col2im(dcol, self.x_shape, FH, FW, self.stride, self.pad)


class Pooling(Layer):
    """Max pooling over pool_h × pool_w windows: y = max of each window, per channel.

    ``stride`` defaults to the window (non-overlapping windows, as in torch and the book's current
    code); the output is (N, C, OH, OW) with OH = (H + 2·pad − pool_h) // stride + 1 (the book's
    ignores pad here). Padding counts as −∞, as in ``torch.nn.functional.max_pool2d``, so it is
    never the maximum; pad may be at most half the window. Backward sends each output's gradient
    to the first maximum of its window in row-major order (the element torch picks).

    The book pools through im2col, a (N·OH·OW·C, pool_h·pool_w) matrix reduced along its short
    rows, and keeps an argmax. Here the window is swept instead: one strided slice
    x[:, :, i::s, j::s] per window offset and an elementwise running maximum (no copy of the
    input, K = pool_h·pool_w passes over arrays of the output's size). Backward finds each
    window's first maximum again by comparing the slices with the output, which costs less than
    tracking an argmax in forward. When the windows tile the input (stride = window, pad = 0)
    every pixel is in one window, so dx is assigned slice by slice instead of accumulated; on
    NumPy that case is a few whole-array operations in channel-last order (the memory order of a
    convolution's output).
    """

    def __init__(self, pool_h: int, pool_w: int, stride=None, pad: int = 0):
        ph, pw = _pair((pool_h, pool_w), "pool size")
        sh, sw = (ph, pw) if stride is None else _pair(stride, "stride")
        if min(ph, pw, sh, sw) < 1 or not isinstance(pad, int) or pad < 0:
            raise ConfigError(
                f"pool size and stride must be >= 1 and pad >= 0, got pool {ph}x{pw}, "
                f"stride {stride}, pad {pad}"
            )
        if 2 * pad > min(ph, pw):
            raise ConfigError(f"pad must be at most half the pool window, got pad {pad}")
        self.pool_h = ph
        self.pool_w = pw
        self.stride = stride
        self.pad = pad
        self._stride = (sh, sw)
        self.x_pad = None  # pragma: no mutate - forward sets these before backward reads them
        self.out = None  # pragma: no mutate

    @property
    def tiles(self) -> bool:
        """Whether the windows do not overlap and there is no padding."""
        return self.pad == 0 and self._stride == (self.pool_h, self.pool_w)

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        _check_images(self, x)
        H, W = x.shape[2], x.shape[3]
        ph, pw = self.pool_h, self.pool_w
        out_h = output_size(H, ph, self._stride[0], self.pad)
        out_w = output_size(W, pw, self._stride[1], self.pad)
        if out_h < 1 or out_w < 1:
            raise ShapeError(
                f"{self.name}: a {ph}x{pw} window does not fit an input of shape {tuple(x.shape)}"
            )
        x_pad = _padded(x, self.pad, -math.inf)
        windows = _windows(x_pad, ph, pw, self._stride, out_h, out_w)
        out = windows[0]
        for w in windows[1:]:
            out = xp.maximum(out, w)
        if train:
            # backward finds each window's first maximum again by comparing with `out`: cheaper
            # than tracking an argmax here (two `where`s per offset)
            self.x_pad, self.out = x_pad, out
        return out

    def backward(self, dout, input_grad: bool = True, *, fast: bool = True):  # pragma: no mutate
        """dL/dx; ``fast=False`` forces the reference code (offset by offset, NCHW order)."""
        xp = namespace_of(dout)
        x_pad, out = self.x_pad, self.out
        ph, pw = self.pool_h, self.pool_w
        sh, sw = self._stride
        out_h, out_w = dout.shape[2], dout.shape[3]
        p = self.pad
        H, W = x_pad.shape[2] - 2 * p, x_pad.shape[3] - 2 * p
        numpy = fast and is_numpy_namespace(xp)
        # windows that tile x exactly write every pixel once: assign instead of accumulating
        exact = self.tiles and (out_h * ph, out_w * pw) == (H, W)
        if numpy and exact:
            return self._backward_tiled_numpy(dout)
        if numpy:
            import numpy as np

            # in x's memory layout (a convolution's output is (N, OH, OW, C) in memory), so the
            # strided writes below and the layer before us read it in order
            # (not zeroed when every pixel is written below)
            img = (np.empty_like if exact else np.zeros_like)(x_pad, dtype=dout.dtype)
            if dout.strides != out.strides:  # one copy into that layout beats four mixed passes
                like_out = np.empty_like(out, dtype=dout.dtype)
                like_out[...] = dout
                dout = like_out
        else:
            img = xp.zeros(tuple(x_pad.shape), dtype=dout.dtype, device=device_of(dout))
        taken = None
        last = ph * pw - 1
        for k, w in enumerate(_windows(x_pad, ph, pw, self._stride, out_h, out_w)):
            i, j = divmod(k, pw)
            rows = slice(i, i + sh * (out_h - 1) + 1, sh)
            cols = slice(j, j + sw * (out_w - 1) + 1, sw)
            # the first offset (row-major) where the window reaches its maximum takes the
            # gradient, as in torch; later ties do not
            hit = w == out
            if taken is None:
                taken = hit
            else:
                hit = xp.logical_and(hit, xp.logical_not(taken))
                if k < last:
                    taken = xp.logical_or(taken, hit)
            # a float mask: multiplying by a boolean array takes NumPy's slow casting loop
            hit = xp.astype(hit, dout.dtype)
            if numpy and exact:
                np.multiply(dout, hit, out=img[:, :, rows, cols])  # pragma: no mutate - dead code
            elif self.tiles:
                img[:, :, rows, cols] = dout * hit
            else:
                img[:, :, rows, cols] += dout * hit
        return img[:, :, p : p + H, p : p + W] if p else img

    def _backward_tiled_numpy(self, dout):
        """NumPy, windows that tile x exactly: whole-array ops in channel-last order.

        x (a convolution's output, (N, H, W, C) in memory) viewed as (N, OH, ph, OW, pw, C) is
        compared with the output once; later ties are then cleared offset by offset (boolean ops
        on views), and dx is one multiply, returned in x's channel-last layout.
        """
        import numpy as np

        x, out = self.x_pad, self.out
        N, C, H, W = x.shape
        ph, pw = self.pool_h, self.pool_w
        oh, ow = H // ph, W // pw
        hit = (
            np.reshape(x.transpose(0, 2, 3, 1), (N, oh, ph, ow, pw, C))
            == (out.transpose(0, 2, 3, 1)[:, :, None, :, None, :])
        )
        taken = hit[:, :, 0, :, 0].copy()
        for k in range(1, ph * pw):
            h = hit[:, :, k // pw, :, k % pw]
            np.logical_and(h, np.logical_not(taken), out=h)
            if k < ph * pw - 1:
                np.logical_or(taken, h, out=taken)
        dx = hit.astype(dout.dtype)  # a float mask: NumPy multiplies bool by float slowly
        dx *= np.ascontiguousarray(dout.transpose(0, 2, 3, 1))[:, :, None, :, None, :]
        return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2)
