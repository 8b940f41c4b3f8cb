"""Initial weight scales: W ~ N(0, std²) with std fixed or derived from the layer's fan-in/out."""

from __future__ import annotations

import math
import numbers

from ..errors import ConfigError

#: name -> std(n_in, n_out)
INITIALIZERS = {
    # LeCun; the book calls √(1/n) "the Xavier initial value"
    "xavier": lambda n_in, n_out: math.sqrt(1.0 / n_in),
    "lecun": lambda n_in, n_out: math.sqrt(1.0 / n_in),
    # Glorot & Bengio (2010), normal variant
    "glorot": lambda n_in, n_out: math.sqrt(2.0 / (n_in + n_out)),
    # He et al. (2015), for ReLU
    "he": lambda n_in, n_out: math.sqrt(2.0 / n_in),
}


def parse_init(value) -> float | str:
    """A CLI or API initializer: a positive number (a fixed std such as 0.01) or a name."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in INITIALIZERS:
            return key
        try:
            value = float(key)
        except ValueError:
            names = ", ".join(INITIALIZERS)
            raise ConfigError(
                f"unknown initializer {value!r}; give a std such as 0.01 or one of: {names}"
            ) from None
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)  # NumPy's too
    if not (real and math.isfinite(value) and value > 0):
        raise ConfigError(f"initial weight std must be a positive number, got {value!r}")
    return float(value)


def init_std(init, n_in: int, n_out: int) -> float:
    """The std for a weight matrix of shape (n_in, n_out) under initializer `init`."""
    init = parse_init(init)
    return init if isinstance(init, float) else INITIALIZERS[init](n_in, n_out)
