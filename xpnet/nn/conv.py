"""Chapter 7: convolution as a matrix product over im2col's patch matrix (patches.py).

The code below uses only the Array API (strided slices, ``stack``, ``concat``, ``permute_dims``,
``reshape``, ``@``), so it runs on NumPy, CuPy, torch and array_api_strict alike. Convolution
builds the patch matrix transposed by default (block copies of whole pixel rows, the bias folded
into the product); the book's im2col layout is the reference it is tested against
(``Convolution.fast = False``). NumPy writes the patch blocks in place, tested against the
reference code. Max pooling is in pooling.py; both, with im2col and col2im, are importable from
here as before.

Where xpnet differs from the book's ``common/layers.py`` Convolution: it keeps the input's dtype
(the book's im2col allocates float64 whatever it gets), and the first layer of a network is called
with ``input_grad=False`` and skips col2im entirely.
"""

from __future__ import annotations

from array_api_compat import device as device_of
from array_api_compat import is_numpy_namespace

from ..backend import namespace_of
from ..errors import ConfigError, ShapeError
from .layers import Layer, as_int
from .patches import check_images, col2im, im2col, output_size, padded, pair
from .pooling import Pooling

__all__ = ["Convolution", "Pooling", "col2im", "im2col", "output_size"]


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
        sh, sw = pair(stride, "stride")
        if sh < 1 or sw < 1 or as_int(pad) is None or pad < 0:
            raise ConfigError(
                f"stride must be an integer >= 1 and pad an integer >= 0, got stride {stride}, "
                f"pad {pad}"
            )
        xp = namespace_of(W)
        # the layer's own arrays (Layer's contract): an optimizer's in-place steps never reach
        # the caller's, and two layers built from one W do not share it
        self.W = xp.asarray(W, copy=True)
        self.b = xp.asarray(b, copy=True)
        self.stride = (sh, sw) if isinstance(stride, tuple | list) else sh
        self.pad = as_int(pad)
        self.dW = None
        self.db = None
        self.x_shape = None  # pragma: no mutate - forward sets these before backward reads them
        self.col = None  # pragma: no mutate
        self.col_W = None  # pragma: no mutate
        self.colT = None  # pragma: no mutate

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        check_images(self, x, self.W.shape[1])
        FN, _, FH, FW = self.W.shape
        N, _, H, W = x.shape
        sh, sw = pair(self.stride, "stride")
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
        sh, sw = pair(self.stride, "stride")
        x_t = xp.permute_dims(padded(x, self.pad), (1, 0, 2, 3))
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
        sh, sw = pair(self.stride, "stride")
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
