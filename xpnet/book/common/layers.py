"""The book's common/layers.py: its layer classes, by its names and signatures, as xpnet's layers
(xpnet.nn) with the book's options selected.

- ``Relu``, ``Sigmoid``, ``Affine``: xpnet's ReLU, Sigmoid, Affine.
- ``SoftmaxWithLoss``: xpnet's, with the book's 1e-7 inside the logarithm (``delta``).
- ``Dropout``: xpnet's, scaling at test time (``inverted=False``) with masks from NumPy's global
  generator (``np.random.rand(*x.shape) > dropout_ratio``), so ``np.random.seed`` gives the book's.
- ``BatchNormalization``: xpnet's, per activation on images, ε = 1e-6, the biased variance in the
  running average, which starts at zero.
- ``Convolution``: xpnet's, on the book's im2col layout (``fast = False``); a number as the bias
  (the book's ch07/apply_filter.py passes 0) is that number for every filter.
- ``Pooling``: xpnet's max pooling, the stride defaulting to 2 as the book's.

``forward(x)`` / ``forward(x, train_flg)`` and ``backward(dout)`` are called as in the book. What
the layers keep between the passes is xpnet's (e.g. ``Relu.mask`` marks x > 0 where the book's marks
x <= 0), and a layer keeps its own copies of the arrays it is built from (the book's shares them).
"""

import numpy as np

from xpnet.book.common.functions import *  # noqa: F403 (the book's layers.py does the same)
from xpnet.book.common.util import col2im, im2col  # noqa: F401
from xpnet.nn import batchnorm as _batchnorm
from xpnet.nn import conv as _conv
from xpnet.nn import dropout as _dropout
from xpnet.nn import layers as _layers
from xpnet.nn import pooling as _pooling

#: the book's cross_entropy_error guard, which its SoftmaxWithLoss inherits
_DELTA = 1e-7
#: the book's batch-normalization ε (written 10e-7 there)
_BN_EPS = 1e-6


def _global_uniform(shape):
    """U[0, 1) samples from NumPy's global generator, as the book's Dropout draws them."""
    return np.random.rand(*shape)  # noqa: NPY002 (the book's global generator)


class Relu(_layers.ReLU):
    """max(0, x) (xpnet.nn.layers.ReLU)."""


class Sigmoid(_layers.Sigmoid):
    """1 / (1 + exp(-x)) (xpnet.nn.layers.Sigmoid)."""


class Affine(_layers.Affine):
    """x·W + b, inputs of any rank flattened per sample (xpnet.nn.layers.Affine)."""


class SoftmaxWithLoss(_layers.SoftmaxWithLoss):
    """Softmax and the book's cross-entropy, −Σ log(y_true + 1e-7) / N; backward (y − t) / N."""

    def __init__(self):
        super().__init__(delta=_DELTA)


class Dropout(_dropout.Dropout):
    """The book's dropout: units kept where np.random.rand > dropout_ratio, unscaled in training;
    at test time (``train_flg=False``) the output is x·(1 − dropout_ratio)."""

    def __init__(self, dropout_ratio=0.5):
        super().__init__(dropout_ratio, inverted=False, uniform=_global_uniform)

    def forward(self, x, train_flg=True):
        return super().forward(x, train_flg)


class BatchNormalization(_batchnorm.BatchNormalization):
    """The book's batch normalization: per activation (an image batch as (N, C·H·W) rows),
    ε = 1e-6, running mean and (biased) variance starting at zero with weight ``momentum``."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        xp = _layers.namespace_of(gamma)
        super().__init__(
            gamma,
            beta,
            momentum,
            xp.zeros_like(gamma) if running_mean is None else running_mean,
            xp.zeros_like(gamma) if running_var is None else running_var,
            eps=_BN_EPS,
            unbiased=False,
            per_activation=True,
        )

    def forward(self, x, train_flg=True):
        return super().forward(x, train_flg)


class Convolution(_conv.Convolution):
    """Convolution through the book's im2col patch matrix (xpnet.nn.conv.Convolution, fast=False)."""

    fast = False

    def __init__(self, W, b, stride=1, pad=0):
        if np.ndim(b) == 0 and not hasattr(b, "__array_namespace__"):  # a number: every filter's
            xp = _layers.namespace_of(W)
            b = xp.full((W.shape[0],), float(b), dtype=W.dtype, device=_layers.device_of(W))
        super().__init__(W, b, stride, pad)


class Pooling(_pooling.Pooling):
    """Max pooling over pool_h × pool_w windows, stride 2 unless given (xpnet.nn.pooling)."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        super().__init__(pool_h, pool_w, stride, pad)
