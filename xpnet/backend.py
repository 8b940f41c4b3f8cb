"""The edge where a backend and a device are chosen.

Everything else in xpnet takes its array namespace and device from the arrays it is given
(`array_api_compat.array_namespace(x)`, `array_api_compat.device(x)`); only this module, the data
loaders and the command line pick them.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_numpy_array,
    is_torch_array,
)
from array_api_compat import device as device_of

from .errors import BackendError, ConfigError, choose

BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
# array_api_strict's fake devices (besides its CPU), which catch every missing device=
_STRICT_DEVICES = ("CPU_DEVICE", "device1", "device2")

_INSTALL_HINT = {
    "torch": "pip install torch==2.13.0",
    "cupy": 'pip install "xpnet[cuda12]" (or [cuda13], matching your CUDA driver)',
    "array_api_strict": "pip install array-api-strict",
}


class DeviceFallbackWarning(UserWarning):
    """A GPU was asked for but cannot be used, so the CPU is used instead."""


@dataclass(frozen=True)
class Backend:
    """An array namespace and a device on it: the pair every array of one run lives on."""

    name: str
    xp: Any
    device: Any

    def asarray(self, a, dtype=None):
        """Copy a host array (or nested sequence) onto this device, optionally casting on the host first."""
        return asarray(a, self.xp, self.device, dtype)

    def dtype(self, name):
        """The namespace's dtype object for a name such as "float32" (a dtype object passes through)."""
        return resolve_dtype(self.xp, name)

    def zeros(self, shape, dtype="float32"):
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def ones(self, shape, dtype="float32"):
        return self.xp.ones(shape, dtype=self.dtype(dtype), device=self.device)

    def __str__(self) -> str:
        return f"{self.name} on {self.device}"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} is not installed ({exc}); install it with: {_INSTALL_HINT.get(name, 'pip')}"
        ) from None


def gpu_available(backend: str = "cupy") -> bool:
    """Whether `backend` ("cupy" or "torch") is installed and sees at least one CUDA GPU."""
    try:
        if backend == "cupy":
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # no driver, no runtime library, or not installed: all mean "no GPU"
        return False
    return False


def namespace(backend: str):
    """The Array API namespace of a backend by name (imported on first use)."""
    choose("backend", backend, BACKENDS)
    if backend == "numpy":
        import array_api_compat.numpy as xp
    elif backend == "array_api_strict":
        xp = _import("array_api_strict")
    elif backend == "torch":
        _import("torch")
        import array_api_compat.torch as xp
    else:
        _import("cupy")
        import array_api_compat.cupy as xp
    return xp


def _fallback(what: str) -> None:
    warnings.warn(f"{what}; falling back to the CPU", DeviceFallbackWarning, stacklevel=3)


def _infer_backend(device) -> str | None:
    """Guess the backend from a native device object (torch.device, array_api_strict.Device...)."""
    module = type(device).__module__.split(".")[0]
    return {"torch": "torch", "array_api_strict": "array_api_strict", "cupy": "cupy"}.get(module)


def resolve(device: Any = "auto", backend: str | None = None) -> Backend:
    """Turn a device ("auto", "cpu", "cuda", "cuda:N", or a native device) and a backend name into a Backend.

    With no backend named, "cuda" and "auto" mean CuPy when it sees a GPU; "cuda" without one warns
    (DeviceFallbackWarning) and falls back to NumPy on the CPU. A backend named explicitly is never
    swapped for another: torch without CUDA falls back to torch on the CPU, and CuPy without a GPU
    is an error.
    """
    if isinstance(device, Backend):
        return device
    if device is None:
        device = "auto"
    if not isinstance(device, str):
        backend = backend or _infer_backend(device)
        if backend is None:
            raise ConfigError(
                f"cannot tell which backend device {device!r} belongs to; pass backend="
            )
        return Backend(backend, namespace(backend), device)

    kind, _, index = device.partition(":")
    if kind not in (*DEVICES, *_STRICT_DEVICES) or (index and not index.isdigit()):
        raise ConfigError(
            f"unknown device {device!r}; choose one of: {', '.join(DEVICES)} (or cuda:N), or "
            f"{', '.join(_STRICT_DEVICES[1:])} with backend array_api_strict"
        )
    if index and kind != "cuda":
        raise ConfigError(f"unknown device {device!r}: only cuda devices take an index (cuda:N)")
    if backend is None:
        if kind in _STRICT_DEVICES[1:]:
            backend = "array_api_strict"
        elif kind in ("cuda", "auto") and gpu_available("cupy"):
            backend = "cupy"
        else:
            if kind == "cuda":
                _fallback("--device cuda needs CuPy and a CUDA GPU, and none was found")
            backend, device, kind = "numpy", "cpu", "cpu"
    choose("backend", backend, BACKENDS)

    if backend == "numpy":
        if kind not in ("auto", "cpu", "CPU_DEVICE"):
            raise ConfigError(
                f"numpy runs on the CPU only, not {device!r}; use --backend cupy or torch for a GPU"
            )
        return Backend("numpy", namespace("numpy"), "cpu")

    if backend == "array_api_strict":
        xs = namespace(backend)
        if kind in ("auto", "cpu"):
            return Backend(backend, xs, xs.Device("CPU_DEVICE"))
        if kind not in _STRICT_DEVICES:
            raise ConfigError(
                f"array_api_strict has no device {device!r}; use cpu, device1 or device2"
            )
        return Backend(backend, xs, xs.Device(device))

    if backend == "torch":
        xp = namespace(backend)
        import torch

        if kind == "cpu":
            return Backend(backend, xp, torch.device("cpu"))
        if kind not in ("auto", "cuda"):
            raise ConfigError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
        if kind in _STRICT_DEVICES:
            raise ConfigError(f"torch has no device {device!r}; use cpu or cuda")
        if torch.cuda.is_available():
            if index and int(index) >= torch.cuda.device_count():
                raise BackendError(
                    f"torch sees {torch.cuda.device_count()} CUDA GPU(s), so there is no {device!r}; "
                    f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
                )
            # with its index: tensors report cuda:0, and torch.device("cuda") != cuda:0
            number = int(index) if index else torch.cuda.current_device()
            return Backend(backend, xp, torch.device("cuda", number))
        if kind == "cuda":
            _fallback("torch sees no CUDA GPU")
        return Backend(backend, xp, torch.device("cpu"))

    # cupy
    if kind == "cpu":
        raise ConfigError("cupy runs on a CUDA GPU only; use --backend numpy for the CPU")
    if kind not in ("auto", "cuda"):
        raise ConfigError(f"cupy has no device {device!r}; use cuda or cuda:N")
    xp = namespace(backend)
    if not gpu_available("cupy"):
        raise BackendError("cupy is installed but sees no CUDA GPU; use --device cpu")
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    number = int(index) if index else 0
    if number >= count:
        raise BackendError(
            f"CuPy sees {count} CUDA GPU(s), so there is no {device!r}; use cuda:0 .. cuda:{count - 1}"
        )
    gpu = cupy.cuda.Device(number)
    # CuPy launches kernels on the current device, not on the arrays': make this one current
    gpu.use()
    return Backend(backend, xp, gpu)


def backend_of(x) -> Backend:
    """The Backend an array lives on."""
    xp = array_namespace(x)
    if is_numpy_array(x):
        name = "numpy"
    elif is_torch_array(x):
        name = "torch"
    elif is_cupy_array(x):
        name = "cupy"
    elif is_array_api_strict_namespace(xp):
        name = "array_api_strict"
    else:
        name = getattr(xp, "__name__", "unknown")
    return Backend(name, xp, device_of(x))


_NAMESPACE_BY_TYPE: dict[type, Any] = {}


def namespace_of(x):
    """array_namespace(x) for a single array, memoized on type(x).

    An array's namespace is determined by its type (every NumPy array maps to
    array_api_compat.numpy, every torch.Tensor to array_api_compat.torch...), and the full
    lookup costs microseconds, which adds up over the dozen layer calls of a training step.
    """
    try:
        return _NAMESPACE_BY_TYPE[type(x)]
    except KeyError:
        xp = _NAMESPACE_BY_TYPE[type(x)] = array_namespace(x)
        return xp


def resolve_dtype(xp, dtype):
    """The namespace's dtype for a name ("float32"), or the dtype itself."""
    if isinstance(dtype, str):
        choose("dtype", dtype, (*DTYPES, "int64", "int32", "uint8", "bool"))
        return getattr(xp, dtype)
    return dtype


def dtype_name(xp, dtype) -> str:
    """The standard name of a namespace dtype ("float32", "int64", ...), or of a name."""
    dtype = resolve_dtype(xp, dtype)
    for name in (
        "float32",
        "float64",
        "float16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
    ):
        if hasattr(xp, name) and dtype == getattr(xp, name):
            return name
    raise ConfigError(f"unsupported dtype {dtype!r}")


def asarray(a, xp, device, dtype=None):
    """Copy a host array onto `device` of namespace `xp`, casting on the host first (less to copy)."""
    if dtype is not None:
        dtype = resolve_dtype(xp, dtype)
        a = np.asarray(a, dtype=dtype_name(xp, dtype))
    return xp.asarray(a, device=device)


def to_numpy(x) -> np.ndarray:
    """A NumPy copy (or view, for NumPy input) of an array from any backend, on the host."""
    if isinstance(x, np.ndarray):
        return x
    if is_numpy_array(x):  # NumPy scalars
        return np.asarray(x)
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    xp = array_namespace(x)
    if is_array_api_strict_namespace(xp):
        x = x.to_device(xp.Device("CPU_DEVICE"))
    return np.from_dlpack(x).copy()


def synchronize(x) -> None:
    """Wait until the device that holds `x` has finished its queued work (for honest timings)."""
    if is_cupy_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif is_torch_array(x) and x.device.type == "cuda":
        import torch

        torch.cuda.synchronize(x.device)


class Random:
    """Seeded random draws made on the host with NumPy and moved to the device once.

    Drawing on the host in float64 and casting there gives bit-identical initial weights on every
    backend and device for the same seed.
    """

    def __init__(self, seed: int | None = 0):
        self.seed = seed
        self.generator = np.random.default_rng(seed)

    def normal(self, shape, std: float = 1.0, *, xp, device, dtype="float32"):
        """Gaussian N(0, std²) samples of `shape` on `device`."""
        host = self.generator.standard_normal(shape) * std
        return asarray(host, xp, device, dtype)

    def permutation(self, n: int) -> np.ndarray:
        """A permutation of range(n) on the host (int64)."""
        return self.generator.permutation(n)

    def get_state(self) -> dict:
        return self.generator.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.generator.bit_generator.state = state
