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
package never imports the fast path; the tests compare its kernels with the code written here.

Modules: base.py (Optimizer: state, kernels, state_dict), sgd.py (SGD, Momentum, Nesterov),
adaptive.py (AdaGrad, RMSProp, Adam, AdamW); OPTIMIZERS and make_optimizer here.
"""

from __future__ import annotations

import inspect

from ...errors import ConfigError, choose
from .adaptive import AdaGrad, Adam, AdamW, RMSProp
from .base import Optimizer
from .sgd import SGD, Momentum, Nesterov

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSProp",
    "make_optimizer",
]

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
