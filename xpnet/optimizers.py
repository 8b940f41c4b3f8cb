"""Optimizers: update(params, grads) changes each parameter array in place.

State (velocities, moment estimates) is created lazily, per parameter key, with the parameter's
own namespace, device and dtype.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from .errors import ConfigError


def _positive(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")
    return value


class Optimizer:
    """Base class. Subclasses implement `update` and list their per-parameter state in `slots`."""

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float):
        self.lr = _positive("learning rate", lr)
        self.state: dict[str, dict] = {}  # slot name -> {param key -> array}
        self.steps = 0

    def update(self, params: dict, grads: dict) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, key: str, like):
        """The `slot` state array of parameter `key`, created as zeros like the parameter."""
        table = self.state.setdefault(slot, {})
        if key not in table:
            table[key] = array_namespace(like).zeros_like(like)
        return table[key]

    def state_dict(self) -> dict:
        """Everything needed to resume: hyperparameters' step count and the state arrays."""
        return {"steps": self.steps, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.state = {slot: dict(arrays) for slot, arrays in state["state"].items()}


class SGD(Optimizer):
    """Stochastic gradient descent: W ← W − lr·∂L/∂W."""

    def __init__(self, lr: float = 0.01):
        super().__init__(lr)

    def update(self, params: dict, grads: dict) -> None:
        for key, grad in grads.items():
            params[key] -= self.lr * grad
        self.steps += 1
