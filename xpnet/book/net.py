"""What the book's networks share: its interface over an xpnet Network.

Each network of xpnet.book builds xpnet's layers (with the book's options, xpnet.book.common.layers)
into an ``xpnet.nn.network.Network`` (``self.net``) and keeps the book's attributes beside it:
``params`` (the layers' own arrays by the book's names, in the book's order), ``layers`` (the same
layer objects under the book's names), ``last_layer``. Forward, backward, the loss and the counting
of correct answers are the Network's; what is here is the book's calling convention (host NumPy
scalars for the loss and accuracy, inputs moved to the network's device, labels of shape (N, 1)).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping

import numpy as np

from ..backend import resolve_dtype
from ..errors import ConfigError
from ..nn.bookformat import book_order, match_params, read_params
from ..nn.gradcheck import numerical_gradient
from ..nn.network import Network
from . import device
from .common.layers import SoftmaxWithLoss

#: the book's step for numerical gradients (common/gradient.py)
H = 1e-4


def initial_weight(scale, *shape):
    """``scale * np.random.randn(*shape)`` on the device: NumPy's global generator, in the order the
    book draws, so that ``np.random.seed`` gives the book's initial weights."""
    host = scale * np.random.randn(*shape)  # noqa: NPY002 (the book's global generator)
    return device.backend().asarray(host, device.dtype() or "float64")


def zeros(n):
    """``np.zeros(n)`` on the device, in the networks' dtype."""
    return device.backend().zeros((n,), device.dtype() or "float64")


def ones(n):
    """``np.ones(n)`` on the device, in the networks' dtype."""
    return device.backend().ones((n,), device.dtype() or "float64")


class ParamView(MutableMapping):
    """A network's parameters by the book's names ("W1", "b1", ..., "gamma1", ...) in the book's
    order: the layers' own arrays. ``params[key] -= lr * grad`` updates the layer in place, and
    ``params[key] = array`` makes the layer use `array`, as the book's ``load_params`` does."""

    def __init__(self, net: Network):
        slots = {key: (layer, attr) for key, layer, attr in net.param_slots()}
        self._slots = {key: slots[key] for key in book_order(slots)}

    def __getitem__(self, key):
        layer, attr = self._slots[key]
        return getattr(layer, attr)

    def __setitem__(self, key, value):
        if key not in self._slots:
            raise KeyError(f"the network has no parameter {key!r}; it has {', '.join(self._slots)}")
        layer, attr = self._slots[key]
        setattr(layer, attr, value)

    def __delitem__(self, key):
        raise TypeError("a network's parameters cannot be deleted")

    def __iter__(self):
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return repr(dict(self))


class BookNetwork:
    """The book's network interface over ``self.net``, an xpnet Network (see the module docstring)."""

    def _assemble(self, named_layers, weight_decay=0.0, images=False, as_list=False) -> None:
        """Build ``self.net`` from (book name, layer) pairs and the book's attributes around it."""
        self._be = device.backend()
        self.net = Network([layer for _, layer in named_layers], SoftmaxWithLoss(), weight_decay)
        if images:
            self.net.sample_ndim = 3  # a (C, H, W) input is one image
        self.layers = [layer for _, layer in named_layers] if as_list else OrderedDict(named_layers)
        self.last_layer = self.net.last_layer
        self.params = ParamView(self.net)

    # -- the book's calling convention ----------------------------------------------------------

    def _x(self, x):
        return device.put(x, self._be)

    def _t(self, t):
        """Labels on the device; integer labels of shape (N, 1) (the book's ch07 check) as (N,)."""
        t = device.put(t, self._be)
        if t.ndim == 2 and t.shape[1] == 1 and self._be.xp.isdtype(t.dtype, "integral"):
            t = self._be.xp.reshape(t, (-1,))
        return t

    def _predict(self, x, train: bool):
        return self.net.predict(self._x(x), train)

    def _loss(self, x, t, train: bool):
        """The loss as a host NumPy scalar (np.float64 for float64 weights), as the book's."""
        return device.host_scalar(self.net.loss(self._x(x), self._t(t), train))

    def gradient(self, x, t) -> dict:
        """Gradients of the loss by backpropagation, by the book's names (weight decay included)."""
        grads = self.net.gradient(self._x(x), self._t(t))
        return {key: grads[key] for key in self._grad_keys()}

    def _grad_keys(self) -> list[str]:
        return list(self.params)

    def _numerical_loss(self, x, t):
        return self.loss(x, t)

    def numerical_gradient(self, x, t) -> dict:
        """Gradients by central differences (h = 1e-4, the book's), parameter by parameter."""

        def loss_w(w):
            return self._numerical_loss(x, t)

        return {key: numerical_gradient(loss_w, self.params[key], H) for key in self._grad_keys()}

    def accuracy(self, x, t):
        """Fraction of samples whose top score is the label (integer labels or one-hot rows)."""
        count = self.net.count_correct(self._x(x), self._t(t))
        return np.float64(int(count) / float(x.shape[0]))

    def _accuracy_in_batches(self, x, t, batch_size: int):
        """The book's batched accuracy of its CNNs: int(N / batch_size) whole batches are counted
        and the count divided by N. Where N is not a multiple of batch_size the remainder is never
        predicted but still counted as wrong: the book's behaviour, kept."""
        batch_size, n = int(batch_size), x.shape[0]
        whole = int(n / batch_size) * batch_size
        count = 0
        if whole:
            xs, ts = self._x(x)[:whole, ...], self._t(t)[:whole, ...]
            count = int(self.net.count_correct(xs, ts, batch_size))
        return np.float64(count / n)

    # -- the book's weights ---------------------------------------------------------------------

    def save_params(self, file_name="params.pkl"):
        """Write the parameters as the book's ``save_params`` does: a pickle of a dict of NumPy
        arrays by the book's names (batch normalization's running statistics added when present)."""
        return self.net.save_params(file_name)

    def load_params(self, file_name="params.pkl") -> None:
        """Read weights in the book's format, as the book's ``load_params``: the layers take the
        file's arrays, in the file's dtype (float32 for ch03's sample_weight.pkl) unless
        XPNET_DTYPE is set. The file cannot run code (xpnet.fileio.load_pickle)."""
        values = match_params(self.net, read_params(file_name), file_name)
        wanted = device.dtype()
        layers = self.net.layers
        for key, host in values.items():
            if host.dtype.kind not in "f":
                raise ConfigError(f"{file_name}: {key} holds {host.dtype} values, not floats")
            name = wanted or host.dtype.name
            array = self._be.asarray(host, resolve_dtype(self._be.xp, name))
            if key in self.params:
                self.params[key] = array
            else:  # a buffer, "LayerName.attr"
                layer, _, attr = key.partition(".")
                setattr(layers[layer], attr, array)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"
