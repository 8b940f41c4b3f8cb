"""Chapter 7: max pooling, by sweeping the window over strided slices of the input.

Written with the Array API only, so it runs on every backend; NumPy takes small branches in
backward (writing in place, a channel-last path when the windows tile the input), tested against
the reference code (``backward(..., fast=False)``).

Where xpnet differs from the book's ``common/layers.py`` Pooling: it keeps the input's dtype, pads
with −∞ (as ``torch.nn.functional.max_pool2d``), not with zeros, and its output size accounts for
``pad`` (the book's ignores it).
"""

from __future__ import annotations

import math

from array_api_compat import device as device_of
from array_api_compat import is_numpy_namespace

from ..backend import namespace_of
from ..errors import ConfigError, ShapeError
from .layers import Layer, as_int
from .patches import check_images, output_size, padded, pair, strided_windows


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
        ph, pw = pair((pool_h, pool_w), "pool size")
        sh, sw = (ph, pw) if stride is None else pair(stride, "stride")
        if min(ph, pw, sh, sw) < 1 or as_int(pad) is None or pad < 0:
            raise ConfigError(
                f"pool size and stride must be integers >= 1 and pad an integer >= 0, got pool "
                f"{ph}x{pw}, "
                f"stride {stride}, pad {pad}"
            )
        pad = as_int(pad)
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
        check_images(self, x)
        H, W = x.shape[2], x.shape[3]
        ph, pw = self.pool_h, self.pool_w
        out_h = output_size(H, ph, self._stride[0], self.pad)
        out_w = output_size(W, pw, self._stride[1], self.pad)
        if out_h < 1 or out_w < 1:
            raise ShapeError(
                f"{self.name}: a {ph}x{pw} window does not fit an input of shape {tuple(x.shape)}"
            )
        x_pad = padded(x, self.pad, -math.inf)
        windows = strided_windows(x_pad, ph, pw, self._stride, out_h, out_w)
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
            img = np.zeros_like(x_pad, dtype=dout.dtype)
            if dout.strides != out.strides:  # one copy into that layout beats four mixed passes
                like_out = np.empty_like(out, dtype=dout.dtype)
                like_out[...] = dout
                dout = like_out
        else:
            img = xp.zeros(tuple(x_pad.shape), dtype=dout.dtype, device=device_of(dout))
        taken = None
        last = ph * pw - 1
        for k, w in enumerate(strided_windows(x_pad, ph, pw, self._stride, out_h, out_w)):
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
            if self.tiles:
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
