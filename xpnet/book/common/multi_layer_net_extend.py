"""The book's common/multi_layer_net_extend.py: MultiLayerNetExtend, MultiLayerNet with the book's
weight decay, dropout and batch normalization (xpnet's layers with the book's options)."""

from collections import OrderedDict  # noqa: F401

import numpy as np  # noqa: F401 (the book's module exports np)

from xpnet.book.common.gradient import numerical_gradient  # noqa: F401
from xpnet.book.common.layers import *  # noqa: F403
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import BatchNormalization as _BatchNormalization
from xpnet.book.common.layers import Dropout as _Dropout
from xpnet.book.common.multi_layer_net import _ACTIVATIONS, _initial_params
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import ones as _ones
from xpnet.book.net import zeros as _zeros
from xpnet.errors import choose as _choose


class MultiLayerNetExtend(_BookNetwork):
    """MultiLayerNet with weight decay, dropout and batch normalization.

    Per hidden layer: Affine → BatchNorm (``use_batchnorm``) → activation → Dropout
    (``use_dropout``, ratio ``dropout_ration``, the book's spelling); then Affine →
    SoftmaxWithLoss. The dropout is the book's (masks from np.random, scaled at test time), the
    batch normalization too (xpnet.book.common.layers). ``predict`` and ``loss`` take the book's
    ``train_flg`` (False by default); ``gradient`` runs with it True.
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation='relu', weight_init_std='relu', weight_decay_lambda=0,
                 use_dropout = False, dropout_ration = 0.5, use_batchnorm=False):  # fmt: skip
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden_size_list)
        self.use_dropout = use_dropout
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        activation_layer = _ACTIVATIONS[_choose("activation", activation, tuple(_ACTIVATIONS))]
        p = _initial_params([input_size, *hidden_size_list, output_size], weight_init_std)
        layers = []
        for idx in range(1, self.hidden_layer_num + 1):
            layers.append((f"Affine{idx}", _Affine(p[f"W{idx}"], p[f"b{idx}"])))
            if use_batchnorm:
                n = hidden_size_list[idx - 1]
                layers.append((f"BatchNorm{idx}", _BatchNormalization(_ones(n), _zeros(n))))
            layers.append((f"Activation_function{idx}", activation_layer()))
            if use_dropout:
                layers.append((f"Dropout{idx}", _Dropout(dropout_ration)))
        idx = self.hidden_layer_num + 1
        layers.append((f"Affine{idx}", _Affine(p[f"W{idx}"], p[f"b{idx}"])))
        self._assemble(layers, weight_decay_lambda)

    def predict(self, x, train_flg=False):
        return self._predict(x, train_flg)

    def loss(self, x, t, train_flg=False):
        """The loss of (x, t) plus ½·λ·Σ‖W‖²; dropout and batch norm in training mode if train_flg."""
        return self._loss(x, t, train_flg)

    def _numerical_loss(self, x, t):
        return self.loss(x, t, train_flg=True)

    def _grad_keys(self):
        """W1, b1, gamma1, beta1, W2, ...: the order of the book's gradient dicts."""
        keys = []
        for idx in range(1, self.hidden_layer_num + 2):
            keys += [f"W{idx}", f"b{idx}"]
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                keys += [f"gamma{idx}", f"beta{idx}"]
        return keys
