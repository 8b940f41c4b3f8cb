"""The book's common/util.py: im2col and col2im are xpnet's (xpnet.nn.patches, the book's layout,
keeping the input's dtype where the book's returns float64); the helpers for plots and data are
written here, on any backend."""

import numpy as np
from array_api_compat import device as _device_of

from xpnet.backend import namespace_of as _namespace_of
from xpnet.backend import to_numpy as _to_numpy
from xpnet.nn.patches import col2im, im2col  # noqa: F401 (the book's names)


def smooth_curve(x):
    """The losses `x` smoothed for a plot: a Kaiser window (β = 2) of 11 points over the values
    mirrored at both ends, as the book's, as a host NumPy array."""
    window_len = 11
    values = np.asarray([float(_to_numpy(v)) for v in x], dtype=float)
    s = np.concatenate([values[window_len - 1 : 0 : -1], values, values[-1:-window_len:-1]])
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


def shuffle_dataset(x, t):
    """x and t with their samples in one random order, drawn from NumPy's global generator."""
    permutation = np.random.permutation(x.shape[0])  # noqa: NPY002 (the book's global generator)
    if isinstance(x, np.ndarray):
        return x[permutation], t[permutation]
    xp = _namespace_of(x)
    index = xp.asarray(permutation, device=_device_of(x))
    return xp.take(x, index, axis=0), xp.take(t, index, axis=0)


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """(input_size + 2·pad − filter_size) / stride + 1, a float as the book's."""
    return (input_size + 2 * pad - filter_size) / stride + 1
