"""Networks: a sequence of layers ending in a loss layer, and the book's TwoLayerNet on top of it."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from .backend import Backend, Random, backend_of, namespace_of, resolve
from .errors import BackendError, ConfigError, ShapeError, choose
from .fused import FusedStep, has_views
from .initializers import init_std
from .layers import ACTIVATIONS, Affine, Layer, SoftmaxWithLoss


@dataclass
class FlatParams:
    """All parameters in one 1-D array, all gradients in another; `layout` says where each is.

    layout: [(key, start, stop, shape)], in the network's parameter order.
    """

    params: Any
    grads: Any
    layout: list


class Network:
    """Layers applied in order, then a loss layer; backprop runs them in reverse.

    Layers are named by kind and position ("Affine1", "ReLU1", "Affine2"), and parameters by
    attribute and position ("W1", "b1", "W2", "b2"), as in the book. ``params`` and ``grads`` are
    dicts of the layers' own arrays, so an optimizer that updates ``params[key]`` in place updates
    the layer.

    With ``fast=True`` (the default of MultiLayerNet and TwoLayerNet) on NumPy, CuPy and PyTorch,
    the parameters are copied into one flat buffer and the layers keep views of it (so arrays you
    passed to ``Affine(W, b)`` are no longer the layer's), the gradients likewise, and a network of
    Affine and activation layers ending in SoftmaxWithLoss trains through ``xpnet.fused`` (fewer,
    fused operations; the same numbers up to rounding). The gradient arrays are then reused: each
    backward pass overwrites the previous one's, so copy them to keep them.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss_layer=None,
        weight_decay: float = 0.0,
        fast: bool = False,
    ):
        if not layers:
            raise ConfigError("a network needs at least one layer")
        self.layers: OrderedDict[str, Layer] = OrderedDict()
        self._slots: list[tuple[str, Layer, str]] = []  # (param key, layer, attribute)
        counts: dict[str, int] = {}
        for layer in layers:
            kind = type(layer).__name__
            counts[kind] = counts.get(kind, 0) + 1
            layer.name = f"{kind}{counts[kind]}"
            self.layers[layer.name] = layer
            self._slots += [(f"{p}{counts[kind]}", layer, p) for p in layer.param_names]
        if not self._slots:
            raise ConfigError("a network needs at least one layer with parameters")
        self.last_layer = loss_layer if loss_layer is not None else SoftmaxWithLoss()
        self.weight_decay = float(weight_decay)
        self.flat: FlatParams | None = None
        self._fused = None
        self._label_dtypes: set = set()
        if fast:
            self._pack()

    def _pack(self) -> None:
        """Move every parameter into one flat buffer (and make the gradients views of another)."""
        ref = self._first_param()
        xp = namespace_of(ref)
        if not has_views(xp):
            return
        layout, offset = [], 0
        for key, layer, attr in self._slots:
            n = math.prod(getattr(layer, attr).shape)
            layout.append((key, offset, offset + n, tuple(getattr(layer, attr).shape)))
            offset += n
        kw = {"dtype": ref.dtype, "device": device_of(ref)}
        flat = FlatParams(xp.zeros(offset, **kw), xp.zeros(offset, **kw), layout)
        for (_, layer, attr), (_, start, stop, shape) in zip(self._slots, layout, strict=True):
            view = xp.reshape(flat.params[start:stop], shape)
            view[...] = getattr(layer, attr)
            setattr(layer, attr, view)
            setattr(layer, "d" + attr, xp.reshape(flat.grads[start:stop], shape))
        self.flat = flat
        self._grad_views = self.grads
        self._fused = FusedStep.plan(list(self.layers.values()), self.last_layer)

    # -- parameters ---------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        """Parameter arrays by key ("W1", "b1", ...), the layers' own objects."""
        return {key: getattr(layer, attr) for key, layer, attr in self._slots}

    @property
    def grads(self) -> dict:
        """Gradients from the last backward pass, keyed like ``params``."""
        return {key: getattr(layer, "d" + attr) for key, layer, attr in self._slots}

    def set_params(self, params: dict) -> None:
        """Copy new values into every parameter (same keys and shapes), e.g. from a checkpoint.

        The arrays are written in place, so views (the flat buffer) and references held by an
        optimizer stay valid; `params` must be on the network's backend and device.
        """
        current = self.params
        if set(params) != set(current):
            raise ShapeError(
                f"parameter names differ: the network has {sorted(current)}, got {sorted(params)}"
            )
        for key, layer, _ in self._slots:
            new, old = params[key], current[key]
            if tuple(new.shape) != tuple(old.shape):
                raise ShapeError(
                    f"{key} of {layer.name} has shape {tuple(old.shape)}, got {tuple(new.shape)}"
                )
        for key, _, _ in self._slots:
            current[key][...] = params[key]

    def _first_param(self):
        _, layer, attr = self._slots[0]
        return getattr(layer, attr)

    @property
    def backend(self) -> Backend:
        """The backend and device the parameters live on."""
        return backend_of(self._first_param())

    @property
    def dtype(self):
        """The parameters' dtype."""
        return self._first_param().dtype

    # -- the book's interface -----------------------------------------------------------------

    def _prepare(self, x, what: str = "input"):
        """Check that `x` lives where the parameters do, and cast inputs to their dtype."""
        ref = self._first_param()
        if type(x) is not type(ref):
            try:
                array_namespace(x, ref)
            except TypeError:
                raise BackendError(
                    f"the {what} is a {type(x).__module__}.{type(x).__name__} but the network's "
                    f"weights are {type(ref).__module__}.{type(ref).__name__}; move the {what} with "
                    f"net.backend.asarray(...) (from NumPy) first"
                ) from None
        if device_of(x) != device_of(ref):
            raise BackendError(
                f"the {what} is on device {device_of(x)} but the network is on {device_of(ref)}; "
                f"move it to the network's device first"
            )
        if what == "input" and x.dtype != ref.dtype:
            x = namespace_of(x).astype(x, ref.dtype)
        return x

    def predict(self, x, train: bool = False):
        """Scores (pre-softmax outputs) for a batch x."""
        x = self._prepare(x)
        if not train and self._fused is not None:
            return self._fused.predict(x)
        for layer in self.layers.values():
            x = layer.forward(x, train)
        return x

    def _decay_loss(self, xp):
        return (
            0.5
            * self.weight_decay
            * sum(
                xp.sum(getattr(layer, p) ** 2)
                for layer in self.layers.values()
                for p in layer.decay_names
            )
        )

    def loss(self, x, t, train: bool = True):
        """Mean loss of batch (x, t) plus the L2 penalty ½·λ·Σ‖W‖², as a 0-d device array."""
        scores = self.predict(x, train=train)
        loss = self.last_layer.forward(scores, self._prepare(t, "labels"))
        if self.weight_decay:
            loss = loss + self._decay_loss(array_namespace(scores))
        return loss

    def forward_backward(self, x, t):
        """One forward and one backward pass: returns the loss and leaves every gradient in `grads`.

        The first layer computes no dL/dx, which nothing would use.
        """
        fused = self._fused is not None and t.ndim == 1 and self._integer_labels(t)
        if fused:
            loss = self._fused.forward_backward(self._prepare(x), self._prepare(t, "labels"))
        else:
            loss = self.loss(x, t, train=True)
            dout = self.last_layer.backward(1.0)
            layers = list(self.layers.values())
            for i in range(len(layers) - 1, -1, -1):
                dout = layers[i].backward(dout, input_grad=i > 0)
            if self.flat is not None:  # keep the gradients in the flat buffer
                for key, layer, attr in self._slots:
                    view = self._grad_views[key]
                    view[...] = getattr(layer, "d" + attr)
                    setattr(layer, "d" + attr, view)
        if self.weight_decay:
            xp = namespace_of(loss)
            if fused:  # the reference path's loss() already holds the penalty
                loss = loss + self._decay_loss(xp)
            for layer in self.layers.values():
                for p in layer.decay_names:
                    grad = getattr(layer, "d" + p)
                    grad += self.weight_decay * getattr(layer, p)
        return loss

    def _integer_labels(self, t) -> bool:
        if t.dtype not in self._label_dtypes:
            if not namespace_of(t).isdtype(t.dtype, "integral"):
                return False
            self._label_dtypes.add(t.dtype)
        return True

    def step(self, optimizer) -> None:
        """Update the parameters from the last gradients: at once, when they share a flat buffer."""
        if self.flat is not None and hasattr(optimizer, "update_flat"):
            optimizer.update_flat(self.flat)
        else:
            optimizer.update(self.params, self.grads)

    def gradient(self, x, t) -> dict:
        """Gradients of the loss with respect to every parameter, by backpropagation."""
        self.forward_backward(x, t)
        return self.grads

    def count_correct(self, x, t, batch_size: int = 10_000):
        """Number of samples whose top score is the true class, as a 0-d device array.

        Evaluated in chunks of `batch_size` so a whole training set fits in memory.
        """
        x = self._prepare(x)
        t = self._prepare(t, "labels")
        xp = array_namespace(x)
        correct = None
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            scores = self.predict(x[start:stop, ...], train=False)
            labels = t[start:stop, ...]
            if labels.ndim == 2:
                labels = xp.argmax(labels, axis=1)
            hits = xp.sum(xp.astype(xp.argmax(scores, axis=1) == labels, xp.int64))
            correct = hits if correct is None else correct + hits
        return correct

    def accuracy(self, x, t, batch_size: int = 10_000) -> float:
        """Fraction of samples classified correctly (one host read at the end)."""
        if x.shape[0] == 0:
            raise ShapeError("accuracy of an empty batch is undefined")
        return int(self.count_correct(x, t, batch_size)) / x.shape[0]

    def __repr__(self) -> str:
        inner = " -> ".join(repr(layer) for layer in self.layers.values())
        return f"{type(self).__name__}({inner} -> {type(self.last_layer).__name__})"


class MultiLayerNet(Network):
    """Fully connected net: input -> (Affine -> activation) × len(hidden_sizes) -> Affine -> softmax.

    `weight_init` is a fixed std (the book's 0.01) or "xavier"/"lecun" (√(1/n)), "glorot"
    (√(2/(n_in+n_out))) or "he" (√(2/n)); weights are drawn on the host from a NumPy generator
    seeded with `seed`, so every backend starts from the same numbers, and biases start at zero.
    `weight_decay` adds ½·λ·Σ‖W‖² to the loss.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init="he",
        weight_decay: float = 0.0,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
        fast: bool = True,
    ):
        sizes = [input_size, *hidden_sizes, output_size]
        if any(not isinstance(n, int) or n <= 0 for n in sizes):
            raise ConfigError(f"layer sizes must be positive integers, got {sizes}")
        if weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        activation_cls = ACTIVATIONS[choose("activation", activation, tuple(ACTIVATIONS))]
        be = resolve(device, backend)
        rng = Random(seed)
        layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            W = rng.normal(
                (n_in, n_out),
                init_std(weight_init, n_in, n_out),
                xp=be.xp,
                device=be.device,
                dtype=dtype,
            )
            layers.append(Affine(W, be.zeros((n_out,), dtype)))
            if i < len(sizes) - 2:
                layers.append(activation_cls())
        super().__init__(layers, SoftmaxWithLoss(), weight_decay, fast)
        self.sizes = sizes
        self.config = {
            "input_size": input_size,
            "hidden_sizes": list(hidden_sizes),
            "output_size": output_size,
            "activation": activation,
            "weight_init": weight_init,
            "weight_decay": weight_decay,
        }


class TwoLayerNet(MultiLayerNet):
    """The slides' network: input -> Affine1 -> ReLU1 -> Affine2 -> SoftmaxWithLoss."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        *,
        device="cpu",
        backend: str | None = None,
        dtype="float32",
        seed: int | None = 0,
        fast: bool = True,
    ):
        super().__init__(
            input_size, [hidden_size], output_size, "relu", weight_init_std,
            device=device, backend=backend, dtype=dtype, seed=seed, fast=fast,
        )  # fmt: skip
