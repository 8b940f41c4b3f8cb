"""Chapter 7's im2col and col2im (images as patch matrices), and what the convolution and pooling
layers share: argument checks, output sizes, padding, the strided windows of an image batch.

Written with the Array API only (strided slices, ``stack``, ``permute_dims``, ``reshape``), so it
runs on NumPy, CuPy, torch and array_api_strict alike; NumPy takes one small branch
(``sliding_window_view`` for im2col), tested against the generic code.

Where xpnet differs from the book's ``common/util.py``:

- im2col/col2im keep the input's dtype (the book allocates float64 whatever it gets).
- col2im accumulates by one strided-slice add per filter offset (FH·FW adds); the book does the
  same, and there is no ``np.add.at``, so it works on every backend.
"""

from __future__ import annotations

from array_api_compat import device as device_of
from array_api_compat import is_numpy_namespace

from ..backend import namespace_of
from ..errors import ConfigError, ShapeError
from .layers import as_int


def pair(value, name: str) -> tuple[int, int]:
    """(a, b) as Python ints from an integer or a pair of integers (Python or NumPy)."""
    values = tuple(value) if isinstance(value, tuple | list) else (value, value)
    ints = tuple(as_int(v) for v in values)
    if len(ints) != 2 or None in ints:
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return ints  # type: ignore[return-value]


def output_size(size: int, window: int, stride: int, pad: int) -> int:
    """Number of window positions along one axis: (size + 2·pad − window) // stride + 1."""
    return (size + 2 * pad - window) // stride + 1


def padded(x, pad: int, fill: float = 0.0):
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


def strided_windows(x_pad, filter_h: int, filter_w: int, stride, out_h: int, out_w: int) -> list:
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
    sh, sw = pair(stride, "stride")
    out_h = output_size(H, filter_h, sh, pad)
    out_w = output_size(W, filter_w, sw, pad)
    x_pad = padded(input_data, pad)
    if fast and is_numpy_namespace(xp):
        import numpy as np

        # a strided view (N, C, OH, OW, FH, FW), copied once into the patch matrix
        view = np.lib.stride_tricks.sliding_window_view(x_pad, (filter_h, filter_w), axis=(2, 3))
        view = view[:, :, : sh * (out_h - 1) + 1 : sh, : sw * (out_w - 1) + 1 : sw]
        return view.transpose(0, 2, 3, 1, 4, 5).reshape(N * out_h * out_w, -1)
    col = xp.stack(strided_windows(x_pad, filter_h, filter_w, (sh, sw), out_h, out_w), axis=-1)
    col = xp.permute_dims(col, (0, 2, 3, 1, 4))  # (N, OH, OW, C, FH·FW)
    return xp.reshape(col, (N * out_h * out_w, C * filter_h * filter_w))


def col2im(col, input_shape, filter_h: int, filter_w: int, stride=1, pad: int = 0):
    """Adjoint of im2col: sums each patch entry back onto the input pixel it came from.

    (N·OH·OW, C·FH·FW) -> input_shape (N, C, H, W), by one strided-slice add per filter offset.
    """
    xp = namespace_of(col)
    N, C, H, W = input_shape
    sh, sw = pair(stride, "stride")
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


def check_images(layer, x, channels: int | None = None) -> None:
    """A ShapeError unless x is an image batch (N, C, H, W), with `channels` channels if given."""
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
