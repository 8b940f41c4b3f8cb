"""Which fused kernels a namespace and device get: one kernels object per (namespace, device).

``kernels_for`` builds a backend's kernels object on first use and memoises it per namespace and
device, since a compiled CUDA module belongs to the GPU it was loaded on; compiled kernels are
checked against the layers (``xpnet.fast.check.self_check``) before their first use on each
device. ``optimizer_kernel`` is what the Trainer hands an optimizer as its ``kernels``.
"""

from __future__ import annotations

import os
import warnings

from array_api_compat import device as device_of
from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from ..backend import DTYPES, Backend, dtype_name, namespace_of
from . import check
from .kernels_cupy import CupyKernels
from .kernels_numpy import NumpyKernels
from .kernels_torch import TorchKernels
from .step import FusedStep

#: (namespace, device key) -> kernels object, or None where a self-check failed
_KERNELS: dict = {}


class FusedKernelWarning(UserWarning):
    """A backend's fused kernels failed their self-check; the layers are used instead."""


def fused_enabled() -> bool:
    """False when XPNET_FUSED=0 is set: every step then runs through the layers."""
    return os.environ.get("XPNET_FUSED", "1") != "0"


def device_key(xp, device):
    """A hashable name for one device of `xp`; None means the namespace's default device.

    CuPy's devices by number (None: the current one); elsewhere the device object itself.
    """
    if is_cupy_namespace(xp):
        import cupy

        return (
            cupy.cuda.runtime.getDevice() if device is None else int(getattr(device, "id", device))
        )
    if device is None:
        info = getattr(xp, "__array_namespace_info__", None)
        return info().default_device() if info is not None else None
    return device


def kernels_for(xp, device=None, dtype=None, uses=()):
    """The fast kernels for a namespace on a device (None where there are none, or XPNET_FUSED=0).

    Memoised per (namespace, device): a CuPy module loaded on one GPU cannot run on another. The
    compiled CuPy kernels are checked against the layers (`self_check`, on `device`) the first
    time each of `uses` is asked for in `dtype` on that device: an activation's name ("relu",
    "sigmoid", "tanh": the step's kernels for that activation) or an optimizer kernel ("sgd",
    "adam"). So a run compiles and checks only what it uses (a CUDA compile takes a fraction of
    a second each). If a check fails, that device's kernels are replaced by None, with a
    FusedKernelWarning.
    """
    if not fused_enabled():
        return None
    key = (xp, device_key(xp, device))
    if key not in _KERNELS:
        factory = _factory(xp)
        kernels = factory(key[1]) if factory is not None else None
        if getattr(kernels, "compiled", False):
            # (dtype, use) pairs that passed self_check, the dtype by name and as it was given
            kernels.verified = set()
        _KERNELS[key] = kernels
    kernels = _KERNELS[key]
    if kernels is None or not getattr(kernels, "compiled", False):
        return kernels
    # the optimizers ask at every update: a dtype seen before is found without naming it
    if all((dtype, use) in kernels.verified for use in uses):
        return kernels
    name = dtype_name(xp, dtype)
    if name not in DTYPES:  # checked in float32 and float64 only: plain rules elsewhere
        return None
    todo = [use for use in uses if (name, use) not in kernels.verified]
    if not todo:
        kernels.verified.update((dtype, use) for use in uses)
        return kernels
    # the self-check runs the optimizers, which ask for these kernels: until it is done they
    # get none (the plain rules), so the check never recurses into itself
    _KERNELS[key] = None
    try:
        problem = check.self_check(Backend(type(kernels).__name__, xp, device), kernels, name, todo)
    except Exception as exc:  # a compile or launch failure: report it, fall back
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if problem is not None:
        _forget_optimizer_kernels()  # the device's kernels are not to be used any more
        warnings.warn(
            f"xpnet's {type(kernels).__name__} failed their self-check ({problem}); using "
            f"the layers, which are correct but slower. Please report this.",
            FusedKernelWarning,
            stacklevel=2,
        )
        return None
    kernels.verified.update((d, use) for use in uses for d in (name, dtype))
    _KERNELS[key] = kernels
    return kernels


def optimizer_kernel(use: str, like):
    """The fused kernel for optimizer rule `use` ("sgd", "adam") on arrays like `like`, or None.

    What the Trainer hands an optimizer as its ``kernels`` (xpnet.nn.optimizers.Optimizer).
    """
    memo = _memo_key(use, like)
    if memo in _KERNELS:
        return _KERNELS[memo]
    kernels = kernels_for(namespace_of(like), device_of(like), like.dtype, (use,))
    if kernels is None:  # none here, or a self-check running or failed: ask again next time
        return None
    found = getattr(kernels, use, None)
    if memo is not None:
        _KERNELS[memo] = found
    return found


def _memo_key(use: str, like):
    """What decides `optimizer_kernel`'s answer for arrays like `like` (None: not hashable).

    Asked for every parameter at every update, the answer is kept in _KERNELS under this key
    (so a fresh _KERNELS forgets it), and forgotten when a self-check fails.
    """
    key = ("optimizer", use, type(like), like.dtype, getattr(like, "device", None),
           os.environ.get("XPNET_FUSED"))  # fmt: skip
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _forget_optimizer_kernels() -> None:
    for key in [k for k in _KERNELS if k[0] == "optimizer"]:
        del _KERNELS[key]


def _factory(xp):
    """The kernels class for a namespace (called with a device key), or None."""
    if is_numpy_namespace(xp):
        return NumpyKernels
    if is_torch_namespace(xp):
        return TorchKernels
    if is_cupy_namespace(xp):
        return CupyKernels
    return None


def plan(net):
    """`net`'s fused step with its backend's checked kernels, or None (no kernels there,
    XPNET_FUSED=0, or layers of another form: then the layers run)."""
    uses = FusedStep.uses(net)
    if uses is None:
        return None
    be = net.backend
    return FusedStep.plan(net, kernels_for(be.xp, be.device, net.dtype, uses))
