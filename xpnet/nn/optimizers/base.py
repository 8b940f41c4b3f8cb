"""The optimizers' base class: state per parameter, fused kernels when handed them, checkpoints.

Also the checks every optimizer applies to its hyperparameters (one-line ConfigErrors).
"""

from __future__ import annotations

import inspect
import math

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ...backend import dtype_name, to_numpy
from ...errors import CheckpointError, ConfigError


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
