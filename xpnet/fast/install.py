"""The fast path for a network used by hand: the book reader's loop, in one line.

    net = xpnet.SimpleConvNet()
    optimizer = xpnet.Adam(lr=0.001)
    xpnet.fast.install(net, optimizer)       # the one line
    for x, t in batches:
        grads = net.gradient(x, t)           # the fused step, the layers' numbers
        optimizer.update(net.params, grads)  # Adam's fused kernel

``install`` puts the network's fast step (FusedStep or ConvStep) on the network instance
(``Network.fast_step``: the nn package calls it and never imports this one) and hands the
optimizer the fused kernels, as the Trainer does. ``uninstall`` goes back to the layers.
"""

from __future__ import annotations

from .registry import optimizer_kernel, plan


def install(net, optimizer=None):
    """Run `net`'s training passes (``gradient``, ``forward_backward``) and evaluations
    (``predict``, ``accuracy``) on its fast step, and `optimizer`'s updates on the fused kernels.

    Returns the step, or None where there is none (a backend or network form without kernels,
    or XPNET_FUSED=0): then the layers keep running. The numbers are the layers' own; the
    layers' caches are not filled, so a backward pass by hand through ``net.layers`` needs a
    forward pass through the layers first (``net.loss(x, t)`` runs the layers).
    """
    step = plan(net)
    net.fast_step = step
    if optimizer is not None:
        optimizer.kernels = optimizer_kernel if step is not None else None
    return step


def uninstall(net, optimizer=None) -> None:
    """Back to the layers (and the optimizer's plain rules): undoes ``install``."""
    net.fast_step = None
    if optimizer is not None:
        optimizer.kernels = None
