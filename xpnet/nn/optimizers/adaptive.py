"""The adaptive rules: a step per weight scaled by running statistics of its gradients.

AdaGrad, RMSProp, Adam and AdamW (the book's AdaGrad, RMSprop and Adam, with torch.optim's
options). Adam's plain rule below is the reference the fused Adam kernels are compared with.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from ...errors import ConfigError
from .base import Optimizer, _flag, _fraction, _nonnegative, _positive, _with_decay


class AdaGrad(Optimizer):
    """AdaGrad: each weight's step shrinks with the sum of its squared gradients.

    g ← ∂L/∂W + λ·W
    h ← h + g⊙g                          (h starts at initial_accumulator_value)
    W ← W − lr_t·g / (√h + ε),  lr_t = lr / (1 + (t − 1)·lr_decay)

    The book has h from 0, no decays, and adds 1e-7 outside the square root where torch's ε is 1e-10.
    """

    def __init__(
        self,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ):
        super().__init__(lr)
        self.lr_decay = _nonnegative("lr decay", lr_decay)
        self.weight_decay = _nonnegative("weight decay", weight_decay)
        self.initial_accumulator_value = _nonnegative(
            "initial accumulator value", initial_accumulator_value
        )
        self.eps = _positive("eps", eps)
        self.slots = ("sum",)

    def update(self, params: dict, grads: dict) -> None:
        self.steps += 1
        lr_t = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        for key, grad in grads.items():
            p = params[key]
            xp = array_namespace(p)
            g = _with_decay(grad, p, self.weight_decay)
            h = self._slot("sum", key, p, fill=self.initial_accumulator_value)
            h += g * g
            denom = xp.sqrt(h)
            denom += self.eps
            step = g / denom
            step *= lr_t
            p -= step


class RMSProp(Optimizer):
    """RMSProp: divide each step by a running root mean square of the gradients.

    g ← ∂L/∂W + λ·W
    v ← α·v + (1 − α)·g⊙g;  s ← √v + ε
    centered: ḡ ← α·ḡ + (1 − α)·g;  s ← √(v − ḡ⊙ḡ) + ε       (ε outside the root, as torch)
    W ← W − lr·g / s, or with momentum μ > 0: b ← μ·b + g / s, W ← W − lr·b   (b from 0)

    The book's RMSprop is the plain rule with α = 0.99 and 1e-7 in place of ε = 1e-8.
    """

    def __init__(
        self,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(lr)
        self.alpha = _fraction("alpha", alpha)
        self.eps = _positive("eps", eps)
        self.weight_decay = _nonnegative("weight decay", weight_decay)
        self.momentum = _fraction("momentum", momentum)
        self.centered = _flag("centered", centered)
        self.slots = (
            "square_avg",
            *(("grad_avg",) if self.centered else ()),
            *(("momentum_buffer",) if self.momentum else ()),
        )

    def update(self, params: dict, grads: dict) -> None:
        self.steps += 1
        alpha, mu = self.alpha, self.momentum
        for key, grad in grads.items():
            p = params[key]
            xp = array_namespace(p)
            g = _with_decay(grad, p, self.weight_decay)
            v = self._slot("square_avg", key, p)
            v *= alpha
            sq = g * g
            sq *= 1 - alpha
            v += sq
            if self.centered:
                g_avg = self._slot("grad_avg", key, p)
                g_avg *= alpha
                g_avg += (1 - alpha) * g
                denom = xp.sqrt(v - g_avg * g_avg)
            else:
                denom = xp.sqrt(v)
            denom += self.eps
            step = g / denom
            if mu:
                b = self._slot("momentum_buffer", key, p)
                b *= mu
                b += step
                step = b
            p -= self.lr * step


class Adam(Optimizer):
    """Adam: steps by bias-corrected running means of the gradient and of its square.

    g ← ∂L/∂W + λ·W
    m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g⊙g;  amsgrad: v_max ← max(v_max, v), used for v
    W ← W − lr·m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

    The book folds both corrections into lr_t = lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ) and adds 1e-7 to √v, not
    to √v̂: on this scale its ε is 1e-7 / √(1 − β₂ᵗ), about 3e-6 at the first step.
    """

    decoupled = False  # AdamW's decay, taken straight from the weights instead of through g

    def __init__(
        self,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        super().__init__(lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ConfigError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_fraction("beta1", beta1), _fraction("beta2", beta2))
        self.eps = _positive("eps", eps)
        self.weight_decay = _nonnegative("weight decay", weight_decay)
        self.amsgrad = _flag("amsgrad", amsgrad)
        self.slots = ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if self.amsgrad else ()))

    def _factors(self, t: int) -> tuple[float, float, float]:
        """(step size lr / (1 − β₁ᵗ), √(1 − β₂ᵗ), decoupled shrink 1 − lr·λ) for step t."""
        beta1, beta2 = self.betas
        shrink = 1 - self.lr * self.weight_decay if self.decoupled else 1.0
        return self.lr / (1 - beta1**t), math.sqrt(1 - beta2**t), shrink

    def update(self, params: dict, grads: dict) -> None:
        self.steps += 1
        t, (beta1, beta2), wd = self.steps, self.betas, self.weight_decay
        step_size, root_correction, shrink = self._factors(t)
        fusable = not self.amsgrad and (self.decoupled or not wd)
        for key, grad in grads.items():
            p = params[key]
            kernel = self._kernel("adam", p) if fusable else None
            if kernel is not None:
                m, v = self._slot("exp_avg", key, p), self._slot("exp_avg_sq", key, p)
                kernel(p, grad, m, v, beta1, beta2, step_size, root_correction, self.eps, shrink)
                continue
            xp = array_namespace(p)
            if self.decoupled:
                g = grad
                if wd:
                    p *= shrink
            else:
                g = _with_decay(grad, p, wd)
            m = self._slot("exp_avg", key, p)
            m *= beta1
            m += (1 - beta1) * g
            v = self._slot("exp_avg_sq", key, p)
            v *= beta2
            sq = g * g
            sq *= 1 - beta2
            v += sq
            if self.amsgrad:
                v_max = self._slot("max_exp_avg_sq", key, p)
                v = self.state["max_exp_avg_sq"][key] = xp.maximum(v_max, v)
            # √v̂ + ε as √v / √(1 − β₂ᵗ) + ε: one root of an array, the other of a Python float
            denom = xp.sqrt(v)
            denom /= root_correction
            denom += self.eps
            step = m / denom
            step *= step_size
            p -= step


class AdamW(Adam):
    """Adam with decoupled weight decay: W ← W·(1 − lr·λ) first, then Adam's step on g = ∂L/∂W.

    λ (default 0.01) shrinks the weights directly instead of entering g, so the moments hold the
    loss's gradient alone. The book has no AdamW.
    """

    decoupled = True

    def __init__(
        self,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
    ):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)
