"""The fast path's names at the path they had when it was one module (xpnet.fast.fused).

The code now lives beside this module (see xpnet.fast's docstring): the kernels per backend in
kernels_numpy.py, kernels_torch.py and kernels_cupy.py (with softmax_xent.cu), the registry in
registry.py, FusedStep in step.py and self_check in check.py. New code imports from xpnet.fast.
"""

from .check import CHECKS, fixed_kernels, self_check
from .kernels_cupy import CupyKernels
from .kernels_numpy import NumpyKernels
from .kernels_torch import TorchKernels
from .registry import (
    FusedKernelWarning,
    fused_enabled,
    kernels_for,
    optimizer_kernel,
    plan,
)
from .step import ACTIVATION_NAMES, FusedStep

__all__ = [
    "ACTIVATION_NAMES",
    "CHECKS",
    "CupyKernels",
    "FusedKernelWarning",
    "FusedStep",
    "NumpyKernels",
    "TorchKernels",
    "fixed_kernels",
    "fused_enabled",
    "kernels_for",
    "optimizer_kernel",
    "plan",
    "self_check",
]
