"""FusedStep: a fully connected network's forward and backward pass with a backend's kernels."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import NamedTuple

from ..backend import namespace_of
from ..nn.conv import Convolution
from ..nn.layers import Affine, ReLU, Sigmoid, SoftmaxWithLoss, Tanh
from .conv_step import ConvStep

ACTIVATION_NAMES = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


class Cuts(NamedTuple):
    """Where one thread cuts a product to sum it as a threaded BLAS does (`product`): `k`,
    positions along the sum; `rows`, the number of threads whose share of the rows is emulated
    (0: none)."""

    k: tuple[int, ...] = ()
    rows: int = 0


def thread_rows(n: int, threads: int) -> list[int]:
    """Bounds of the row blocks OpenBLAS's threaded level 3 computes x @ W in, for a W of few
    columns: n rows in `threads` shares of ⌈left / threads left⌉, each share in two halves of
    ⌈share / 2⌉ (its two B buffers, DIVIDE_RATE). NumPy's row-major product is BLAS's
    column-major Wᵀxᵀ, so x's rows are BLAS's columns, the dimension it splits when W's few
    columns (BLAS's rows) leave nothing to share."""
    bounds, left = [0], n
    for j in range(threads):
        share = -(-left // (threads - j))
        left -= share
        start, end = bounds[-1], bounds[-1] + share
        half = -(-share // 2)
        bounds += [min(s + half, end) for s in range(start, end, half)] if share else []
    return bounds


def product(x, W, k=(), rows=0):
    """x @ W, summed the way a threaded BLAS sums it when asked (so that one thread can give
    the bits all threads give, xpnet.training.exact): with `k` (positions along the sum), the
    partial products over the ranges they bound, added in order (OpenBLAS 0.3.31 on two threads
    on some CPUs: halves of MNIST's 784); with `rows` (a thread count), each of `thread_rows`'
    blocks as a product of its own (OpenBLAS 0.3.31's Haswell kernels on two threads: quarters)."""
    if rows:
        bounds = thread_rows(x.shape[0], rows)
        if len(bounds) <= 2:  # one block: the plain sum
            return product(x, W, k)
        parts = [product(x[lo:hi, ...], W, k) for lo, hi in itertools.pairwise(bounds)]
        return namespace_of(x).concat(parts, axis=0)
    if not k:
        return x @ W
    bounds = (0, *k, W.shape[0])
    out = x[:, bounds[0] : bounds[1]] @ W[bounds[0] : bounds[1], :]
    for lo, hi in itertools.pairwise(bounds[1:]):
        out += x[:, lo:hi] @ W[lo:hi, :]
    return out


class FusedStep:
    """Forward and backward of Affine → act → … → Affine → SoftmaxWithLoss with a backend's kernels.

    Built by `plan(net)`; reads the weights from the net's layers at each call and leaves every
    gradient in the layers (``dW``, ``db``), weight decay included. Layer caches (Affine.x,
    ReLU.mask) are not filled: a backward pass by hand needs a forward pass through the layers.
    Inputs are not checked: this is for data checked once (the Trainer's), with integer labels.
    """

    def __init__(self, net, affines: list[Affine], activations: list[str], kernels):
        self.net = net
        self.affines = affines
        self.activations = activations
        self.kernels = kernels
        self.classes = affines[-1].W.shape[1]
        #: per Affine, the `Cuts` `predict` sums its product at (`product`); training never cuts
        self.cuts: list[Cuts] | None = None

    @staticmethod
    def uses(net) -> list[str] | None:
        """The activations `net`'s fast step needs kernels for, or None when it has none: its
        layers are neither Affine → act → … → Affine → SoftmaxWithLoss nor a convolutional
        network ending in SoftmaxWithLoss (ConvStep.plan then decides what it can run)."""
        layers = list(net.layers.values())
        if type(net.last_layer) is not SoftmaxWithLoss:
            return None
        if net.last_layer.delta:  # the book's guarded loss: the kernels compute the exact one
            return None
        if FusedStep._dense(layers):
            return sorted({ACTIVATION_NAMES[type(a)] for a in layers[1::2]})
        if any(type(layer) is Convolution for layer in layers):
            return sorted(
                {ACTIVATION_NAMES[type(a)] for a in layers if type(a) in ACTIVATION_NAMES}
            )
        return None

    @staticmethod
    def _dense(layers) -> bool:
        return (
            len(layers) % 2 == 1
            and all(type(a) is Affine for a in layers[0::2])
            and all(type(a) in ACTIVATION_NAMES for a in layers[1::2])
        )

    @classmethod
    def plan(cls, net, kernels):
        """The fast step for `net` with `kernels`: a FusedStep for a fully connected stack, a
        ConvStep (conv_step.py) for a convolutional network whose kernels have a convolution
        block, or None (no kernels, or layers of another form: then the layers run).
        xpnet.fast.plan(net) finds the backend's kernels."""
        if kernels is None or cls.uses(net) is None:
            return None
        layers = list(net.layers.values())
        if not cls._dense(layers):
            return ConvStep.plan(net, kernels)
        names = [ACTIVATION_NAMES[type(a)] for a in layers[1::2]]
        return cls(net, layers[0::2], names, kernels)

    def _hidden(self, x, cuts=None) -> list:
        """[x, h1, h2, ...]: the input (flattened) and every hidden layer's output."""
        k = self.kernels
        if x.ndim != 2:
            x = namespace_of(x).reshape(x, (x.shape[0], -1))
        outputs = [x]
        for i, (affine, act) in enumerate(zip(self.affines[:-1], self.activations, strict=True)):
            a = product(outputs[-1], affine.W, *(cuts[i] if cuts else ()))
            outputs.append(k.bias_act(a, affine.b, act))
        return outputs

    def frozen(self, cuts=None) -> FusedStep:
        """A step that predicts with copies of the weights as they are now (an evaluation on
        another thread while the steps go on), summing at `cuts`; it has no network, so it cannot
        train."""
        copies = []
        for affine in self.affines:
            xp = namespace_of(affine.W)
            copies.append(SimpleNamespace(W=xp.asarray(affine.W, copy=True),
                                          b=xp.asarray(affine.b, copy=True)))  # fmt: skip
        return FusedStep(None, copies, list(self.activations), self.kernels).cut(cuts)

    def cut(self, cuts) -> FusedStep:
        """This step's weights (the layers' own), predicting with its products summed at `cuts`
        (one `Cuts` per Affine: `product`); None: the plain products."""
        step = FusedStep(self.net, self.affines, self.activations, self.kernels)
        step.cuts = None if cuts is None else [Cuts(tuple(c.k), int(c.rows)) for c in cuts]
        return step

    def predict(self, x):
        """Scores (before softmax) for a batch, keeping nothing for a backward pass."""
        last, cuts = self.affines[-1], self.cuts
        h = self._hidden(x, cuts)[-1]
        return product(h, last.W, *(cuts[-1] if cuts else ())) + last.b

    def forward_backward(self, x, t):
        """The mean loss of batch (x, t), decay included; every gradient is left in the layers."""
        net = self.net
        if t.ndim != 1:  # one-hot rows: the layers handle them
            return net.forward_backward(x, t, check=False, layers=True)
        k = self.kernels
        outputs = self._hidden(x)
        last = self.affines[-1]
        loss, dz = k.softmax_xent(outputs[-1] @ last.W, last.b, t)
        for i in range(len(self.affines) - 1, -1, -1):
            affine = self.affines[i]
            affine.dW = outputs[i].T @ dz
            affine.db = k.colsum(dz)
            if i:
                dz = k.act_grad(dz @ affine.W.T, outputs[i], self.activations[i - 1])
        loss = loss + net.decay_loss()
        net.add_decay_grads()
        net.last_layer.loss = loss
        return loss
