"""Chapter 2: logic gates as perceptrons, y = 1 if w1·x1 + w2·x2 + b > 0 else 0.

Called with Python numbers, a gate returns a Python int as in the slides; called with arrays, it
is applied elementwise and returns an int64 array of the inputs' backend and device.
"""

from __future__ import annotations

from numbers import Real

from array_api_compat import array_namespace


def perceptron(x1, x2, w1: float, w2: float, b: float):
    """A two-input perceptron with weights (w1, w2) and bias b."""
    if isinstance(x1, Real) and isinstance(x2, Real):
        return 1 if w1 * x1 + w2 * x2 + b > 0 else 0
    xp = array_namespace(*(x for x in (x1, x2) if not isinstance(x, Real)))

    def floating(x):
        if isinstance(x, Real) or xp.isdtype(x.dtype, "real floating"):
            return x
        return xp.astype(x, xp.float32)

    return xp.astype(w1 * floating(x1) + w2 * floating(x2) + b > 0, xp.int64)


def AND(x1, x2):
    """1 only when both inputs are 1 (w = 0.5, 0.5; b = -0.7)."""
    return perceptron(x1, x2, 0.5, 0.5, -0.7)


def NAND(x1, x2):
    """NOT AND (w = -0.5, -0.5; b = 0.7)."""
    return perceptron(x1, x2, -0.5, -0.5, 0.7)


def OR(x1, x2):
    """1 when either input is 1 (w = 0.5, 0.5; b = -0.2)."""
    return perceptron(x1, x2, 0.5, 0.5, -0.2)


def XOR(x1, x2):
    """Exclusive or, which no single perceptron can compute: a 2-layer perceptron AND(NAND, OR)."""
    return AND(NAND(x1, x2), OR(x1, x2))
