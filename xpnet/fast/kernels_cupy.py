"""CuPy's fused kernels: CUDA compiled on first use (cached on disk by CuPy), one launch per hot spot.

One truth, written twice: the activations and softmax–cross-entropy are the layers' math
(xpnet.nn.layers) and SGD and Adam the optimizers' (xpnet.nn.optimizers), written again here as
CUDA (ElementwiseKernels below, and softmax_xent.cu beside this module). The layers and the
optimizers are the reference: because these kernels are compiled on the user's GPU,
``xpnet.fast.check.self_check`` compares them with the layers on each device before their first
use, and the tests compare them again wherever a GPU is.
"""

from __future__ import annotations

from importlib import resources


def cuda_source() -> str:
    """The CUDA C++ of the softmax–cross-entropy kernel: softmax_xent.cu, shipped in the package."""
    return resources.files("xpnet.fast").joinpath("softmax_xent.cu").read_text(encoding="utf-8")


class CupyKernels:
    """CuPy: CUDA kernels compiled on first use (cached on disk by CuPy), one launch per hot spot.

    One object per GPU: a module loaded on one device cannot be launched on another, so the
    registry builds one for each device (``device``: a cupy.cuda.Device or its number; None, the
    current one), and it is built with that device current.
    """

    THREADS = 128
    #: compiled on first use, so checked against the layers then (kernels_for runs self_check)
    compiled = True
    #: a label outside 0..C−1 gives a NaN loss (the kernel reads its row by the label)
    checks_labels = True

    def __init__(self, device=None):
        import cupy

        self.cupy = cupy
        self.device = cupy.cuda.Device(
            None if device is None else int(getattr(device, "id", device))
        )
        with self.device:
            self._build()

    def _build(self) -> None:
        cupy = self.cupy
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
        module = cupy.RawModule(code=cuda_source(), options=("--std=c++14",))
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
