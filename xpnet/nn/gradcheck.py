"""Numerical gradients by central differences, to check hand-written backward passes."""

from __future__ import annotations

import itertools

from array_api_compat import array_namespace

from ..backend import to_numpy
from ..errors import ConfigError


def numerical_gradient(f, x, h: float = 1e-6):
    """∂f/∂x by central differences, (f(x + h·e_i) − f(x − h·e_i)) / 2h for every element i.

    `f` is called with `x` after one element has been perturbed in place (as in the book, `f` may
    ignore its argument and read `x` through a closure, e.g. a network parameter); `x` is restored
    afterwards. Use float64 for `x`: in float32 the differences drown in rounding error; integer
    arrays are refused (they cannot hold x ± h). The difference quotient is taken in Python floats
    (float64); the result has x's namespace, device, dtype and shape.
    """
    xp = array_namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise ConfigError(
            f"numerical_gradient perturbs x by h = {h}, which an array of dtype {x.dtype} cannot "
            f"hold; give it a float64 array (e.g. xp.astype(x, xp.float64))"
        )
    grad = xp.zeros_like(x)
    for index in itertools.product(*(range(n) for n in x.shape)):
        old = float(x[index])
        x[index] = old + h
        f_plus = float(f(x))
        x[index] = old - h
        f_minus = float(f(x))
        x[index] = old
        grad[index] = (f_plus - f_minus) / (2.0 * h)
    return grad


def max_relative_error(a, b) -> float:
    """max|a − b| / max(max|a|, max|b|): the worst error relative to the gradient's scale.

    Scaling by the largest entry, not entry by entry, keeps entries that are zero up to rounding
    (a dead ReLU unit's weights) from dominating.
    """
    a, b = to_numpy(a).astype("float64"), to_numpy(b).astype("float64")
    scale = max(abs(a).max(initial=0.0), abs(b).max(initial=0.0))
    return 0.0 if scale == 0.0 else float(abs(a - b).max() / scale)
