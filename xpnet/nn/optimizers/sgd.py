"""Stochastic gradient descent and its momentum variants (the book's SGD, Momentum, Nesterov).

Plain SGD's rule below is the reference the fused SGD kernels (xpnet.fast) are compared with.
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Optimizer, _flag, _fraction, _nonnegative, _with_decay


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum μ, dampening τ and L2 weight decay λ.

    g ← ∂L/∂W + λ·W
    b ← g at the first step, then b ← μ·b + (1 − τ)·g     (only when μ > 0)
    W ← W − lr·b, or W ← W − lr·(g + μ·b) with nesterov    (μ = 0: W ← W − lr·g)
    """

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(lr)
        self.momentum = _fraction("momentum", momentum)
        self.dampening = _fraction("dampening", dampening)
        self.nesterov = _flag("nesterov", nesterov)
        self.weight_decay = _nonnegative("weight decay", weight_decay)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ConfigError(
                f"Nesterov momentum needs momentum > 0 and dampening 0, "
                f"got momentum {self.momentum} and dampening {self.dampening}"
            )
        self.slots = ("momentum_buffer",) if self.momentum else ()

    def update(self, params: dict, grads: dict) -> None:
        self.steps += 1
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        if not (mu or wd):
            kernels = {}  # asked once per array type and dtype in an update, not per parameter
            for key, grad in grads.items():
                kind = (type(grad), grad.dtype)
                try:
                    kernel = kernels[kind]
                except KeyError:
                    kernel = kernels[kind] = self._kernel("sgd", grad)
                except TypeError:  # a dtype that cannot be hashed: ask for each parameter
                    kernel = self._kernel("sgd", grad)
                if kernel is not None:
                    kernel(params[key], grad, lr)
                else:
                    params[key] -= lr * grad
            return
        for key, grad in grads.items():
            p = params[key]
            g = _with_decay(grad, p, wd)
            if mu:
                fresh = key not in self.state.get("momentum_buffer", {})
                # torch starts the buffer at the first (undamped) gradient, not at zero
                b = self._slot("momentum_buffer", key, p, first=g)
                if not fresh:
                    b *= mu
                    b += (1 - self.dampening) * g if self.dampening else g
                g = g + mu * b if self.nesterov else b
            p -= lr * g


class Momentum(SGD):
    """SGD with momentum μ = 0.9 by default: b ← μ·b + g, W ← W − lr·b (b ← g at the first step).

    The book writes v ← μ·v − lr·∂L/∂W, W ← W + v; with v = −lr·b that is the same rule while lr
    is constant (the book's velocity keeps the old learning rates when a scheduler changes lr).
    """

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(lr, momentum, dampening, nesterov, weight_decay)


class Nesterov(SGD):
    """SGD with Nesterov momentum, as torch: b ← μ·b + g, W ← W − lr·(g + μ·b) (b ← g at first).

    The book's Nesterov (after Bengio et al.) writes v ← μ·v − lr·∂L/∂W, W ← W + μ²·v − (1 + μ)·lr·∂L/∂W
    with the updated v: a formula of another form, whose iterates differ from these.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(lr, momentum, 0.0, True, weight_decay)
