"""The book's ch08/deep_convnet.py: DeepConvNet, the network of chapter 8 (over 99% on MNIST), as
xpnet's layers with the book's options (xpnet.book.common.layers), initial weights and layer list.

    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    affine - relu - dropout - affine - dropout - softmax
"""

import pickle  # noqa: F401 (the book's module imports it)
from collections import OrderedDict  # noqa: F401

import numpy as np

from xpnet.book.common.layers import *  # noqa: F403
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import Convolution as _Convolution
from xpnet.book.common.layers import Dropout as _Dropout
from xpnet.book.common.layers import Pooling as _Pooling
from xpnet.book.common.layers import Relu as _Relu
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import initial_weight as _initial_weight
from xpnet.book.net import zeros as _zeros


class DeepConvNet(_BookNetwork):
    """Six 3×3 convolutions (16, 16, 32, 32, 64, 64 filters), He initial weights, ``layers`` a list
    of 20 layers as the book's. As in the book, the initial scales assume the default conv_params
    and a 64·4·4 input to the first Affine, and both dropouts have ratio 0.5."""

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param_1 = {'filter_num':16, 'filter_size':3, 'pad':1, 'stride':1},  # noqa: B006
                 conv_param_2 = {'filter_num':16, 'filter_size':3, 'pad':1, 'stride':1},  # noqa: B006
                 conv_param_3 = {'filter_num':32, 'filter_size':3, 'pad':1, 'stride':1},  # noqa: B006
                 conv_param_4 = {'filter_num':32, 'filter_size':3, 'pad':2, 'stride':1},  # noqa: B006
                 conv_param_5 = {'filter_num':64, 'filter_size':3, 'pad':1, 'stride':1},  # noqa: B006
                 conv_param_6 = {'filter_num':64, 'filter_size':3, 'pad':1, 'stride':1},  # noqa: B006
                 hidden_size=50, output_size=10):  # fmt: skip
        # the book's fan-ins, fixed for its default conv_params (its own TODO: compute them)
        pre_node_nums = np.array([1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, hidden_size])  # fmt: skip
        weight_init_scales = np.sqrt(2.0 / pre_node_nums)
        conv_params = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                       conv_param_6]  # fmt: skip
        convs = []
        pre_channel_num = input_dim[0]
        for idx, conv_param in enumerate(conv_params):
            n, size = conv_param["filter_num"], conv_param["filter_size"]
            W = _initial_weight(weight_init_scales[idx], n, pre_channel_num, size, size)
            convs.append(_Convolution(W, _zeros(n), conv_param["stride"], conv_param["pad"]))
            pre_channel_num = n
        W7 = _initial_weight(weight_init_scales[6], 64 * 4 * 4, hidden_size)
        W8 = _initial_weight(weight_init_scales[7], hidden_size, output_size)
        layers = []
        for i, conv in enumerate(convs):
            layers += [conv, _Relu()]
            if i % 2 == 1:
                layers.append(_Pooling(pool_h=2, pool_w=2, stride=2))
        layers += [
            _Affine(W7, _zeros(hidden_size)),
            _Relu(),
            _Dropout(0.5),
            _Affine(W8, _zeros(output_size)),
            _Dropout(0.5),
        ]
        self._assemble([(None, layer) for layer in layers], images=True, as_list=True)

    def predict(self, x, train_flg=False):
        return self._predict(x, train_flg)

    def loss(self, x, t):
        """The loss with dropout in training mode, as the book's (it draws new masks)."""
        return self._loss(x, t, True)

    def accuracy(self, x, t, batch_size=100):
        """The book's batched accuracy (see BookNetwork._accuracy_in_batches for its remainder)."""
        return self._accuracy_in_batches(x, t, batch_size)
