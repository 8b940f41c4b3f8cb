"""The book's common/gradient.py: numerical gradients by central differences with its step
h = 1e-4, as xpnet.nn.gradcheck.numerical_gradient (which perturbs x in place and calls f(x), as
the book's does)."""

import numpy as np  # noqa: F401 (the book's module exports np)

from xpnet.backend import namespace_of as _namespace_of
from xpnet.nn.gradcheck import numerical_gradient as _numerical_gradient

_H = 1e-4


def _numerical_gradient_1d(f, x):
    return _numerical_gradient(f, x, _H)


def numerical_gradient_2d(f, X):
    """∂f/∂x for each row x of X (f is called with the row), or for X itself when it is 1-D."""
    if X.ndim == 1:
        return _numerical_gradient_1d(f, X)
    grad = _namespace_of(X).zeros_like(X)
    for idx in range(X.shape[0]):
        grad[idx, ...] = _numerical_gradient_1d(f, X[idx, ...])
    return grad


def numerical_gradient(f, x):
    """∂f/∂x by (f(x + h) − f(x − h)) / 2h for every element of x, h = 1e-4."""
    return _numerical_gradient(f, x, _H)
