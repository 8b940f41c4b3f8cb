"""Networks: a sequence of layers ending in a loss layer (the fully connected ones are in mlp.py).

The layers are the one place where parameters and gradients live: ``params`` and ``grads`` are
dicts of the layers' own arrays, built afresh at each access, so the book's idioms
(``network.params[key] -= lr * grad[key]``, a backward pass by hand through ``network.layers``,
``optimizer.update(network.params, grads)``) and the Trainer always act on the same arrays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ..backend import DTYPES, Backend, backend_of, namespace_of
from ..errors import BackendError, ConfigError, ShapeError, choose
from .functions import check_labels
from .layers import Layer, SoftmaxWithLoss


def check_float_dtype(xp, dtype):
    """The namespace's floating dtype for `dtype`, or a ConfigError naming the choices."""
    if isinstance(dtype, str):
        return getattr(xp, choose("dtype", dtype, DTYPES))
    if not xp.isdtype(dtype, "real floating"):
        raise ConfigError(f"a network needs a floating dtype (float32 or float64), got {dtype}")
    return dtype


def count_correct(predict, x, t, batch_size: int = 10_000, check=None):
    """Number of rows of x whose top score under `predict` is the true class, as a 0-d array.

    Evaluated in chunks of `batch_size` so a whole training set fits in memory; `t` holds integer
    labels or one-hot rows. `check(scores_shape)`, when given, sees the whole input's scores shape
    (rows of x, classes from the first chunk) before any label is compared.
    """
    xp = array_namespace(x)
    correct = None
    for start in range(0, x.shape[0], batch_size):
        stop = min(start + batch_size, x.shape[0])
        scores = predict(x[start:stop, ...])
        if check is not None and correct is None:
            check((x.shape[0], scores.shape[-1]))
        labels = t[start:stop, ...]
        if labels.ndim == 2:
            labels = xp.argmax(labels, axis=1)
        hits = xp.sum(xp.astype(xp.argmax(scores, axis=1) == labels, xp.int64))
        correct = hits if correct is None else correct + hits
    return correct


class Network:
    """Layers applied in order, then a loss layer; backprop runs them in reverse.

    Layers are named by kind and position ("Affine1", "ReLU1", "Affine2"), and parameters by
    attribute, numbered over the layers that have one ("W1" of a Convolution, then "W2", "W3" of
    two Affines; "gamma1"...), as in the book. ``params`` and ``grads`` are
    dicts of the layers' own arrays, so an optimizer that updates ``params[key]`` in place updates
    the layer, and ``grads`` always holds what the last backward pass stored in the layers.

    ``sample_ndim`` is the rank of one sample (1 for a vector of features, 3 for a C×H×W image):
    an input of that rank is one sample, as in the book, and its scores come back without the
    batch axis.
    """

    sample_ndim = 1
    #: samples per chunk when evaluating a whole set (bounded by the largest activation's memory)
    eval_batch_size = 10_000
    #: a faster pass installed by ``xpnet.fast.install(net)`` (this package never imports it): an
    #: object with ``forward_backward(x, t)`` and ``predict(x)`` that give the layers' numbers,
    #: and ``classes`` (the scores' width). When set, ``forward_backward`` (so ``gradient``) and
    #: the evaluations (``predict``, ``accuracy``...) run it; None: the layers run.
    fast_step = None

    def __init__(self, layers: Sequence[Layer], loss_layer=None, weight_decay: float = 0.0):
        if not layers:
            raise ConfigError("a network needs at least one layer")
        self.layers: OrderedDict[str, Layer] = OrderedDict()
        self._slots: list[tuple[str, Layer, str]] = []  # (param key, layer, attribute)
        self._buffer_slots: list[tuple[str, Layer, str]] = []
        kinds: dict[str, int] = {}
        names: dict[str, int] = {}  # the book numbers each parameter name over all layers
        for layer in layers:
            kind = type(layer).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            layer.name = f"{kind}{kinds[kind]}"
            self.layers[layer.name] = layer
            for p in layer.param_names:
                names[p] = names.get(p, 0) + 1
                self._slots.append((f"{p}{names[p]}", layer, p))
            self._buffer_slots += [
                (f"{layer.name}.{p}", layer, p) for p in getattr(layer, "buffer_names", ())
            ]
        if not self._slots:
            raise ConfigError("a network needs at least one layer with parameters")
        self.last_layer = loss_layer if loss_layer is not None else SoftmaxWithLoss()
        weight_decay = float(weight_decay)
        if not weight_decay >= 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        self.weight_decay = weight_decay
        ref = self._first_param()
        check_float_dtype(namespace_of(ref), ref.dtype)

    # -- parameters ---------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        """Parameter arrays by key ("W1", "b1", ...), the layers' own objects."""
        return {key: getattr(layer, attr) for key, layer, attr in self._slots}

    @property
    def grads(self) -> dict:
        """Gradients from the last backward pass, keyed like ``params`` (the layers' own arrays)."""
        return {key: getattr(layer, "d" + attr) for key, layer, attr in self._slots}

    def param_slots(self) -> list[tuple[str, Layer, str]]:
        """(key, layer, attribute) of every parameter, in ``params``' order."""
        return list(self._slots)

    @property
    def buffers(self) -> dict:
        """State saved with the parameters but not trained ("BatchNormalization1.running_mean")."""
        return {key: getattr(layer, attr) for key, layer, attr in self._buffer_slots}

    @property
    def layer_states(self) -> dict:
        """JSON-able state of layers that keep one (dropout's random state), by layer name."""
        return {
            name: layer.get_state()
            for name, layer in self.layers.items()
            if hasattr(layer, "get_state")
        }

    def set_layer_states(self, states: dict) -> None:
        for name, state in states.items():
            if name not in self.layers or not hasattr(self.layers[name], "set_state"):
                raise ShapeError(f"the network has no layer {name} with a state to restore")
            self.layers[name].set_state(state)

    def set_params(self, params: dict) -> None:
        """Copy new values into every parameter (same keys and shapes), e.g. from a checkpoint.

        The arrays are written in place, so references held elsewhere (an optimizer's) stay
        valid; `params` must be on the network's backend and device. Buffers ("Layer.name" keys,
        see ``buffers``) may be included and are copied likewise.
        """
        current = {**self.params, **self.buffers}
        expected = set(self.params)
        if not expected <= set(params) <= set(current):
            raise ShapeError(
                f"parameter names differ: the network has {sorted(current)}, got {sorted(params)}"
            )
        for key, new in params.items():
            old = current[key]
            if tuple(new.shape) != tuple(old.shape):
                raise ShapeError(f"{key} has shape {tuple(old.shape)}, got {tuple(new.shape)}")
        for key, new in params.items():
            current[key][...] = new

    def save_params(self, file_name="params.pkl"):
        """Write the weights as the book's ``save_params`` does (xpnet.nn.bookformat); the path."""
        from .bookformat import save_params

        return save_params(self, file_name)

    def load_params(self, file_name="params.pkl") -> None:
        """Read weights the book's ``save_params`` wrote (its trained params.pkl, say), without
        running code from the file; dropout's test-time scale is folded in (xpnet.nn.bookformat)."""
        from .bookformat import load_params

        load_params(self, file_name)

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

    # -- checks at the edge -------------------------------------------------------------------

    def _same_place(self, x, what: str) -> None:
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

    def _input(self, x):
        """x on the network's backend and device, in its dtype, with a batch axis; and whether
        it was a single sample."""
        self._same_place(x, "input")
        xp = namespace_of(x)
        single = x.ndim == self.sample_ndim
        if single:
            x = xp.reshape(x, (1, *x.shape))
        elif x.ndim < self.sample_ndim:
            raise ShapeError(
                f"an input of shape {tuple(x.shape)} has fewer axes than one sample "
                f"({self.sample_ndim})"
            )
        if x.shape[0] == 0:
            raise ShapeError("the batch is empty: give at least one sample")
        if x.dtype != self.dtype:
            if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
                raise ShapeError(f"inputs must be real numbers, got dtype {x.dtype}")
            x = xp.astype(x, self.dtype)
        return x, single

    def _label_batch(self, t, single: bool):
        if isinstance(t, int) and not isinstance(t, bool):  # one sample's label as a Python int
            ref = self._first_param()
            t = namespace_of(ref).asarray(t, device=device_of(ref))
        self._same_place(t, "labels")
        if single and t.ndim < 2 and tuple(t.shape) != (1,):  # one label, or one one-hot row
            t = namespace_of(t).reshape(t, (1, *t.shape))
        return t

    def _labels(self, t, scores_shape, single: bool):
        t = self._label_batch(t, single)
        check_labels(t, scores_shape)
        return t

    # -- the book's interface -----------------------------------------------------------------

    def _forward(self, x, train: bool):
        if not train and self.fast_step is not None:
            return self.fast_step.predict(x)
        for layer in self.layers.values():
            x = layer.forward(x, train)
        return x

    def predict(self, x, train: bool = False):
        """Scores (pre-softmax outputs) for a batch x, or for one sample (then without batch axis)."""
        x, single = self._input(x)
        scores = self._forward(x, train)
        return scores[0, ...] if single else scores

    def decay_loss(self):
        """½·λ·Σ‖W‖² over the weights that decay applies to, as a 0-d array (0.0 when λ = 0)."""
        if not self.weight_decay:
            return 0.0
        xp = namespace_of(self._first_param())
        total = sum(
            xp.sum(getattr(layer, p) ** 2)
            for layer in self.layers.values()
            for p in layer.decay_names
        )
        return 0.5 * self.weight_decay * total

    def add_decay_grads(self) -> None:
        """Add λ·W to the gradient of every weight that decay applies to (after a backward pass)."""
        if not self.weight_decay:
            return
        for layer in self.layers.values():
            for p in layer.decay_names:
                setattr(
                    layer, "d" + p, getattr(layer, "d" + p) + self.weight_decay * getattr(layer, p)
                )

    def loss(self, x, t, train: bool = True):
        """Mean loss of batch (x, t) plus the L2 penalty ½·λ·Σ‖W‖², as a 0-d device array.

        Labels are integer classes or one-hot rows; they are checked (one host read).
        """
        x, single = self._input(x)
        scores = self._forward(x, train)
        t = self._labels(t, scores.shape, single)
        return self.last_layer.forward(scores, t) + self.decay_loss()

    def forward_backward(self, x, t, *, check: bool = True, layers: bool = False):
        """One forward and one backward pass: returns the loss and leaves every gradient in `grads`.

        The first layer computes no dL/dx, which nothing would use. ``check=False`` skips the
        input and label checks, for a loop over data that was checked once (the Trainer's).
        A fast step installed in ``fast_step`` runs instead of the layers (the same numbers; the
        layers' caches stay empty), unless ``layers=True``.
        """
        step = None if layers else self.fast_step
        if step is not None:
            if check:
                x, single = self._input(x)
                t = self._labels(t, (x.shape[0], step.classes), single)
            return step.forward_backward(x, t)
        if check:
            x, single = self._input(x)
            scores = self._forward(x, train=True)
            t = self._labels(t, scores.shape, single)
        else:
            scores = self._forward(x, train=True)
        loss = self.last_layer.forward(scores, t) + self.decay_loss()
        dout = self.last_layer.backward(1.0)
        layers = list(self.layers.values())
        for i in range(len(layers) - 1, -1, -1):
            dout = layers[i].backward(dout, input_grad=i > 0)
        self.add_decay_grads()
        return loss

    def gradient(self, x, t) -> dict:
        """Gradients of the loss with respect to every parameter, by backpropagation."""
        self.forward_backward(x, t)
        return self.grads

    def count_correct(self, x, t, batch_size: int | None = None):
        """Number of samples whose top score is the true class, as a 0-d device array."""
        return self._count_correct(x, t, batch_size)[0]

    def accuracy(self, x, t, batch_size: int | None = None) -> float:
        """Fraction of samples classified correctly (one host read at the end)."""
        correct, n = self._count_correct(x, t, batch_size)
        return int(correct) / n

    def _count_correct(self, x, t, batch_size):
        """(correct count as a 0-d device array, number of samples) of a batch or one sample."""
        x, single = self._input(x)
        t = self._label_batch(t, single)
        correct = count_correct(
            lambda xb: self._forward(xb, train=False),
            x,
            t,
            batch_size or self.eval_batch_size,
            check=lambda scores_shape: check_labels(t, scores_shape),
        )
        return correct, x.shape[0]

    def __repr__(self) -> str:
        inner = " -> ".join(repr(layer) for layer in self.layers.values())
        return f"{type(self).__name__}({inner} -> {type(self.last_layer).__name__})"
