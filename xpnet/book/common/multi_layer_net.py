"""The book's common/multi_layer_net.py: MultiLayerNet, a fully connected network of xpnet's layers
(xpnet.book.net) with the book's initial weights, names and methods."""

from collections import OrderedDict  # noqa: F401

import numpy as np  # noqa: F401 (the book's module exports np)

from xpnet.book.common.gradient import numerical_gradient  # noqa: F401
from xpnet.book.common.layers import *  # noqa: F403
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import Relu as _Relu
from xpnet.book.common.layers import Sigmoid as _Sigmoid
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import initial_weight as _initial_weight
from xpnet.book.net import zeros as _zeros
from xpnet.errors import choose as _choose
from xpnet.nn.initializers import init_std as _init_std

_ACTIVATIONS = {"sigmoid": _Sigmoid, "relu": _Relu}
#: the book's names for the initial scales: 'relu' is He's √(2/n), 'sigmoid' "Xavier's" √(1/n)
_INIT_NAMES = {"relu": "he", "he": "he", "sigmoid": "xavier", "xavier": "xavier"}


def _initial_params(sizes, weight_init_std):
    """W1, b1, W2, b2, ... as the book draws them: W_i = scale·np.random.randn(n_(i−1), n_i)."""
    params = {}
    init = _INIT_NAMES.get(str(weight_init_std).lower(), weight_init_std)
    for idx in range(1, len(sizes)):
        scale = _init_std(init, sizes[idx - 1], sizes[idx])
        params[f"W{idx}"] = _initial_weight(scale, sizes[idx - 1], sizes[idx])
        params[f"b{idx}"] = _zeros(sizes[idx])
    return params


class MultiLayerNet(_BookNetwork):
    """Fully connected network: (Affine → activation) per hidden layer → Affine → SoftmaxWithLoss.

    input_size: 784 for MNIST; hidden_size_list: e.g. [100, 100, 100]; output_size: 10;
    activation: 'relu' or 'sigmoid'; weight_init_std: a std such as 0.01, or 'relu'/'he' (He's
    √(2/n)) or 'sigmoid'/'xavier' (√(1/n)); weight_decay_lambda: the L2 penalty ½·λ·Σ‖W‖² (its
    gradient λ·W is added to ``dW`` of each Affine, where the book adds it in ``gradient`` only).
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation='relu', weight_init_std='relu', weight_decay_lambda=0):  # fmt: skip
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden_size_list)
        self.weight_decay_lambda = weight_decay_lambda
        activation_layer = _ACTIVATIONS[_choose("activation", activation, tuple(_ACTIVATIONS))]
        sizes = [input_size, *hidden_size_list, output_size]
        p = _initial_params(sizes, weight_init_std)
        layers = []
        for idx in range(1, self.hidden_layer_num + 1):
            layers.append((f"Affine{idx}", _Affine(p[f"W{idx}"], p[f"b{idx}"])))
            layers.append((f"Activation_function{idx}", activation_layer()))
        idx = self.hidden_layer_num + 1
        layers.append((f"Affine{idx}", _Affine(p[f"W{idx}"], p[f"b{idx}"])))
        self._assemble(layers, weight_decay_lambda)

    def predict(self, x):
        return self._predict(x, True)

    def loss(self, x, t):
        """The loss of (x, t) plus ½·λ·Σ‖W‖²."""
        return self._loss(x, t, True)
