"""NumPy's fused kernels: in place and with ``out=``, to save temporaries and passes over memory.

One truth, written twice: the activations and softmax–cross-entropy are the layers' math
(xpnet.nn.layers) and Adam is the optimizer's (xpnet.nn.optimizers), written again here as
kernels. The layers and the optimizers are the reference: tests/test_fused.py compares these
kernels with them, never with themselves.
"""

from __future__ import annotations

from .conv_numpy import ConvBlock
from .threads import workers

#: parameters of at least this many elements are updated by all the worker threads, by ranges
SPLIT_UPDATE = 100_000


class NumpyKernels:
    """NumPy: in place and with ``out=``, to save temporaries and passes over memory.

    Arguments named ``a`` or ``dh`` are scratch arrays that the kernel overwrites. One object
    per device (the CPU); ``device`` is taken for the registry's sake.
    """

    def __init__(self, device=None):
        import numpy

        self.np = numpy
        self.device = device
        self._rows: dict = {}

    def bias_act(self, a, b, act: str):
        """act(a + b) for a (N, H) and b (H,), in a."""
        np = self.np
        a += b
        if act == "relu":
            np.maximum(a, 0, out=a)  # maximum propagates NaN, as the reference's x·[x > 0]
        elif act == "sigmoid":  # (1 + tanh(z/2)) / 2, the reference's form
            a *= 0.5
            np.tanh(a, out=a)
            a += 1.0
            a *= 0.5
        else:
            np.tanh(a, out=a)
        return a

    def act_grad(self, dh, h, act: str):
        """dL/dz from dL/dh and the activation's output h = act(z), in dh."""
        np = self.np
        if act == "relu":
            np.multiply(dh, h > 0, out=dh)
        elif act == "sigmoid":
            dh *= h
            dh *= 1.0 - h
        else:
            dh *= 1.0 - h * h
        return dh

    def softmax_xent(self, a, b, t):
        """(L, dz): mean cross-entropy of softmax(a + b) against integer labels t, and
        dz = (softmax(a + b) − onehot(t)) / N, in a."""
        np = self.np
        n = a.shape[0]
        rows = self._rows.get(n)
        if rows is None:
            rows = self._rows[n] = np.arange(n)
        a += b
        a -= a.max(axis=1, keepdims=True)
        picked = a[rows, t]  # z at the true class, read before a is overwritten
        np.exp(a, out=a)
        s = a.sum(axis=1, keepdims=True)
        loss = np.asarray((np.log(s).sum() - picked.sum()) / n)
        a /= s
        a[rows, t] -= 1.0
        a *= 1.0 / n
        return loss, a

    def colsum(self, a):
        return self.np.add.reduce(a, axis=0)

    sgd = None  # p -= lr·g is already one pass with one temporary

    def conv_block(self, conv, pool: bool, workers):
        """Convolution → ReLU (→ 2×2 max pooling) as one step (conv_numpy.py)."""
        return ConvBlock(conv, pool, workers)

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        """Adam's update in place, in the order of optimizers.Adam's own code (the same bits),
        with one scratch array where that code makes four temporaries; a large parameter is
        updated by the worker threads, each on its own range of elements."""
        w = workers()
        arrays = (p, g, m, v)
        if w.n == 1 or p.size < SPLIT_UPDATE or not all(a.flags.c_contiguous for a in arrays):
            self._adam(p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink)
            return
        flat = [a.reshape(-1) for a in arrays]  # views: the arrays are contiguous
        factors = (beta1, beta2, step_size, root_correction, eps, shrink)
        w.run(lambda r: self._adam(*(a[r[0] : r[1]] for a in flat), *factors), w.parts(p.size))

    def _adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        np = self.np
        if shrink != 1.0:
            p *= shrink
        m *= beta1
        tmp = np.multiply(g, 1.0 - beta1)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= root_correction
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp
