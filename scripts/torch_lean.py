"""PyTorch written for speed: the reference every bench.py ratio is taken against.

What a PyTorch user writes when a small network must train fast in eager mode: raw tensors and
functional ops (no nn.Module dispatch), `torch.addmm` for bias + product, in-place activations,
`torch.autograd.grad` for the gradients (no .grad bookkeeping), and the update as one multi-tensor
operation: `torch._foreach_add_` for SGD, `torch.optim.Adam(fused=True)` for Adam. Every runner
starts from xpnet's initial weights and takes xpnet's minibatches (a permutation per epoch drawn
from (seed, epoch), gathered on the device), so only the speed differs.

`torch.set_num_threads` is the caller's choice (bench.py --torch-threads; docs/performance.md
says which setting was fastest here and by how much).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def tensors(arrays, device, grad=True) -> list:
    """Host NumPy arrays as float32 leaf tensors on `device` (weights: requires_grad)."""
    return [
        torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device).requires_grad_(grad)
        for a in arrays
    ]


def mlp_forward(params: list, x):
    """Scores of the MLP with weights [W1, b1, W2, b2, ...] (W of shape in × out), ReLU between."""
    h = x
    last = len(params) // 2 - 1
    for i in range(0, len(params), 2):
        h = torch.addmm(params[i + 1], h, params[i])
        if i // 2 < last:
            h = h.relu_()  # in place: addmm's backward needs its inputs, not its output
    return h


def cnn_forward(params: list, x):
    """The book's SimpleConvNet: conv 5×5 - ReLU - max pool 2×2 - Affine - ReLU - Affine."""
    W1, b1, W2, b2, W3, b3 = params
    h = F.max_pool2d(F.conv2d(x, W1, b1).relu_(), 2)
    h = torch.addmm(b2, h.flatten(1), W2).relu_()
    return torch.addmm(b3, h, W3)


#: the padding of DeepConvNet's six 3×3 convolutions (the fourth's 2, as in the book)
DEEP_PADS = (1, 1, 1, 2, 1, 1)


def deep_cnn_forward(params: list, x, train: bool = True):
    """The book's DeepConvNet: (conv 3×3 - ReLU - conv 3×3 - ReLU - max pool 2×2) × 3 - Affine -
    ReLU - dropout 0.5 (training only) - Affine."""
    h = x
    for i, pad in enumerate(DEEP_PADS):
        h = F.conv2d(h, params[2 * i], params[2 * i + 1], padding=pad).relu_()
        if i % 2 == 1:
            h = F.max_pool2d(h, 2)
    h = torch.addmm(params[13], h.flatten(1), params[12]).relu_()
    return torch.addmm(params[15], F.dropout(h, 0.5, training=train), params[14])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """xpnet's sample order of an epoch (xpnet.training.epoch_order), without importing xpnet."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(n: int, batch: int, seed: int, iters: int, device):
    """xpnet's minibatch indices (Trainer's epoch order), as device tensors."""
    steps = n // batch
    order = None
    for i in range(iters):
        epoch, k = divmod(i, steps)
        if k == 0 or order is None:
            order = torch.from_numpy(epoch_order(seed, epoch, n)).to(device)
        yield i, order[k * batch : (k + 1) * batch]


class SGD:
    """W ← W − lr·g for every parameter, as one multi-tensor operation."""

    def __init__(self, params, lr: float):
        self.params, self.lr = params, lr

    @torch.no_grad()
    def step(self, grads) -> None:
        torch._foreach_add_(self.params, grads, alpha=-self.lr)


class Adam:
    """torch.optim.Adam with its fused kernel (one launch for all parameters) where the build has
    it for this device, else the multi-tensor (foreach) one."""

    def __init__(self, params, lr: float):
        self.params = params
        try:
            self.opt = torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, ValueError):
            self.opt = torch.optim.Adam(params, lr=lr, foreach=True)

    def step(self, grads) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.opt.step()


def train(forward, params, opt, x, t, seed: int, iters: int, batch: int, after_step=None) -> None:
    """`iters` eager steps on xpnet's minibatches: forward, cross-entropy, autograd.grad, update;
    then `after_step(i, loss)` if given."""
    for i, idx in batches(x.shape[0], batch, seed, iters, x.device):
        loss = F.cross_entropy(forward(params, x.index_select(0, idx)), t.index_select(0, idx))
        grads = torch.autograd.grad(loss, params)
        opt.step(grads)
        if after_step is not None:
            after_step(i, loss)


@torch.no_grad()
def count_correct(forward, params, x, t, chunk: int = 10_000) -> int:
    return int(sum((forward(params, x[i : i + chunk]).argmax(1) == t[i : i + chunk]).sum()
                   for i in range(0, len(x), chunk)))  # fmt: skip
