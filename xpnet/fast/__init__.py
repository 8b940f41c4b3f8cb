"""The fast path: a fully connected network's training step in fewer, fused operations.

The layers (xpnet.nn.layers) are the reference math and the one owner of parameters and
gradients. A training step through them costs dozens of small array operations, and on a GPU each
is a kernel launch of about 10 µs from Python, more than the arithmetic of the slides' 784-50-10
net. For a stack Affine → act → … → Affine → SoftmaxWithLoss on a backend that has kernels here,
``FusedStep`` (step.py) runs the same step as

- a matrix product, then bias + activation in one operation, in place;
- bias + softmax + cross-entropy + its gradient in one operation;
- the activation's derivative in one operation.

It reads the weights from the layers at every call and stores each gradient in the layers'
``dW``/``db`` (a new array, as ``backward`` does), so the book's code, the optimizers and the Trainer
all see the same arrays. The optimizers use the same kernels for their elementwise rules (``sgd``,
``adam``), per parameter, when they are handed them (``optimizer.kernels = optimizer_kernel``).

One truth, written more than once, and said so: the activations (ReLU, sigmoid, tanh) and
softmax–cross-entropy are written in the layers, and SGD and Adam in xpnet.nn.optimizers; each
backend's kernels write them again (kernels_numpy.py in place with ``out=``, kernels_torch.py with
PyTorch's fused ops, kernels_cupy.py and softmax_xent.cu as CUDA). The layers and the optimizers
are the reference: every kernel is compared with them (tests/test_fused.py on every backend that
has it, and ``self_check`` at run time before compiled kernels are first used on a device), never
with itself. There is no generic version of the kernels: on other backends (array_api_strict,
unknown ones) the layers themselves run.

A convolutional network (Convolution → ReLU → 2×2 max pooling … → Affine → SoftmaxWithLoss) gets
a ``ConvStep`` (conv_step.py) on NumPy: each Convolution → ReLU (→ pooling) is one block
(conv_numpy.py: ReLU after the pooling, which commutes with it, on a quarter of the values), the
fully connected layers run as above, and the work is split by samples over worker threads
(threads.py; XPNET_THREADS sets their number). Its loss and gradients are the layers' own, bit for
bit (tests/test_fast_conv.py). ``plan(net)`` returns whichever step fits the network, or None.

By hand (the book's loop: ``net.gradient`` then ``optimizer.update``), ``install(net, optimizer)``
puts the step on the network and the fused kernels in the optimizer (install.py).

Modules: registry.py (which kernels a namespace and device get: ``kernels_for``,
``optimizer_kernel``), step.py (``FusedStep``), conv_step.py (``ConvStep``), conv_numpy.py
(NumPy's convolution block), threads.py (the worker threads), install.py (``install``, ``uninstall``),
check.py (``self_check``).
"""

from .check import CHECKS, fixed_kernels, self_check
from .conv_step import ConvStep
from .install import install, uninstall
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
from .threads import set_threads

__all__ = [
    "ACTIVATION_NAMES",
    "CHECKS",
    "ConvStep",
    "CupyKernels",
    "FusedKernelWarning",
    "FusedStep",
    "NumpyKernels",
    "TorchKernels",
    "fixed_kernels",
    "fused_enabled",
    "install",
    "kernels_for",
    "optimizer_kernel",
    "plan",
    "self_check",
    "set_threads",
    "uninstall",
]
