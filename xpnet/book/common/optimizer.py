"""The book's common/optimizer.py: its optimizers, by its names, signatures and defaults, as xpnet's
(xpnet.nn.optimizers) configured to follow the book's rules.

- ``SGD``, ``Momentum``, ``Nesterov``: xpnet's. The book's velocity v is xpnet's buffer b times
  −lr (v ← μ·v − lr·g, W ← W + v is b ← μ·b + g, W ← W − lr·b); its Nesterov step
  W ← W + μ²·v − (1 + μ)·lr·g is torch's W ← W − lr·(g + μ·b) written with that v.
- ``AdaGrad``, ``RMSprop``: xpnet's AdaGrad and RMSProp with the book's ε = 1e-7 (outside the root,
  as both have it); RMSprop's ``decay_rate`` is RMSProp's α.
- ``Adam``: xpnet's, with the book's ε: the book adds 1e-7 to √v before the bias correction, which
  is xpnet's rule (ε added to √v̂) with ε_t = 1e-7 / √(1 − β₂ᵗ), set before each step.

As the book's, ``update(params, grads)`` also takes Python numbers as parameters (ch06's
optimizer_compare_naive.py moves a point (x, y)): they are updated as 0-d float64 arrays and put
back as floats.
"""

import math as _math
import numbers as _numbers

import numpy as np

from xpnet.nn.optimizers import adaptive as _adaptive
from xpnet.nn.optimizers import sgd as _sgd

_EPS = 1e-7


class _Book:
    """update(params, grads) on a dict that may hold Python numbers, as the book's optimizers."""

    def update(self, params, grads):
        scalars = [k for k in params if isinstance(params[k], _numbers.Number)]
        if not scalars:
            return super().update(params, grads)
        arrays = dict(params)
        for key in scalars:
            arrays[key] = np.array(params[key], dtype=np.float64)
        host_grads = {
            k: np.asarray(g, dtype=np.float64) if isinstance(g, _numbers.Number) else g
            for k, g in grads.items()
        }
        super().update(arrays, host_grads)
        for key in scalars:
            params[key] = float(arrays[key])
        return None


class SGD(_Book, _sgd.SGD):
    """W ← W − lr·∂L/∂W."""

    def __init__(self, lr=0.01):
        super().__init__(lr)


class Momentum(_Book, _sgd.Momentum):
    """Momentum SGD: v ← μ·v − lr·∂L/∂W, W ← W + v (xpnet.nn.optimizers.Momentum)."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr, momentum)


class Nesterov(_Book, _sgd.Nesterov):
    """Nesterov's accelerated gradient (xpnet.nn.optimizers.Nesterov)."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr, momentum)


class AdaGrad(_Book, _adaptive.AdaGrad):
    """h ← h + g⊙g, W ← W − lr·g / (√h + 1e-7)."""

    def __init__(self, lr=0.01):
        super().__init__(lr, eps=_EPS)

    @property
    def h(self):
        return self.state.get("sum")


class RMSprop(_Book, _adaptive.RMSProp):
    """h ← ρ·h + (1 − ρ)·g⊙g, W ← W − lr·g / (√h + 1e-7), ρ = decay_rate."""

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr, alpha=decay_rate, eps=_EPS)

    @property
    def decay_rate(self):
        return self.alpha

    @property
    def h(self):
        return self.state.get("square_avg")


class Adam(_Book, _adaptive.Adam):
    """Adam as the book writes it: lr_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ), W ← W − lr_t·m / (√v + 1e-7)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr, betas=(beta1, beta2))

    def update(self, params, grads):
        # the book's 1e-7 sits beside √v, before the bias correction: on xpnet's scale (beside
        # √v̂ = √v / √(1 − β₂ᵗ)) that is 1e-7 / √(1 − β₂ᵗ) at step t
        self.eps = _EPS / _math.sqrt(1.0 - self.betas[1] ** (self.steps + 1))
        return super().update(params, grads)

    @property
    def beta1(self):
        return self.betas[0]

    @property
    def beta2(self):
        return self.betas[1]

    @property
    def iter(self):
        return self.steps

    @property
    def m(self):
        return self.state.get("exp_avg")

    @property
    def v(self):
        return self.state.get("exp_avg_sq")
