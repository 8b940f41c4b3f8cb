"""The book's ch07/simple_convnet.py: SimpleConvNet, conv - relu - pool - affine - relu - affine -
softmax, as xpnet's layers with the book's options (xpnet.book.common.layers) and initial weights."""

import pickle  # noqa: F401
from collections import OrderedDict  # noqa: F401

import numpy as np  # noqa: F401 (the book's module exports np)

from xpnet.book.common.gradient import numerical_gradient  # noqa: F401
from xpnet.book.common.layers import *  # noqa: F403
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import Convolution as _Convolution
from xpnet.book.common.layers import Pooling as _Pooling
from xpnet.book.common.layers import Relu as _Relu
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import initial_weight as _initial_weight
from xpnet.book.net import zeros as _zeros


class SimpleConvNet(_BookNetwork):
    """Convolution(filter_num filters of filter_size²) → Relu → 2×2 max pooling → Affine(hidden_size)
    → Relu → Affine(output_size) → SoftmaxWithLoss; weights ~ N(0, weight_init_std²).

    The pooled size is computed as the book's, filter_num·(conv_output_size/2)² truncated, which
    fits the pooling only when the convolution's output side is even (28 - 5 + 1 = 24 for MNIST).
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={'filter_num':30, 'filter_size':5, 'pad':0, 'stride':1},  # noqa: B006
                 hidden_size=100, output_size=10, weight_init_std=0.01):  # fmt: skip
        filter_num = conv_param["filter_num"]
        filter_size = conv_param["filter_size"]
        filter_pad = conv_param["pad"]
        filter_stride = conv_param["stride"]
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))
        W1 = _initial_weight(weight_init_std, filter_num, input_dim[0], filter_size, filter_size)
        W2 = _initial_weight(weight_init_std, pool_output_size, hidden_size)
        W3 = _initial_weight(weight_init_std, hidden_size, output_size)
        self._assemble([
            ("Conv1", _Convolution(W1, _zeros(filter_num), filter_stride, filter_pad)),
            ("Relu1", _Relu()),
            ("Pool1", _Pooling(pool_h=2, pool_w=2, stride=2)),
            ("Affine1", _Affine(W2, _zeros(hidden_size))),
            ("Relu2", _Relu()),
            ("Affine2", _Affine(W3, _zeros(output_size))),
        ], images=True)  # fmt: skip

    def predict(self, x):
        return self._predict(x, True)

    def loss(self, x, t):
        return self._loss(x, t, True)

    def accuracy(self, x, t, batch_size=100):
        """The book's batched accuracy (see BookNetwork._accuracy_in_batches for its remainder)."""
        return self._accuracy_in_batches(x, t, batch_size)
