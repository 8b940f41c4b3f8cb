"""The fast path: a fully connected network's training step in fewer, fused operations.

The layers (layers.py) are the reference math and the one owner of parameters and gradients. A
training step through them costs dozens of small array operations, and on a GPU each is a kernel
launch of about 10 µs from Python, more than the arithmetic of the slides' 784-50-10 net. For a
stack Affine → act → … → Affine → SoftmaxWithLoss on a backend that has kernels here (NumPy in
place with ``out=``, PyTorch's own fused ops, CuPy's compiled CUDA kernels), ``FusedStep`` runs the
same step as

- a matrix product, then bias + activation in one operation, in place;
- bias + softmax + cross-entropy + its gradient in one operation;
- the activation's derivative in one operation.

It reads the weights from the layers at every call and stores each gradient in the layers'
``dW``/``db`` (a new array, as ``backward`` does), so the book's code, the optimizers and the Trainer
all see the same arrays. There is no generic version of these kernels: on other backends
(array_api_strict, unknown ones) the layers themselves run. The tests, and the self-check that
the compiled CuPy kernels run on first use, compare each backend's ``FusedStep`` with the layers.

The optimizers use the same kernels for their elementwise rules (``sgd``, ``adam``), per parameter.
"""

from __future__ import annotations

import os
import warnings

from array_api_compat import device as device_of
from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from ..backend import DTYPES, Backend, dtype_name, namespace_of
from ..nn.layers import Affine, ReLU, Sigmoid, SoftmaxWithLoss, Tanh

ACTIVATION_NAMES = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


class NumpyKernels:
    """NumPy: in place and with ``out=``, to save temporaries and passes over memory.

    Arguments named ``a`` or ``dh`` are scratch arrays that the kernel overwrites.
    """

    def __init__(self):
        import numpy

        self.np = numpy
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

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        """Adam's update in place, in the order of optimizers.Adam's own code (the same bits),
        with one scratch array where that code makes four temporaries."""
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


class TorchKernels:
    """PyTorch: its fused ops (threshold_backward, log_softmax, nll_loss, add_ with alpha...)."""

    def __init__(self):
        import torch

        self.torch = torch
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


_SOFTMAX_XENT_CUDA = r"""
template <typename T>
__device__ void softmax_xent(const T* a, const T* b, const long long* t, T* dz, T* row_loss,
                             int n, int c) {
    // One thread per row, any number of rows and classes; dz may alias a (each thread reads its
    // row before writing it). A label outside 0..c-1 makes the row's loss and gradient NaN
    // instead of reading outside the row. row_loss[i] is the row's loss / n; the caller sums it.
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n) return;
    const T* z = a + (long long)row * c;
    T* out = dz + (long long)row * c;
    const long long label = t[row];
    const T inv_n = T(1) / T(n);
    if (label < 0 || label >= c) {
        const T nan = T(0) / T(0);
        for (int k = 0; k < c; ++k) out[k] = nan;
        row_loss[row] = nan;
        return;
    }
    T m = z[0] + b[0];
    for (int k = 1; k < c; ++k) {
        const T v = z[k] + b[k];
        m = (v > m || v != v) ? v : m;  // NaN wins, so a diverged row stays NaN
    }
    T s = 0;
    for (int k = 0; k < c; ++k) s += exp(z[k] + b[k] - m);
    const T picked = z[label] + b[label] - m;
    for (int k = 0; k < c; ++k) {
        const T y = exp(z[k] + b[k] - m) / s;
        out[k] = (y - (k == label ? T(1) : T(0))) * inv_n;
    }
    row_loss[row] = (log(s) - picked) * inv_n;
}

extern "C" __global__ void softmax_xent_f32(const float* a, const float* b, const long long* t,
                                            float* dz, float* row_loss, int n, int c) {
    softmax_xent<float>(a, b, t, dz, row_loss, n, c);
}

extern "C" __global__ void softmax_xent_f64(const double* a, const double* b, const long long* t,
                                            double* dz, double* row_loss, int n, int c) {
    softmax_xent<double>(a, b, t, dz, row_loss, n, c);
}
"""


class CupyKernels:
    """CuPy: CUDA kernels compiled on first use (cached on disk by CuPy), one launch per hot spot."""

    THREADS = 128
    #: compiled on first use, so checked against the layers then (kernels_for runs self_check)
    compiled = True
    #: a label outside 0..C−1 gives a NaN loss (the kernel reads its row by the label)
    checks_labels = True

    def __init__(self):
        import cupy

        self.cupy = cupy
        ew = cupy.ElementwiseKernel
        self._bias_act = {
            # z < 0 ? 0 : z, not z > 0 ? z : 0: NaN fails both tests and must come through
            "relu": ew("T b", "T a", "T z = a + b; a = z < (T)0 ? (T)0 : z", "xpnet_bias_relu"),
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

    def bias_act(self, a, b, act):
        return self._bias_act[act](b, a)

    def act_grad(self, dh, h, act):
        return self._act_grad[act](h, dh)

    def softmax_xent(self, a, b, t):
        cupy = self.cupy
        n, c = a.shape
        a = cupy.ascontiguousarray(a)
        t = cupy.ascontiguousarray(t, dtype=cupy.int64)
        row_loss = cupy.empty((n,), dtype=a.dtype)
        blocks = (n + self.THREADS - 1) // self.THREADS
        self._xent[a.dtype](
            (blocks,),
            (self.THREADS,),
            (a, cupy.ascontiguousarray(b), t, a, row_loss, cupy.int32(n), cupy.int32(c)),
        )
        return row_loss.sum(), a

    def colsum(self, a):
        return self.cupy.sum(a, axis=0)

    def sgd(self, p, g, lr):
        self._sgd(g, p.dtype.type(lr), p)

    def adam(self, p, g, m, v, beta1, beta2, step_size, root_correction, eps, shrink):
        s = p.dtype.type
        self._adam(
            g, s(beta1), s(beta2), s(step_size), s(root_correction), s(eps), s(shrink), p, m, v
        )


_KERNELS: dict = {}


class FusedKernelWarning(UserWarning):
    """A backend's fused kernels failed their self-check; the layers are used instead."""


def fused_enabled() -> bool:
    """False when XPNET_FUSED=0 is set: every step then runs through the layers."""
    return os.environ.get("XPNET_FUSED", "1") != "0"


def kernels_for(xp, device=None, dtype=None, uses=()):
    """The fast kernels for a namespace (None where there are none, or XPNET_FUSED=0), memoized.

    The compiled CuPy kernels are checked against the layers (`self_check`, on `device`) the
    first time each of `uses` is asked for in `dtype`: an activation's name ("relu", "sigmoid",
    "tanh": the step's kernels for that activation) or an optimizer kernel ("sgd", "adam"). So a
    run compiles and checks only what it uses (a CUDA compile takes a fraction of a second
    each). If a check fails, the kernels are replaced by None, with a FusedKernelWarning.
    """
    if not fused_enabled():
        return None
    if xp not in _KERNELS:
        factory = _factory(xp)
        kernels = factory() if factory is not None else None
        if getattr(kernels, "compiled", False):
            # (dtype, use) pairs that passed self_check, the dtype by name and as it was given
            kernels.verified = set()
        _KERNELS[xp] = kernels
    kernels = _KERNELS[xp]
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
    _KERNELS[xp] = None
    try:
        problem = self_check(Backend(type(kernels).__name__, xp, device), kernels, name, todo)
    except Exception as exc:  # a compile or launch failure: report it, fall back
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if problem is not None:
        warnings.warn(
            f"xpnet's {type(kernels).__name__} failed their self-check ({problem}); using "
            f"the layers, which are correct but slower. Please report this.",
            FusedKernelWarning,
            stacklevel=2,
        )
        return None
    kernels.verified.update((key, use) for use in uses for key in (name, dtype))
    _KERNELS[xp] = kernels
    return kernels


def optimizer_kernel(use: str, like):
    """The fused kernel for optimizer rule `use` ("sgd", "adam") on arrays like `like`, or None.

    What the Trainer hands an optimizer as its ``kernels`` (xpnet.nn.optimizers.Optimizer).
    """
    kernels = kernels_for(namespace_of(like), device_of(like), like.dtype, (use,))
    return getattr(kernels, use, None) if kernels is not None else None


def fixed_kernels(kernels):
    """An optimizer's ``kernels`` that always uses this kernels object (self_check, replays)."""
    return lambda use, like: getattr(kernels, use, None)


def _factory(xp):
    """The kernels class for a namespace, or None."""
    if is_numpy_namespace(xp):
        return NumpyKernels
    if is_torch_namespace(xp):
        return TorchKernels
    if is_cupy_namespace(xp):
        return CupyKernels
    return None


class FusedStep:
    """Forward and backward of Affine → act → … → Affine → SoftmaxWithLoss with a backend's kernels.

    Built by `plan(net)`; reads the weights from the net's layers at each call and leaves every
    gradient in the layers (``dW``, ``db``), weight decay included. Layer caches (Affine.x,
    ReLU.mask) are not filled: a backward pass by hand needs a forward pass through the layers.
    Inputs are not checked: this is for data checked once (the Trainer's), with integer labels.
    """

    def __init__(self, net, affines: list[Affine], activations: list[str], kernels):
        self.net = net
        self.affines = affines
        self.activations = activations
        self.kernels = kernels

    @classmethod
    def plan(cls, net, kernels=None) -> FusedStep | None:
        """A FusedStep for `net`, or None when its layers are not of the supported form or its
        backend has no kernels."""
        layers = list(net.layers.values())
        if type(net.last_layer) is not SoftmaxWithLoss or len(layers) % 2 == 0:
            return None
        affines, activations = layers[0::2], layers[1::2]
        if not all(type(a) is Affine for a in affines):
            return None
        if not all(type(a) in ACTIVATION_NAMES for a in activations):
            return None
        names = [ACTIVATION_NAMES[type(a)] for a in activations]
        if kernels is None:
            be = net.backend
            kernels = kernels_for(be.xp, be.device, net.dtype, sorted(set(names)))
        if kernels is None:
            return None
        return cls(net, affines, names, kernels)

    def _hidden(self, x) -> list:
        """[x, h1, h2, ...]: the input (flattened) and every hidden layer's output."""
        k = self.kernels
        if x.ndim != 2:
            x = namespace_of(x).reshape(x, (x.shape[0], -1))
        outputs = [x]
        for affine, act in zip(self.affines[:-1], self.activations, strict=True):
            outputs.append(k.bias_act(outputs[-1] @ affine.W, affine.b, act))
        return outputs

    def predict(self, x):
        """Scores (before softmax) for a batch, keeping nothing for a backward pass."""
        last = self.affines[-1]
        return self._hidden(x)[-1] @ last.W + last.b

    def forward_backward(self, x, t):
        """The mean loss of batch (x, t), decay included; every gradient is left in the layers."""
        net = self.net
        if t.ndim != 1:  # one-hot rows: the layers handle them
            return net.forward_backward(x, t, check=False)
        k = self.kernels
        outputs = self._hidden(x)
        last = self.affines[-1]
        loss, dz = k.softmax_xent(outputs[-1] @ last.W, last.b, t)
        for i in range(len(self.affines) - 1, -1, -1):
            affine = self.affines[i]
            affine.dW = outputs[i].T @ dz
            affine.db = k.colsum(dz)
            if i:
                dz = k.act_grad(dz @ affine.W.T, outputs[i], self.activations[i - 1])
        loss = loss + net.decay_loss()
        net.add_decay_grads()
        net.last_layer.loss = loss
        return loss


#: what self_check covers: an activation's step kernels, or an optimizer kernel
CHECKS = ("relu", "sigmoid", "tanh", "sgd", "adam")


def self_check(be: Backend, kernels=None, dtype=None, uses=CHECKS) -> str | None:
    """Compare the fused path with the layers on random networks; None when all agree.

    For each activation in `uses`: more rows and more classes than a CUDA block has threads,
    weight decay and an out-of-range label (NaN, never a read outside the row); for "sgd" and
    "adam", the optimizers that use them against their plain rules. In `dtype`, or float32 and
    float64 when None. The compiled CuPy kernels run it once per (dtype, use) before their first
    use, so a kernel that fails to compile or computes wrong numbers costs speed, not
    correctness.
    """
    import numpy

    from ..nn.network import MultiLayerNet
    from ..nn.optimizers import SGD, Adam, AdamW

    if kernels is None:
        kernels = kernels_for(be.xp, be.device)
    if kernels is None:
        return None
    unknown = set(uses) - set(CHECKS)
    if unknown:
        raise ValueError(f"self_check knows {CHECKS}, not {sorted(unknown)}")
    xp = be.xp
    rng = numpy.random.default_rng(0)
    tol = {"float32": 2e-4, "float64": 1e-10}
    optimizers = {
        "sgd": [lambda: SGD(0.1)],
        "adam": [lambda: Adam(0.01), lambda: AdamW(0.01, weight_decay=0.1)],
    }

    def close(a, b, name) -> bool:
        a, b = xp.astype(a, xp.float64), xp.astype(b, xp.float64)
        return bool(xp.max(xp.abs(a - b)) <= tol[name] * (1.0 + float(xp.max(xp.abs(b)))))

    for name in DTYPES if dtype is None else (dtype_name(xp, dtype),):
        for use in uses:
            for make in optimizers.get(use, ()):
                params = {"p": be.asarray(rng.standard_normal(50), name)}
                grads = {"p": be.asarray(rng.standard_normal(50), name)}
                fast, plain = make(), make()
                fast.kernels = fixed_kernels(kernels)
                p_fast = {k: xp.asarray(v, copy=True) for k, v in params.items()}
                p_plain = {k: xp.asarray(v, copy=True) for k, v in params.items()}
                for _ in range(3):
                    fast.update(p_fast, grads)
                    plain.update(p_plain, grads)
                if not close(p_fast["p"], p_plain["p"], name):
                    return f"the {type(fast).__name__} update differs ({name})"
            if use in optimizers:
                continue
            for n, d, h, c in [(300, 7, 5, 3), (9, 6, 4, 300)]:
                net = MultiLayerNet(d, [h], c, use, "he", 0.01, device=be, dtype=name, seed=1)
                net.set_params(
                    {
                        k: be.asarray(rng.standard_normal(v.shape), name)
                        for k, v in net.params.items()
                    }
                )
                x = be.asarray(rng.standard_normal((n, d)), name)
                t = be.asarray(rng.integers(0, c, n))
                ref_loss = net.forward_backward(x, t)
                ref = {k: xp.asarray(g, copy=True) for k, g in net.grads.items()}
                step = FusedStep.plan(net, kernels)
                loss = step.forward_backward(x, t)
                where = f"{name}, {n} rows, {c} classes"
                if not close(loss, ref_loss, name):
                    return f"the {use} network's loss differs ({where})"
                for key, grad in net.grads.items():
                    if not close(grad, ref[key], name):
                        return f"the {use} network's {key} gradient differs ({where})"
                if not close(step.predict(x), net.predict(x), name):
                    return f"the {use} network's scores differ ({where})"
                if getattr(kernels, "checks_labels", False):
                    bad = be.asarray(numpy.array([0, c] + [1] * (n - 2)))
                    if not bool(xp.isnan(step.forward_backward(x, bad))):
                        return f"an out-of-range label did not give a NaN loss ({where})"
    return None
