"""The book's common/functions.py: its activations and losses, by its names, as xpnet's functions
(xpnet.nn.functions) where xpnet has them; the book's two derivatives and its squared error are
the one-liners below. Every function takes its namespace from its input (NumPy, CuPy, torch, ...);
Python numbers and lists are read as NumPy arrays.
"""

import numpy as np

from xpnet.backend import namespace_of as _namespace_of
from xpnet.nn import functions as _functions


def _array(x):
    return x if hasattr(x, "__array_namespace__") else np.asarray(x, dtype=float)


def identity_function(x):
    return x


def step_function(x):
    """1 where x > 0, else 0, as integers (the book's ``np.array(x > 0, dtype=int)``)."""
    x = _array(x)
    xp = _namespace_of(x)
    return xp.astype(x > 0, xp.int64)


def sigmoid(x):
    """1 / (1 + exp(-x)) (xpnet.nn.functions.sigmoid)."""
    return _functions.sigmoid(_array(x))


def sigmoid_grad(x):
    """The sigmoid's derivative at x, (1 − σ(x))·σ(x)."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x):
    """max(0, x) (xpnet.nn.functions.relu)."""
    return _functions.relu(_array(x))


def relu_grad(x):
    """The ReLU's derivative as the book takes it: 1 where x >= 0, else 0."""
    x = _array(x)
    return _namespace_of(x).astype(x >= 0, x.dtype)


def softmax(x):
    """Softmax over the last axis (xpnet.nn.functions.softmax)."""
    return _functions.softmax(_array(x))


def sum_squared_error(y, t):
    """½·Σ (y − t)²."""
    d = _array(y) - _array(t)
    return 0.5 * _namespace_of(d).sum(d * d)


def cross_entropy_error(y, t):
    """−Σ log(y_true + 1e-7) / N, labels one-hot or integer (xpnet.nn.functions)."""
    return _functions.cross_entropy_error(_array(y), _array(t) if isinstance(t, list) else t)


def softmax_loss(X, t):
    return cross_entropy_error(softmax(X), t)
