"""Chapter 5: layers with a forward and a hand-written backward pass.

The interface every layer shares:

- ``forward(x, train=True)`` returns the output and, when ``train`` is true, keeps only what
  ``backward`` needs (so evaluation keeps nothing; layers such as dropout or batch normalization
  can behave differently in the two modes).
- ``backward(dout, input_grad=True)`` takes dL/dy and returns dL/dx, after storing the gradient
  of each parameter ``P`` as the attribute ``dP`` (``dW``, ``db``). With ``input_grad=False``
  (the first layer of a network) dL/dx is not computed and None is returned.
- ``param_names`` lists the parameter attributes; ``params`` and ``grads`` view them as dicts.
  A layer owns its parameters: the arrays it is built from are copied, so nothing a caller passed
  is ever written, and every gradient is a new array (never a view into something else), so
  nothing can hold a stale copy of it.
- ``buffer_names`` lists state that is not trained but must be saved (batch norm's running
  statistics).

Every layer takes its array namespace from its inputs, so a layer built from CuPy arrays runs on
the GPU and one built from NumPy arrays on the CPU, with no other change.

The activations and softmax–cross-entropy below are the reference: the fast path (xpnet.fast)
writes them a second time as each backend's fused kernels, and is compared with these layers.
"""

from __future__ import annotations

import numbers
import operator

from array_api_compat import array_namespace, is_numpy_namespace
from array_api_compat import device as device_of

from ..backend import namespace_of
from ..errors import BackendError, ConfigError, ShapeError
from .functions import as_one_hot, sigmoid


def as_int(value) -> int | None:
    """`value` as a Python int when it is an integer of any kind (int, a NumPy integer), else None.

    Booleans are not sizes: True is refused rather than read as 1.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return operator.index(value)
    return None


class Layer:
    """Base class: a differentiable map with forward and backward passes."""

    #: names of the parameter attributes (their gradients are "d" + name)
    param_names: tuple[str, ...] = ()
    #: parameters that L2 weight decay applies to
    decay_names: tuple[str, ...] = ()
    #: state that is saved with the parameters but not trained (running statistics)
    buffer_names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The name a network gave this layer ("Affine1"), else the class name."""
        return getattr(self, "_name", type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def params(self) -> dict:
        return {p: getattr(self, p) for p in self.param_names}

    @property
    def grads(self) -> dict:
        return {p: getattr(self, "d" + p) for p in self.param_names}

    def forward(self, x, train: bool = True):  # pragma: no mutate - abstract
        raise NotImplementedError

    def backward(self, dout, input_grad: bool = True):  # pragma: no mutate
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(f"{p}={tuple(v.shape)}" for p, v in self.params.items())
        return f"{self.name}({shapes})"


class Affine(Layer):
    """Fully connected layer y = x·W + b.

    Inputs of any rank (N, d1, d2, ...) are flattened to (N, d1·d2·...), so an image batch can be
    fed directly; dx comes back in the input's shape. Backward: dW = xᵀ·dy, db = Σ_n dy, dx = dy·Wᵀ.
    """

    param_names = ("W", "b")
    decay_names = ("W",)

    def __init__(self, W, b):
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ShapeError(
                f"Affine needs W of shape (in, out) and b of shape (out,), got W {tuple(W.shape)} "
                f"and b {tuple(b.shape)}"
            )
        xp = namespace_of(W)
        self.W = xp.asarray(W, copy=True)
        self.b = xp.asarray(b, copy=True)
        self.dW = None
        self.db = None
        self.x = None
        self.x_shape = None  # pragma: no mutate - forward sets it before backward reads it

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        shape = tuple(x.shape)
        if x.ndim != 2:
            x = xp.reshape(x, (shape[0], -1) if x.ndim else (1, -1))
        if x.shape[1] != self.W.shape[0]:
            raise ShapeError(
                f"{self.name} expects {self.W.shape[0]} input features per sample, "
                f"got an input of shape {shape} ({x.shape[1]} features)"
            )
        if train:
            self.x, self.x_shape = x, shape
        return x @ self.W + self.b

    def backward(self, dout, input_grad: bool = True):
        xp = namespace_of(dout)
        self.dW = self.x.T @ dout
        self.db = xp.sum(dout, axis=0)
        if not input_grad:
            return None
        dx = dout @ self.W.T
        return dx if len(self.x_shape) == 2 else xp.reshape(dx, self.x_shape)


class ReLU(Layer):
    """max(0, x); backward passes dout where x > 0 and zero elsewhere."""

    def __init__(self):
        self.mask = None  # pragma: no mutate - forward sets it before backward reads it

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        if is_numpy_namespace(xp):
            # NumPy: max(x, 0) in one pass (NaN stays NaN) and a bool mask, a quarter of the
            # memory of a float one, which NumPy multiplies by directly: 30% less time
            if train:
                self.mask = x > 0
            return xp.maximum(x, 0)
        # x · [x > 0] with the mask kept in x's dtype: backward is then one multiply, which is
        # a single kernel on a GPU (the standard does not multiply floats by booleans)
        mask = xp.astype(x > 0, x.dtype)
        if train:
            self.mask = mask
        return x * mask

    def backward(self, dout, input_grad: bool = True):  # pragma: no mutate - unused
        return dout * self.mask


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)); backward dx = dy · y · (1 - y)."""

    def __init__(self):
        self.out = None  # pragma: no mutate - forward sets it before backward reads it

    def forward(self, x, train: bool = True):
        out = sigmoid(x)
        if train:
            self.out = out
        return out

    def backward(self, dout, input_grad: bool = True):  # pragma: no mutate
        return dout * (1.0 - self.out) * self.out


class Tanh(Layer):
    """y = tanh(x); backward dx = dy · (1 - y²)."""

    def __init__(self):
        self.out = None  # pragma: no mutate - forward sets it before backward reads it

    def forward(self, x, train: bool = True):
        out = namespace_of(x).tanh(x)
        if train:
            self.out = out
        return out

    def backward(self, dout, input_grad: bool = True):  # pragma: no mutate
        return dout * (1.0 - self.out * self.out)


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy loss, as one layer.

    forward(x, t) returns L = -(1/N) Σ_n Σ_k t_nk log softmax(x)_nk as a 0-d array on x's device
    (reading it as a Python float is left to the caller, since on a GPU that waits for the device).
    Labels are one-hot rows or integer class indices. With z = x - max_k x (per row) and
    s = Σ_k exp(z), log softmax(x) = z - log s, so L = Σ t·(log s - z) / N: no 1e-7 guard as in
    cross_entropy_error is needed, and backward is the exact gradient (softmax(x) - t) / N.

    ``delta`` > 0 is the book's loss instead: L = -(1/N) Σ_n Σ_k t_nk log(y_nk + δ) with
    y = softmax(x), the guard of its cross_entropy_error (δ = 1e-7), summed per sample first as
    the book sums one log per sample. Backward is the same (y - t) / N either way (the book's too:
    it differentiates as if δ were 0).
    """

    def __init__(self, delta: float = 0.0):
        delta = float(delta)
        if not delta >= 0.0:
            raise ConfigError(f"delta must be a number >= 0, got {delta}")
        self.delta = delta
        self.loss = None  # pragma: no mutate - forward sets these before any read
        self.y = None  # pragma: no mutate
        self.t = None  # pragma: no mutate
        self._classes = None  # cached class indices 0..C-1 for expanding integer labels

    def _one_hot(self, t, x, xp):
        if type(t) is not type(x):
            try:
                array_namespace(x, t)
            except TypeError:
                raise BackendError(
                    f"the labels are a {type(t).__module__}.{type(t).__name__} but the scores are "
                    f"{type(x).__module__}.{type(x).__name__}: give labels of the scores' library"
                ) from None
        if t.shape == x.shape:
            return t if t.dtype == x.dtype else xp.astype(t, x.dtype)
        classes = self._classes
        if (
            classes is None
            or classes.shape[0] != x.shape[-1]
            or classes.dtype != t.dtype
            or device_of(classes) != device_of(t)
        ):
            as_one_hot(t, x)  # validates shape and dtype, raising a ShapeError that names both
            classes = self._classes = xp.arange(x.shape[-1], dtype=t.dtype, device=device_of(t))
        if t.shape != x.shape[:-1]:
            as_one_hot(t, x)
        return xp.astype(t[..., None] == classes, x.dtype)

    def forward(self, x, t):
        """Mean loss of scores x against labels t (checked by the caller: Network.loss checks them)."""
        xp = namespace_of(x)
        t = self._one_hot(t, x, xp)
        z = x - xp.max(x, axis=-1, keepdims=True)
        e = xp.exp(z)
        s = xp.sum(e, axis=-1, keepdims=True)
        self.y, self.t = e / s, t
        if self.delta:
            per_sample = xp.sum(t * xp.log(self.y + self.delta), axis=-1)
            self.loss = -xp.sum(per_sample) / x.shape[0]
        else:
            self.loss = xp.sum(t * (xp.log(s) - z)) / x.shape[0]
        return self.loss

    def backward(self, dout=1.0):
        """(softmax(x) − t) · dout / N, in the scores' dtype whatever dout's type."""
        if isinstance(dout, numbers.Number):  # Python or NumPy scalar: a float never promotes
            return (self.y - self.t) * (float(dout) / self.y.shape[0])
        xp = namespace_of(self.y)
        return (self.y - self.t) * (xp.astype(dout, self.y.dtype) / self.y.shape[0])


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
