"""The book's ch04/two_layer_net.py: TwoLayerNet, the sigmoid network of chapter 4 whose
``predict`` returns softmax probabilities, as xpnet's layers (Affine → Sigmoid → Affine) with the
book's loss; ``gradient`` is backpropagation through them, the same numbers as the book's
hand-derived formulas of chapter 4."""

import numpy as np

from xpnet.book.common.functions import *  # noqa: F403
from xpnet.book.common.functions import softmax as _softmax
from xpnet.book.common.gradient import numerical_gradient  # noqa: F401
from xpnet.book.common.layers import Affine as _Affine
from xpnet.book.common.layers import Sigmoid as _Sigmoid
from xpnet.book.net import BookNetwork as _BookNetwork
from xpnet.book.net import initial_weight as _initial_weight
from xpnet.book.net import zeros as _zeros


class TwoLayerNet(_BookNetwork):
    """input → Affine → sigmoid → Affine → softmax; weights ~ N(0, weight_init_std²)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        W1 = _initial_weight(weight_init_std, input_size, hidden_size)
        W2 = _initial_weight(weight_init_std, hidden_size, output_size)
        self._assemble([
            ("Affine1", _Affine(W1, _zeros(hidden_size))),
            ("Sigmoid1", _Sigmoid()),
            ("Affine2", _Affine(W2, _zeros(output_size))),
        ])  # fmt: skip

    def predict(self, x):
        """The softmax probabilities of each class."""
        return _softmax(self._predict(x, True))

    def loss(self, x, t):
        """Cross-entropy of predict(x) against t, with the book's 1e-7 guard."""
        return self._loss(x, t, True)

    def accuracy(self, x, t):
        """Fraction of rows whose most probable class is that of the one-hot row of t."""
        y = self.predict(x)
        xp = self._be.xp
        t = self._t(t)
        hits = xp.sum(xp.astype(xp.argmax(y, axis=1) == xp.argmax(t, axis=1), xp.int64))
        return np.float64(int(hits) / float(x.shape[0]))
