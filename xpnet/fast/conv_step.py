"""ConvStep: a convolutional network's training step as a plan of fused stages (NumPy).

The network's layers are read in order and grouped into stages:

- Convolution → ReLU → 2×2 max pooling (stride 2), or Convolution → ReLU: one ``ConvBlock``
  (the backend's kernels: conv_numpy.py on NumPy);
- Affine → activation: a product (split by rows over the worker threads when it is large), then
  bias + activation in one kernel (the kernels FusedStep uses);
- the last Affine with the network's SoftmaxWithLoss: the product, then the loss layer itself;
- any other layer (Dropout, BatchNormalization, a pooling of another shape...): the layer itself.

Every stage computes what its layers compute, in the same order, so the loss and the gradients
are the layers' own numbers, bit for bit (tests/test_fast_conv.py). The step reads the weights
from the layers at every call and leaves every gradient in the layers (dW, db), weight decay
included, as FusedStep does; the layers' caches are not filled by it.
"""

from __future__ import annotations

import numpy as np

from ..nn.conv import Convolution
from ..nn.layers import Affine, ReLU, Sigmoid, SoftmaxWithLoss, Tanh
from ..nn.pooling import Pooling
from .threads import workers as default_workers

_ACTIVATIONS = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


def _matmul(a, b, workers):
    """a @ b; split over the workers by rows of the result when it is large (the same numbers:
    each entry is still one dot product, see threads.MIN_PIECE)."""
    n, k = a.shape
    parts = workers.parts(n, n * k * b.shape[1], a.dtype)
    if len(parts) == 1:
        return a @ b
    out = np.empty((n, b.shape[1]), np.result_type(a, b))
    workers.run(lambda r: np.matmul(a[r[0] : r[1]], b, out=out[r[0] : r[1]]), parts)
    return out


class _Dense:
    """Affine → activation: the product, then bias + activation in one kernel."""

    def __init__(self, affine, act: str, kernels, workers):
        self.affine, self.act, self.kernels, self.workers = affine, act, kernels, workers

    def forward(self, x, train: bool):
        shape = x.shape
        x = x.reshape(shape[0], -1)
        h = self.kernels.bias_act(_matmul(x, self.affine.W, self.workers), self.affine.b, self.act)
        if train:
            self.x, self.h, self.shape = x, h, shape
        return h

    def backward(self, dh, input_grad: bool):
        affine, w = self.affine, self.workers
        dz = self.kernels.act_grad(dh, self.h, self.act)  # dh is the next stage's new array
        affine.dW = _matmul(self.x.T, dz, w)
        affine.db = self.kernels.colsum(dz)
        if not input_grad:
            return None
        return _matmul(dz, affine.W.T, w).reshape(self.shape)


class _Loss:
    """The last Affine and the network's SoftmaxWithLoss layer (its own forward and backward)."""

    def __init__(self, affine, loss_layer, workers):
        self.affine, self.loss_layer, self.workers = affine, loss_layer, workers

    def scores(self, x):
        x = x.reshape(x.shape[0], -1)
        return x, _matmul(x, self.affine.W, self.workers) + self.affine.b

    def forward_backward(self, x, t, input_grad: bool):
        """(loss, dL/dx): the loss layer's loss of this Affine's scores, and the Affine's grads."""
        shape = x.shape
        x, scores = self.scores(x)
        loss = self.loss_layer.forward(scores, t)
        dz = self.loss_layer.backward(1.0)
        affine = self.affine
        affine.dW = _matmul(x.T, dz, self.workers)
        affine.db = np.sum(dz, axis=0)
        dx = _matmul(dz, affine.W.T, self.workers).reshape(shape) if input_grad else None
        return loss, dx


class _Layer:
    """A layer the plan has no kernel for: its own forward and backward."""

    def __init__(self, layer):
        self.layer = layer

    def forward(self, x, train: bool):
        return self.layer.forward(x, train)

    def backward(self, dh, input_grad: bool):
        return self.layer.backward(dh, input_grad=input_grad)


def _is_pool_2x2(layer) -> bool:
    return type(layer) is Pooling and layer.tiles and (layer.pool_h, layer.pool_w) == (2, 2)


class ConvStep:
    """A convolutional network's forward and backward pass as fused stages, split over threads.

    Built by `plan(net)`; the same interface as FusedStep (``forward_backward``, ``predict``,
    ``classes``). Labels are integer classes or one-hot rows (the loss layer takes both); inputs
    are not checked (Network.forward_backward checks them before calling this).
    """

    def __init__(self, net, stages: list, loss: _Loss, workers):
        self.net, self.stages, self.loss, self.workers = net, stages, loss, workers
        self.classes = loss.affine.W.shape[1]

    @classmethod
    def plan(cls, net, kernels, workers=None) -> ConvStep | None:
        """A ConvStep for `net`, or None: it needs a Convolution → ReLU, a last Affine and a
        SoftmaxWithLoss, and kernels with a convolution block (NumPy's)."""
        make_block = getattr(kernels, "conv_block", None)
        layers = list(net.layers.values())
        if make_block is None or type(net.last_layer) is not SoftmaxWithLoss:
            return None
        if not layers or type(layers[-1]) is not Affine:
            return None
        w = workers if workers is not None else default_workers()
        stages, i, blocks = [], 0, 0
        while i < len(layers) - 1:
            layer, after = layers[i], layers[i + 1]
            if type(layer) is Convolution and type(after) is ReLU:
                pool = i + 2 < len(layers) and _is_pool_2x2(layers[i + 2])
                stages.append(make_block(layer, pool, w))
                blocks += 1
                i += 3 if pool else 2
            elif type(layer) is Affine and type(after) in _ACTIVATIONS:
                stages.append(_Dense(layer, _ACTIVATIONS[type(after)], kernels, w))
                i += 2
            else:
                stages.append(_Layer(layer))
                i += 1
        if not blocks:  # a fully connected network: FusedStep's, or the layers'
            return None
        return cls(net, stages, _Loss(layers[-1], net.last_layer, w), w)

    def forward_backward(self, x, t):
        """The mean loss of batch (x, t), decay included; every gradient is left in the layers."""
        net = self.net
        with self.workers.single_blas():
            h = x
            for stage in self.stages:
                h = stage.forward(h, True)
            loss, d = self.loss.forward_backward(h, t, input_grad=bool(self.stages))
            for i in range(len(self.stages) - 1, -1, -1):
                d = self.stages[i].backward(d, input_grad=i > 0)
        loss = loss + net.decay_loss()  # as Network.forward_backward adds it
        net.add_decay_grads()
        return loss

    def predict(self, x):
        """Scores (before softmax) for a batch, keeping nothing for a backward pass."""
        with self.workers.single_blas():
            h = x
            for stage in self.stages:
                h = stage.forward(h, False)
            return self.loss.scores(h)[1]
