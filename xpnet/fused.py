"""The fast path: one training step of a fully connected network with fewer, fused operations.

The layers in layers.py are the reference: readable, one small class per layer, Array API only.
A training step through them costs dozens of small array operations, and on a GPU each is a
kernel launch of about 10 µs from Python, more than the arithmetic of the slides' 784-50-10 net.
This module runs the same step with

- parameters and gradients packed in one flat buffer each (network.py), so that an optimizer
  updates every parameter with one call (optimizers.Optimizer.update_flat);
- matrix products written straight into the gradient buffer (``out=``);
- bias + activation in one operation, its derivative in one operation;
- bias + softmax + cross-entropy + its gradient in one operation.

Each backend supplies these hot spots through a ``Kernels`` class: the base class is written
with the Array API only (and is what the tests compare the others against), ``NumpyKernels``
works in place with ``out=``, ``TorchKernels`` uses torch's own fused ops, and ``CupyKernels``
compiles CUDA kernels (ElementwiseKernel, RawKernel). A network uses this path only when every
layer is Affine or ReLU/Sigmoid/Tanh, the loss is SoftmaxWithLoss, the labels are integers and
the backend is known to make slices of the flat buffer views (NumPy, CuPy, PyTorch).
"""

from __future__ import annotations

import os
import warnings

from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from .backend import namespace_of
from .layers import Affine, ReLU, Sigmoid, SoftmaxWithLoss, Tanh

ACTIVATION_NAMES = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


def has_views(xp) -> bool:
    """Whether slices and reshapes of a contiguous array are views that share its memory."""
    return is_numpy_namespace(xp) or is_cupy_namespace(xp) or is_torch_namespace(xp)


class Kernels:
    """The hot spots of a training step, in plain Array API code (the reference for the others).

    Arguments named ``a`` or ``dh`` are scratch arrays the kernel may overwrite.
    """

    def __init__(self, xp):
        self.xp = xp

    def matmul(self, a, b):
        return a @ b

    def matmul_into(self, a, b, out):
        """out[...] = a @ b."""
        out[...] = a @ b

    def colsum_into(self, a, out):
        """out[...] = Σ_n a[n, :] (the bias gradient)."""
        out[...] = self.xp.sum(a, axis=0)

    def bias_act(self, a, b, act: str):
        """act(a + b) for a (N, H) and b (H,)."""
        xp = self.xp
        z = a + b
        if act == "relu":
            return z * xp.astype(z > 0, z.dtype)
        if act == "sigmoid":
            return 0.5 * (xp.tanh(0.5 * z) + 1.0)
        return xp.tanh(z)

    def act_grad(self, dh, h, act: str):
        """dL/dz from dL/dh and the activation's output h = act(z)."""
        if act == "relu":
            return dh * self.xp.astype(h > 0, dh.dtype)
        if act == "sigmoid":
            return dh * h * (1.0 - h)
        return dh * (1.0 - h * h)

    def softmax_xent(self, a, b, t):
        """Mean cross-entropy of softmax(a + b) against integer labels t, and its gradient.

        Returns (L, dz) with dz = (softmax(a + b) − onehot(t)) / N.
        """
        xp = self.xp
        z = a + b
        z = z - xp.max(z, axis=1, keepdims=True)
        e = xp.exp(z)
        s = xp.sum(e, axis=1, keepdims=True)
        classes = xp.arange(z.shape[1], dtype=t.dtype, device=t.device)
        onehot = xp.astype(t[:, None] == classes, z.dtype)
        n = z.shape[0]
        loss = xp.sum(onehot * (xp.log(s) - z)) / n
        return loss, (e / s - onehot) * (1.0 / n)

    # optimizer hot spots: None means "no fused version, use the optimizer's own code"
    def sgd(self, p, g, lr: float):
        return None

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        return None


class NumpyKernels(Kernels):
    """NumPy: the same math, in place and with ``out=`` to save temporaries and passes."""

    def __init__(self, xp):
        super().__init__(xp)
        import numpy

        self.np = numpy
        self._rows = {}

    def matmul_into(self, a, b, out):
        self.np.matmul(a, b, out=out)

    def colsum_into(self, a, out):
        self.np.add.reduce(a, axis=0, out=out)

    def bias_act(self, a, b, act):
        np = self.np
        a += b
        if act == "relu":
            np.maximum(a, 0, out=a)
        elif act == "sigmoid":
            a *= 0.5
            np.tanh(a, out=a)
            a += 1.0
            a *= 0.5
        else:
            np.tanh(a, out=a)
        return a

    def act_grad(self, dh, h, act):
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


class TorchKernels(Kernels):
    """PyTorch: its fused ops (threshold_backward, log_softmax, nll_loss, add_ with alpha...)."""

    def __init__(self, xp):
        super().__init__(xp)
        import torch

        self.torch = torch
        self._rows = {}

    def matmul_into(self, a, b, out):
        self.torch.matmul(a, b, out=out)

    def colsum_into(self, a, out):
        self.torch.sum(a, dim=0, out=out)

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
        rows = self._rows.get((n, a.device))
        if rows is None:
            rows = self._rows[(n, a.device)] = torch.arange(n, device=a.device)
        logp = torch.log_softmax(a.add_(b), dim=1)
        loss = torch.nn.functional.nll_loss(logp, t)
        dz = logp.exp_()
        dz.index_put_(
            (rows, t), torch.tensor(-1.0, dtype=dz.dtype, device=dz.device), accumulate=True
        )
        return loss, dz.mul_(1.0 / n)

    def sgd(self, p, g, lr):
        p.add_(g, alpha=-lr)
        return p

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        if shrink != 1.0:
            p.mul_(shrink)
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = v.sqrt().div_(root_correction).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)
        return p


_SOFTMAX_XENT_CUDA = r"""
template <typename T>
__device__ void softmax_xent(const T* a, const T* b, const long long* t, T* dz, T* loss, int n, int c) {
    // One block; each thread owns whole rows, so dz may alias a. The loss is reduced in shared
    // memory in a fixed order: the same inputs always give the same bits.
    extern __shared__ unsigned char shared_bytes[];
    T* partial = reinterpret_cast<T*>(shared_bytes);
    T acc = 0;
    const T inv_n = T(1) / T(n);
    for (int row = threadIdx.x; row < n; row += blockDim.x) {
        const T* z = a + (long long)row * c;
        T m = z[0] + b[0];
        for (int k = 1; k < c; ++k) {
            const T v = z[k] + b[k];
            m = v > m ? v : m;
        }
        T s = 0;
        for (int k = 0; k < c; ++k) s += exp(z[k] + b[k] - m);
        const long long label = t[row];
        const T picked = z[label] + b[label] - m;
        T* out = dz + (long long)row * c;
        for (int k = 0; k < c; ++k) {
            const T y = exp(z[k] + b[k] - m) / s;
            out[k] = (y - (k == label ? T(1) : T(0))) * inv_n;
        }
        acc += log(s) - picked;
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = partial[0] * inv_n;
}

extern "C" __global__ void softmax_xent_f32(const float* a, const float* b, const long long* t,
                                            float* dz, float* loss, int n, int c) {
    softmax_xent<float>(a, b, t, dz, loss, n, c);
}

extern "C" __global__ void softmax_xent_f64(const double* a, const double* b, const long long* t,
                                            double* dz, double* loss, int n, int c) {
    softmax_xent<double>(a, b, t, dz, loss, n, c);
}
"""


class CupyKernels(Kernels):
    """CuPy: CUDA kernels compiled on first use (cached on disk by CuPy), one launch per hot spot."""

    THREADS = 256

    def __init__(self, xp):
        super().__init__(xp)
        import cupy

        self.cupy = cupy
        ew = cupy.ElementwiseKernel
        self._bias_act = {
            "relu": ew("T b", "T a", "T z = a + b; a = z > (T)0 ? z : (T)0", "xpnet_bias_relu"),
            "sigmoid": ew(
                "T b", "T a", "a = (T)0.5 * (tanh((T)0.5 * (a + b)) + (T)1)", "xpnet_bias_sigmoid"
            ),
            "tanh": ew("T b", "T a", "a = tanh(a + b)", "xpnet_bias_tanh"),
        }
        self._act_grad = {
            "relu": ew("T h", "T d", "d = h > (T)0 ? d : (T)0", "xpnet_relu_grad"),
            "sigmoid": ew("T h", "T d", "d = d * h * ((T)1 - h)", "xpnet_sigmoid_grad"),
            "tanh": ew("T h", "T d", "d = d * ((T)1 - h * h)", "xpnet_tanh_grad"),
        }
        self._sgd = ew("T g, T lr", "T p", "p -= lr * g", "xpnet_sgd")
        self._adam = ew(
            "T g, T beta1, T beta2, T step_size, T root_correction, T eps, T shrink",
            "T p, T m, T v",
            """
            p *= shrink;
            m = beta1 * m + ((T)1 - beta1) * g;
            v = beta2 * v + ((T)1 - beta2) * (g * g);
            p -= step_size * (m / (sqrt(v) / root_correction + eps));
            """,
            "xpnet_adam",
        )
        module = cupy.RawModule(code=_SOFTMAX_XENT_CUDA, options=("--std=c++14",))
        self._xent = {
            cupy.dtype("float32"): module.get_function("softmax_xent_f32"),
            cupy.dtype("float64"): module.get_function("softmax_xent_f64"),
        }

    def matmul_into(self, a, b, out):
        self.cupy.matmul(a, b, out=out)

    def colsum_into(self, a, out):
        self.cupy.sum(a, axis=0, out=out)

    def bias_act(self, a, b, act):
        return self._bias_act[act](b, a)

    def act_grad(self, dh, h, act):
        return self._act_grad[act](h, dh)

    def softmax_xent(self, a, b, t):
        cupy = self.cupy
        n, c = a.shape
        a = cupy.ascontiguousarray(a)
        t = cupy.ascontiguousarray(t, dtype=cupy.int64)
        loss = cupy.empty((), dtype=a.dtype)
        threads = self.THREADS
        self._xent[a.dtype](
            (1,),
            (threads,),
            (a, cupy.ascontiguousarray(b), t, a, loss, cupy.int32(n), cupy.int32(c)),
            shared_mem=threads * a.dtype.itemsize,
        )
        return loss, a

    def sgd(self, p, g, lr):
        return self._sgd(g, p.dtype.type(lr), p)

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        s = p.dtype.type
        return self._adam(
            g, s(beta1), s(beta2), s(step_size), s(root_correction), s(eps), s(shrink), p, m, v
        )


_KERNELS: dict = {}


class FusedKernelWarning(UserWarning):
    """A backend's fused kernels failed their self-check; the plain Array API path is used."""


def self_check(kernels: Kernels, xp, device=None) -> str | None:
    """Compare every kernel with the Array API reference on small random inputs (float32).

    Returns None when all agree, else what went wrong. Run once per namespace for the compiled
    CuPy kernels, so a kernel that fails to compile or computes wrong numbers on some GPU or CUDA
    version costs speed, not correctness.
    """
    import numpy

    ref = Kernels(xp)
    rng = numpy.random.default_rng(0)

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape).astype("float32"), device=device)

    def close(a, b) -> bool:
        return bool(xp.max(xp.abs(a - b)) <= 1e-4 * (1.0 + float(xp.max(xp.abs(b)))))

    try:
        a, b, h = arr(9, 7), arr(7), arr(9, 7)
        t = xp.asarray(rng.integers(0, 7, 9), device=device)
        for act in ("relu", "sigmoid", "tanh"):
            out = ref.bias_act(a, b, act)
            if not close(kernels.bias_act(xp.asarray(a, copy=True), b, act), out):
                return f"bias + {act} differs"
            if not close(
                kernels.act_grad(xp.asarray(h, copy=True), out, act), ref.act_grad(h, out, act)
            ):
                return f"the {act} gradient differs"
        loss, dz = kernels.softmax_xent(xp.asarray(a, copy=True), b, t)
        ref_loss, ref_dz = ref.softmax_xent(a, b, t)
        if not (close(loss, ref_loss) and close(dz, ref_dz)):
            return "softmax + cross-entropy differs"
        p, g = arr(20), arr(20)
        updated = kernels.sgd(xp.asarray(p, copy=True), g, 0.1)
        if updated is not None and not close(updated, p - 0.1 * g):
            return "the SGD update differs"
        m, v = arr(20), xp.abs(arr(20))
        pk, mk, vk = (xp.asarray(z, copy=True) for z in (p, m, v))
        if kernels.adam(pk, g, mk, vk, 0.9, 0.999, 0.01, 0.5, 1e-8, 0.99) is not None:
            m2 = 0.9 * m + 0.1 * g
            v2 = 0.999 * v + 0.001 * (g * g)
            p2 = p * 0.99 - 0.01 * (m2 / (xp.sqrt(v2) / 0.5 + 1e-8))
            if not (close(pk, p2) and close(mk, m2) and close(vk, v2)):
                return "the Adam update differs"
    except Exception as exc:  # a compile or launch failure: report it, fall back
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def kernels_for(xp) -> Kernels:
    """The fastest Kernels for a namespace (the Array API reference for unknown ones), memoized.

    XPNET_FUSED=0 in the environment selects the reference kernels everywhere.
    """
    kernels = _KERNELS.get(xp)
    if kernels is None:
        if os.environ.get("XPNET_FUSED", "1") == "0":
            kernels = Kernels(xp)
        elif is_numpy_namespace(xp):
            kernels = NumpyKernels(xp)
        elif is_torch_namespace(xp):
            kernels = TorchKernels(xp)
        elif is_cupy_namespace(xp):
            try:
                kernels = CupyKernels(xp)
                problem = self_check(kernels, xp)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if problem is not None:
                warnings.warn(
                    f"xpnet's CuPy kernels failed their self-check ({problem}); using the plain "
                    f"Array API path, which is correct but slower. Please report this.",
                    FusedKernelWarning,
                    stacklevel=2,
                )
                kernels = Kernels(xp)
        else:
            kernels = Kernels(xp)
        _KERNELS[xp] = kernels
    return kernels


class FusedStep:
    """Forward and backward of Affine → act → … → Affine → SoftmaxWithLoss with the kernels above.

    Gradients are written into the layers' gradient arrays, which must be views into the
    network's flat gradient buffer; layer caches (Affine.x, ReLU.mask) are not filled.
    """

    def __init__(self, affines: list[Affine], activations: list[str], loss_layer, kernels: Kernels):
        self.affines = affines
        self.activations = activations
        self.loss_layer = loss_layer
        self.kernels = kernels

    @classmethod
    def plan(cls, layers, loss_layer, kernels: Kernels | None = None) -> FusedStep | None:
        """A FusedStep for this stack of layers, or None when it is not of the supported form."""
        if not isinstance(loss_layer, SoftmaxWithLoss) or len(layers) % 2 == 0:
            return None
        affines, activations = layers[0::2], layers[1::2]
        if not all(type(a) is Affine for a in affines):
            return None
        if not all(type(a) in ACTIVATION_NAMES for a in activations):
            return None
        if kernels is None:
            kernels = kernels_for(namespace_of(affines[0].W))
        return cls(affines, [ACTIVATION_NAMES[type(a)] for a in activations], loss_layer, kernels)

    def _hidden(self, x) -> list:
        """[x, h1, h2, ...]: the input (flattened) and every hidden layer's output."""
        k = self.kernels
        if x.ndim != 2:
            x = k.xp.reshape(x, (x.shape[0], -1))
        first = self.affines[0]
        if x.shape[1] != first.W.shape[0]:
            first.forward(x, train=False)  # raises the ShapeError that names the layer and shapes
        outputs = [x]
        for affine, act in zip(self.affines[:-1], self.activations, strict=True):
            outputs.append(k.bias_act(k.matmul(outputs[-1], affine.W), affine.b, act))
        return outputs

    def predict(self, x):
        """Scores (before softmax) for a batch, keeping nothing for a backward pass."""
        last = self.affines[-1]
        return self.kernels.matmul(self._hidden(x)[-1], last.W) + last.b

    def forward_backward(self, x, t):
        """The mean loss of batch (x, t); every dW, db is left in the layers' gradient arrays."""
        k = self.kernels
        outputs = self._hidden(x)
        last = self.affines[-1]
        loss, dz = k.softmax_xent(k.matmul(outputs[-1], last.W), last.b, t)
        for i in range(len(self.affines) - 1, -1, -1):
            affine = self.affines[i]
            k.matmul_into(outputs[i].T, dz, affine.dW)
            k.colsum_into(dz, affine.db)
            if i:
                dz = k.act_grad(k.matmul(dz, affine.W.T), outputs[i], self.activations[i - 1])
        self.loss_layer.loss = loss
        return loss
