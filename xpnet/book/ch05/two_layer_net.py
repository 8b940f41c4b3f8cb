"""The book's ch05/two_layer_net.py: TwoLayerNet of layers, Affine1 → Relu1 → Affine2 →
SoftmaxWithLoss (xpnet's, with the book's options: xpnet.book.common.layers)."""

from collections import OrderedDict  # noqa: F401

import numpy as np  # noqa: F401 (the book's module exports np)

from xpnet.book.common.gradient import numerical_gradient  # noqa: F401
from xpnet.book.common.layers import *  # noqa: F403
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import Relu as _Relu
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import initial_weight as _initial_weight
from xpnet.book.net import zeros as _zeros


class TwoLayerNet(_BookNetwork):
    """input → Affine1 → Relu1 → Affine2 → SoftmaxWithLoss; weights ~ N(0, weight_init_std²)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std = 0.01):  # fmt: skip
        W1 = _initial_weight(weight_init_std, input_size, hidden_size)
        W2 = _initial_weight(weight_init_std, hidden_size, output_size)
        self._assemble([
            ("Affine1", _Affine(W1, _zeros(hidden_size))),
            ("Relu1", _Relu()),
            ("Affine2", _Affine(W2, _zeros(output_size))),
        ])  # fmt: skip
        self.lastLayer = self.last_layer  # the book's name in this chapter

    def predict(self, x):
        return self._predict(x, True)

    def loss(self, x, t):
        return self._loss(x, t, True)
