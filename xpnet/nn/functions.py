"""Stateless math of chapters 3–4: activations, softmax and cross-entropy, on any Array API backend.

Each function takes its namespace from its input and returns an array of the input's namespace,
device and (floating) dtype.
"""

from __future__ import annotations

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ..backend import namespace_of, to_numpy
from ..errors import LabelError, ShapeError

#: The slides' guard against log(0) in cross_entropy_error.
DELTA = 1e-7


def step_function(x):
    """Heaviside step: 1 where x > 0, else 0, in x's dtype."""
    xp = namespace_of(x)
    return xp.astype(x > 0, x.dtype)


def sigmoid(x):
    """Logistic sigmoid 1 / (1 + exp(-x)).

    Computed as (1 + tanh(x/2)) / 2, the same function, which cannot overflow for large |x|.
    """
    xp = namespace_of(x)
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


def relu(x):
    """Rectified linear unit max(0, x)."""
    xp = namespace_of(x)
    return xp.maximum(x, 0.0)


def tanh(x):
    """Hyperbolic tangent."""
    return namespace_of(x).tanh(x)


def identity(x):
    """The identity, the output activation of a regression network."""
    return x


def softmax(a, axis: int = -1):
    """Softmax along `axis` (the last by default, so a batch is one row per sample).

    y_k = exp(a_k - max a) / Σ_i exp(a_i - max a); subtracting the max leaves y unchanged and
    keeps exp from overflowing.
    """
    xp = namespace_of(a)
    e = xp.exp(a - xp.max(a, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(a, axis: int = -1):
    """log(softmax(a)) computed without forming softmax: a - max - log Σ exp(a - max)."""
    xp = namespace_of(a)
    shifted = a - xp.max(a, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def one_hot(labels, num_classes: int, dtype=None):
    """One-hot rows for integer labels: (N,) -> (N, num_classes), float32 unless `dtype` is given."""
    xp = namespace_of(labels)
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device_of(labels))
    return xp.astype(labels[..., None] == classes, dtype if dtype is not None else xp.float32)


def as_one_hot(t, y):
    """Labels `t` as one-hot rows shaped like scores `y`: integer labels are expanded, one-hot passes."""
    xp = array_namespace(t, y)
    if t.ndim == y.ndim and t.shape == y.shape:
        return t if t.dtype == y.dtype else xp.astype(t, y.dtype)
    if t.ndim == y.ndim - 1 and t.shape == y.shape[:-1] and xp.isdtype(t.dtype, "integral"):
        return one_hot(t, y.shape[-1], dtype=y.dtype)
    raise ShapeError(
        f"labels of shape {tuple(t.shape)} and dtype {t.dtype} do not fit scores of shape "
        f"{tuple(y.shape)}: give integer class labels of shape {tuple(y.shape[:-1])} "
        f"or one-hot rows of shape {tuple(y.shape)}"
    )


def cross_entropy_error(y, t):
    """Mean cross-entropy of probabilities `y` against labels `t` (one-hot or integer).

    E = -(1/N) Σ_n Σ_k t_nk log(y_nk + 1e-7), as in the slides; a single sample (1-D `y`) is a
    batch of one.
    """
    xp = array_namespace(y, t)
    if y.ndim == 1:
        y = xp.reshape(y, (1, -1))
        t = xp.reshape(t, (1, -1) if t.ndim == 1 else (1,))
    t = as_one_hot(t, y)
    return -xp.sum(t * xp.log(y + DELTA)) / y.shape[0]


def check_labels(t, scores_shape) -> None:
    """Refuse labels that do not fit scores of `scores_shape`: integer classes in 0..C−1, or rows.

    Rows shaped like the scores (one-hot or soft targets) pass; integer labels are read back to
    the host once to check their range, so call this at the edge (a public method, a data
    loader), not in a training step.
    """
    xp = namespace_of(t)
    scores_shape = tuple(scores_shape)
    shape = tuple(t.shape)
    if shape == scores_shape:
        return
    classes = scores_shape[-1]
    if shape != scores_shape[:-1]:
        raise ShapeError(
            f"labels of shape {shape} do not fit scores of shape {scores_shape}: give integer "
            f"class labels of shape {scores_shape[:-1]} or one-hot rows of shape {scores_shape}"
        )
    if not xp.isdtype(t.dtype, "integral"):
        raise LabelError(
            f"class labels must be integers, got dtype {t.dtype}; convert them (e.g. "
            f"xp.astype(t, xp.int64)) or give one-hot rows of shape {scores_shape}"
        )
    host = to_numpy(t)
    if host.size and (host.min() < 0 or host.max() >= classes):
        raise LabelError(
            f"class labels must lie in 0..{classes - 1} for {classes} classes, got values "
            f"from {host.min()} to {host.max()}"
        )
