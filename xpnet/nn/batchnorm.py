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

The book's choices are options (xpnet.book selects them): ``per_activation=True`` normalizes an
(N, C, H, W) input per activation, as (N, C·H·W) rows (γ and β then have C·H·W entries),
``unbiased=False`` keeps the biased batch variance in the running average, ``eps=1e-6``, and
running statistics given as zeros start where the book's do.
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

    Options (the defaults are torch's; the module docstring lists the book's): ``eps`` (ε),
    ``unbiased`` (the running variance takes the batch variance ×m/(m − 1); False: as it is, and
    a batch of one value per channel may then train, its x̂ being 0), ``per_activation`` (an input
    of more than two axes is normalized as (N, rest) rows, per activation, not per channel).
    """

    param_names = ("gamma", "beta")
    decay_names = ()
    buffer_names = ("running_mean", "running_var")

    def __init__(
        self,
        gamma,
        beta,
        momentum: float = 0.9,
        running_mean=None,
        running_var=None,
        *,
        eps: float = EPS,
        unbiased: bool = True,
        per_activation: bool = False,
    ):
        if gamma.ndim != 1 or beta.shape != gamma.shape:
            raise ShapeError(
                f"BatchNormalization needs gamma and beta of the same shape (C,), got gamma "
                f"{tuple(gamma.shape)} and beta {tuple(beta.shape)}"
            )
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        eps = float(eps)
        if not eps > 0.0:
            raise ConfigError(f"eps must be a positive number, got {eps}")
        for name, flag in (("unbiased", unbiased), ("per_activation", per_activation)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} must be True or False, got {flag!r}")
        self.eps, self.unbiased, self.per_activation = eps, unbiased, per_activation
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

    def _rows(self, x):
        """x as (N, rest) rows when normalizing per activation, else x itself."""
        if self.per_activation and x.ndim > 2:
            return namespace_of(x).reshape(x, (x.shape[0], -1))
        return x

    def forward(self, x, train: bool = True):
        if x.ndim > 2 and self.per_activation:
            out = self._forward(self._rows(x), train)
            return namespace_of(x).reshape(out, tuple(x.shape))
        return self._forward(x, train)

    def _forward(self, x, train: bool):
        xp = namespace_of(x)
        axes, shape = self._layout(x)
        gamma = xp.reshape(self.gamma, shape)
        beta = xp.reshape(self.beta, shape)
        if not train:
            mean = xp.reshape(self.running_mean, shape)
            inv_std = 1.0 / xp.sqrt(xp.reshape(self.running_var, shape) + self.eps)
            return (x - mean) * (inv_std * gamma) + beta
        m = x.shape[0] * (x.shape[2] * x.shape[3] if x.ndim == 4 else 1)
        if m < 2 and self.unbiased:
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
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        xn = xc * inv_std
        mo = self.momentum
        weight = (1.0 - mo) * (m / (m - 1)) if self.unbiased else 1.0 - mo
        self.running_mean = mo * self.running_mean + (1.0 - mo) * xp.reshape(mean, (-1,))
        self.running_var = mo * self.running_var + weight * xp.reshape(var, (-1,))
        self.xn, self.inv_std, self.axes = xn, inv_std, axes
        return xn * gamma + beta

    def backward(self, dout, input_grad: bool = True):
        if dout.ndim > 2 and self.per_activation:
            dx = self._backward(self._rows(dout), input_grad)
            return None if dx is None else namespace_of(dx).reshape(dx, tuple(dout.shape))
        return self._backward(dout, input_grad)

    def _backward(self, dout, input_grad: bool):
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
