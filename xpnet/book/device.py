"""Where xpnet.book's arrays live. The environment chooses, since the book's scripts are not edited.

- ``XPNET_DEVICE``: ``cpu`` (the default) or ``cuda`` (or ``cuda:N``, or any device that
  ``xpnet.backend.resolve`` knows). With ``cuda``, ``load_mnist`` returns CuPy arrays and the networks
  compute on the GPU, so the scripts' own NumPy calls on those arrays (``np.argmax``, ``np.sum``)
  dispatch to CuPy. Without a GPU: one DeviceFallbackWarning, then the CPU.
- ``XPNET_BACKEND``: a backend by name (numpy, cupy, torch, array_api_strict); default: the
  device's (CuPy for cuda).
- ``XPNET_DTYPE``: the networks' floating dtype, float32 or float64. Unset: float64 for new
  networks, as the book's, and the file's dtype for loaded weights, as the book's ``load_params``
  (ch03's sample_weight.pkl is float32). MNIST's images are float32 either way, as the book's.
"""

from __future__ import annotations

import functools
import numbers
import os

import numpy as np

from ..backend import DTYPES, Backend, resolve, to_numpy
from ..errors import choose


@functools.cache
def _resolve(device: str, backend: str | None) -> Backend:
    return resolve(device, backend)  # cached: the fallback warning comes once per process


def backend() -> Backend:
    """The backend and device that ``XPNET_DEVICE`` and ``XPNET_BACKEND`` name (default: NumPy)."""
    device = os.environ.get("XPNET_DEVICE") or "cpu"
    return _resolve(device, os.environ.get("XPNET_BACKEND") or None)


def dtype() -> str | None:
    """The dtype ``XPNET_DTYPE`` names, or None when it is unset."""
    name = os.environ.get("XPNET_DTYPE")
    return choose("XPNET_DTYPE", name, DTYPES) if name else None


def put(x, be: Backend | None = None):
    """`x` on the backend: NumPy arrays and numbers are moved there, its own arrays pass as they are."""
    be = be if be is not None else backend()
    if be.name == "numpy":
        return x
    if isinstance(x, np.ndarray | np.generic | numbers.Number | list):
        return be.asarray(np.asarray(x))
    return x


def host_scalar(value):
    """A 0-d result as a NumPy scalar on the host (np.float64 for the book's float64), as the
    book's code returns: printed with ``str`` it shows the plain number on every backend."""
    if isinstance(value, np.generic):
        return value
    if isinstance(value, numbers.Number):
        return np.float64(value)
    return np.asarray(to_numpy(value))[()]
