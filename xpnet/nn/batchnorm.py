"""Chapter 6: batch normalization, y = γ·(x − μ)/√(σ² + ε) + β with batch statistics in training.

Where xpnet differs from the book's ``common/layers.py`` BatchNormalization (it follows
``torch.nn.BatchNorm1d``/``BatchNorm2d`` instead):

- 4-D input (N, C, H, W) is normalized per channel, over N·H·W values (the book reshapes it to
  (N, C·H·W) and normalizes every activation separately); 2-D input (N, D) per feature.
- The running averages start at mean 0 and variance 1 (the book's both start at 0), the running
  variance is the unbiased one (×m/(m − 1), m values per channel; the book keeps the biased
  one), and ε is 1e-5 (the book's 1e-6).
- ``momentum`` keeps the book's meaning, the weight of the old value:
  running = momentum·running + (1 − momentum)·batch (torch's momentum is 1 − this one).
"""

from __future__ import annotations

from ..backend import namespace_of
from ..errors import ConfigError, ShapeError
from .layers import Layer

EPS = 1e-5


class BatchNormalization(Layer):
    """Batch normalization over the batch (and spatial) axes, with a learned scale γ and shift β.

    Training: x̂ = (x − μ_B)/√(σ²_B + ε), y = γ·x̂ + β, and the running mean and variance move
    towards the batch's. Evaluation (``train=False``) uses the running statistics instead.
    Backward (training statistics): dβ = Σ dy, dγ = Σ dy·x̂,
    dx = (γ/√(σ²_B + ε))·(dy − mean(dy) − x̂·mean(dy·x̂)), sums and means over the same axes.
    ``running_mean`` and ``running_var`` are buffers (``buffer_names``): state a checkpoint must
    save, not parameters an optimizer updates.
    """

    param_names = ("gamma", "beta")
    decay_names = ()
    buffer_names = ("running_mean", "running_var")

    def __init__(self, gamma, beta, momentum: float = 0.9, running_mean=None, running_var=None):
        if gamma.ndim != 1 or beta.shape != gamma.shape:
            raise ShapeError(
                f"BatchNormalization needs gamma and beta of the same shape (C,), got gamma "
                f"{tuple(gamma.shape)} and beta {tuple(beta.shape)}"
            )
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        for name, given in (("running_mean", running_mean), ("running_var", running_var)):
            if given is not None and tuple(given.shape) != tuple(gamma.shape):
                raise ShapeError(
                    f"BatchNormalization needs {name} of gamma's shape {tuple(gamma.shape)}, "
                    f"got {tuple(given.shape)}"
                )
        xp = namespace_of(gamma)
        # the layer's own arrays (Layer's contract): an optimizer's steps and set_params write
        # them in place, never the caller's, and two layers built from one gamma do not share it
        self.gamma = xp.asarray(gamma, copy=True)
        self.beta = xp.asarray(beta, copy=True)
        self.momentum = momentum
        self.running_mean = (
            xp.zeros_like(gamma) if running_mean is None else xp.asarray(running_mean, copy=True)
        )
        self.running_var = (
            xp.ones_like(gamma) if running_var is None else xp.asarray(running_var, copy=True)
        )
        self.dgamma = None
        self.dbeta = None
        self.xn = None  # pragma: no mutate - forward sets these before backward reads them
        self.inv_std = None  # pragma: no mutate
        self.axes = None  # pragma: no mutate

    def _layout(self, x):
        """The axes to reduce over and the shape that broadcasts a (C,) vector against x."""
        C = self.gamma.shape[0]
        if x.ndim == 4 and x.shape[1] == C:
            return (0, 2, 3), (1, C, 1, 1)
        if x.ndim == 2 and x.shape[1] == C:
            return (0,), (1, C)
        raise ShapeError(
            f"{self.name} has {C} channels and expects input (N, {C}) or (N, {C}, H, W), got "
            f"shape {tuple(x.shape)}"
        )

    def forward(self, x, train: bool = True):
        xp = namespace_of(x)
        axes, shape = self._layout(x)
        gamma = xp.reshape(self.gamma, shape)
        beta = xp.reshape(self.beta, shape)
        if not train:
            mean = xp.reshape(self.running_mean, shape)
            inv_std = 1.0 / xp.sqrt(xp.reshape(self.running_var, shape) + EPS)
            return (x - mean) * (inv_std * gamma) + beta
        m = x.shape[0] * (x.shape[2] * x.shape[3] if x.ndim == 4 else 1)
        if m < 2:
            # one value per channel: x̂ = 0, the output is β and the batch variance 0 (as torch,
            # refuse rather than train on nothing)
            raise ShapeError(
                f"{self.name} needs more than one value per channel to train, got an input of "
                f"shape {tuple(x.shape)}; use batches of 2 or more samples (--batch-size 2 or "
                f"more), or train=False to use the running statistics"
            )
        mean = xp.mean(x, axis=axes, keepdims=True)
        xc = x - mean
        var = xp.mean(xc * xc, axis=axes, keepdims=True)
        inv_std = 1.0 / xp.sqrt(var + EPS)
        xn = xc * inv_std
        mo = self.momentum
        unbias = m / (m - 1)
        self.running_mean = mo * self.running_mean + (1.0 - mo) * xp.reshape(mean, (-1,))
        self.running_var = mo * self.running_var + (1.0 - mo) * unbias * xp.reshape(var, (-1,))
        self.xn, self.inv_std, self.axes = xn, inv_std, axes
        return xn * gamma + beta

    def backward(self, dout, input_grad: bool = True):
        xp = namespace_of(dout)
        axes, xn = self.axes, self.xn
        self.dbeta = xp.sum(dout, axis=axes)
        self.dgamma = xp.sum(dout * xn, axis=axes)
        if not input_grad:
            return None
        m = xn.shape[0] * (xn.shape[2] * xn.shape[3] if xn.ndim == 4 else 1)
        shape = (1, -1, 1, 1) if xn.ndim == 4 else (1, -1)
        scale = xp.reshape(self.gamma, shape) * self.inv_std
        mean_dy = xp.reshape(self.dbeta, shape) / m
        mean_dy_xn = xp.reshape(self.dgamma, shape) / m
        return scale * (dout - mean_dy - xn * mean_dy_xn)
