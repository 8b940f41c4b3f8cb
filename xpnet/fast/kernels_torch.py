"""PyTorch's fused kernels: its own fused ops (threshold_backward, log_softmax, nll_loss, add_...).

One truth, written twice: the activations and softmax–cross-entropy are the layers' math
(xpnet.nn.layers) and SGD and Adam the optimizers' (xpnet.nn.optimizers), written again here with
torch's operations. The layers and the optimizers are the reference: tests/test_fused.py
compares these kernels with them on every torch device the suite sees.
"""

from __future__ import annotations


class TorchKernels:
    """PyTorch: its fused ops (threshold_backward, log_softmax, nll_loss, add_ with alpha...).

    One object per device; the cached constants are keyed by device as well.
    """

    def __init__(self, device=None):
        import torch

        self.torch = torch
        self.device = device
        self._rows: dict = {}
        self._minus_one: dict = {}

    def bias_act(self, a, b, act):
        a.add_(b)
        if act == "relu":
            return a.relu_()
        if act == "sigmoid":
            return a.sigmoid_()
        return a.tanh_()

    def act_grad(self, dh, h, act):
        torch = self.torch
        if act == "relu":
            return torch.ops.aten.threshold_backward(dh, h, 0)
        if act == "sigmoid":
            return dh.mul_(h).mul_(1.0 - h)
        return dh.mul_(1.0 - h * h)

    def softmax_xent(self, a, b, t):
        torch = self.torch
        n = a.shape[0]
        if t.dtype != torch.int64:
            t = t.long()
        key = (n, a.device)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = torch.arange(n, device=a.device)
        # a constant made once: torch.tensor(-1.0, device="cuda") would copy from the host, and
        # wait for the GPU, at every step
        key = (a.dtype, a.device)
        minus_one = self._minus_one.get(key)
        if minus_one is None:
            minus_one = self._minus_one[key] = torch.full((), -1.0, dtype=a.dtype, device=a.device)
        logp = torch.log_softmax(a.add_(b), dim=1)
        loss = torch.nn.functional.nll_loss(logp, t)
        dz = logp.exp_()
        dz.index_put_((rows, t), minus_one, accumulate=True)
        return loss, dz.mul_(1.0 / n)

    def colsum(self, a):
        return self.torch.sum(a, dim=0)

    def sgd(self, p, g, lr):
        p.add_(g, alpha=-lr)

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        if shrink != 1.0:
            p.mul_(shrink)
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = v.sqrt().div_(root_correction).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)
