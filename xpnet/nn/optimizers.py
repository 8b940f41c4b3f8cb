"""Optimizers: update(params, grads) changes each parameter array in place.

State (velocities, moment estimates) is created lazily, per parameter key, with the parameter's
own namespace, device and dtype. Each rule follows the definition of its torch.optim namesake;
the class docstrings say where the book's version differs.

The step count t counts update() calls, so every parameter is expected in every call (a Network's
grads always hold them all). Step-dependent factors (bias corrections, AdaGrad's decayed rate) are
Python floats: they never change a dtype and never read a value back from the device.

The rules written here are the reference. An optimizer can be handed a backend's fused kernels
(``kernels``, e.g. xpnet.fast.optimizer_kernel, which the Trainer hands it): then the plain SGD
and Adam/AdamW rules update each parameter in one operation where that backend has one. This
module never imports the fast path; the tests compare its kernels with the code written here.
"""

from __future__ import annotations

import inspect
import math

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ..backend import dtype_name, to_numpy
from ..errors import CheckpointError, ConfigError, choose


def _number(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _positive(name: str, value) -> float:
    value = _number(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")
    return value


def _nonnegative(name: str, value) -> float:
    value = _number(name, value)
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def _fraction(name: str, value) -> float:
    value = _number(name, value)
    if not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")
    return value


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def _with_decay(grad, param, weight_decay: float):
    """g + λ·W, the gradient of the loss plus ½·λ·‖W‖²: a new array, `grad` itself is left alone."""
    return grad + weight_decay * param if weight_decay else grad


def _adopt(array, like):
    """A copy of a loaded state array with `like`'s namespace, device and dtype."""
    xp = array_namespace(like)
    # pragma: no mutate start - a shortcut: either path gives the same array
    try:
        same = array_namespace(array) is xp and device_of(array) == device_of(like)
    except TypeError:  # not an array of any namespace array_api_compat knows
        same = False
    # pragma: no mutate end
    if same:
        return xp.astype(array, like.dtype, copy=True)
    # another backend or device (NumPy from a checkpoint, say): through the host, once per load;
    # astype copies, since torch.asarray and others may share a NumPy array's memory
    host = to_numpy(array).astype(dtype_name(xp, like.dtype))
    return xp.asarray(host, device=device_of(like))


class Optimizer:
    """Base class. Subclasses implement `update` and list their per-parameter state in `slots`.

    ``kernels``: None (the default) runs the rules written here, the kernels' reference; else a
    callable ``kernels(use, like)`` returning the fused kernel for rule `use` ("sgd", "adam") on
    arrays like `like`, or None where that backend has none (xpnet.fast.optimizer_kernel).
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = _positive("learning rate", lr)
        self.state: dict[str, dict] = {}  # slot name -> {param key -> array}
        self.steps = 0
        self.kernels = None
        self._loaded: set[tuple[str, str]] = set()  # (slot, key) of arrays not yet adopted

    @property
    def lr(self) -> float:
        """The learning rate; a scheduler may change it between steps."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        # a Python float: a NumPy float64 scalar times a float32 array would make it float64
        value = _number("learning rate", value)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"learning rate must be >= 0, got {value}")
        self._lr = value

    def update(self, params: dict, grads: dict) -> None:
        raise NotImplementedError

    def _kernel(self, name: str, like):
        """The backend's fused kernel `name` for arrays like `like`, or None."""
        return None if self.kernels is None else self.kernels(name, like)

    def _slot(self, slot: str, key: str, like, fill: float = 0.0, first=None):
        """The `slot` state array of parameter `key`, created like the parameter when missing:
        filled with `fill`, or a copy of `first`."""
        table = self.state.setdefault(slot, {})
        array = table.get(key)
        if array is None:
            xp = array_namespace(like)
            if first is not None:
                array = xp.astype(first, like.dtype, copy=True)
            elif fill:
                array = xp.full_like(like, fill)
            else:
                array = xp.zeros_like(like)
            table[key] = array
        elif self._loaded and (slot, key) in self._loaded:
            array = table[key] = _adopt(array, like)
            self._loaded.discard((slot, key))
        return array

    def state_dict(self) -> dict:
        """Everything needed to resume: the step count and the state arrays {slot: {key: array}}.

        The arrays are the live ones, which later updates change in place; copy them for a snapshot.
        """
        return {"steps": self.steps, "state": {s: dict(a) for s, a in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`'s output, with arrays on any backend (NumPy from a file, say).

        Each array is copied onto its parameter's namespace, device and dtype by the first update
        that sees the parameter, so the arrays given here are never changed.
        """
        try:
            steps, slots = int(state["steps"]), dict(state["state"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                "optimizer state needs a step count 'steps' and state arrays 'state'"
            ) from None
        if steps and set(slots) != set(self.slots):
            raise CheckpointError(
                f"optimizer state with slots {sorted(slots)} does not fit {self!r}, which keeps "
                f"{sorted(self.slots)}; resume with the optimizer and options that saved it"
            )
        self.steps = steps
        self.state = {slot: dict(arrays) for slot, arrays in slots.items()}
        self._loaded = {(slot, key) for slot, arrays in self.state.items() for key in arrays}

    def __repr__(self) -> str:
        names = [n for n in inspect.signature(type(self)).parameters if hasattr(self, n)]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"


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
            for key, grad in grads.items():
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


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(name: str, lr: float | None = None, **kwargs) -> Optimizer:
    """The optimizer called `name` ("sgd", "adam", ...); lr None keeps the class's default."""
    key = name.lower() if isinstance(name, str) else name
    cls = OPTIMIZERS[choose("optimizer", key, tuple(OPTIMIZERS))]
    options = inspect.signature(cls).parameters
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        raise ConfigError(
            f"optimizer {key!r} has no option {unknown[0]!r}; its options are: {', '.join(options)}"
        )
    if lr is not None:
        kwargs["lr"] = lr
    return cls(**kwargs)
